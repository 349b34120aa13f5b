"""The fused-scan benchmark's report, from made-up measurements (the measurements themselves take minutes)."""

import argparse

from serpent_arch.benchmark import fused


def test_report_tables():
    args = argparse.Namespace(builds=["native"], command_line="--sizes 64", rounds=2, runs=1, warm_above=1024,
                              train_batch=1, steps=3, pairs=2, profile=0)  # fmt: skip
    workloads = [("infer", 64, 1, 2), ("train", 32, 1, 4)]

    def run(times, mib, load=1.0):
        return {"times": times, "peak_rss_mib": mib, "machine": "a CPU", "build": "-march=native", "load": load}

    results = {
        ("native", "infer", 64, True): [run([1.0, 0.5], 100), run([2.0, 0.5], 110)],
        ("native", "infer", 64, False): [run([3.0, 1.0], 200), run([2.0, 1.0], 220)],
        ("native", "infer", 64, "whole tail"): [run([1.25, 0.5], 150), run([1.75, 0.5], 170)],
        ("native", "train", 32, True): [run([9, 1.0, 1.0, 1.0], 300)] * 2,
        ("native", "train", 32, False): [run([9, 2.0, 2.0, 2.0], 300)] * 2,
    }
    interleaved = {("native", "infer", 64): {"pairs": [(1.0, 1.5), (1.0, 2.5)], "load": 2.0}}
    text = fused._report(args, workloads, results, interleaved, {}, [1.0, 2.0], "now")
    # first forward: medians 1.5 against 2.5 s; per-round ratios 3.0 and 1.0 -> median 2.0
    first = "| native | inference 64x64 (first) | 64 | 1.50 | 2.50 | 2.00x | 0.50 | 1.00 | 105 | 210 | 2.00x |"
    assert first + " 1.50 s, 160 | 1.0 |" in text  # the whole-tail column: medians of its two rounds
    assert "| native | training step 32x32 (step) | 32 | 1.00 | 2.00 | 2.00x | - | - | 300 | 300 | 1.00x | - |" in text
    assert "| native | training step 32x32 (step) | 32 | 1.00 | 2.00 | 2.00x |" in text
    assert "| native | inference 64x64 | 1.00 | 2.00 | 2.00x | 1.50, 2.50 | 2.0 |" in text
    assert "python -m serpent_arch.benchmark fused --sizes 64" in text
