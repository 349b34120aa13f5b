"""The fused-scan benchmark's report, from made-up measurements (the measurements themselves take minutes)."""

import argparse
from pathlib import Path

import pytest

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


def test_versus_report():
    from serpent_arch.benchmark import versus

    args = argparse.Namespace(kind="train", size=256, rev="e6d3721", steps=5, pairs=2, builds=["native"], threads=2)

    def side(seconds, fastest, mib, notes=()):
        return {"seconds": seconds, "fastest": fastest, "peak_rss_mib": mib, "notes": list(notes)}

    rows = {"native": [(side(0.6, 0.5, 1400), side(0.4, 0.25, 1300, ["optimizer fused: True"]), 1.0),
                       (side(0.5, 0.5, 1400), side(0.5, 0.5, 1300), 2.0)]}  # fmt: skip
    text = versus._report(args, "abc1234", rows, "a CPU", "now")
    # medians 0.55 and 0.45 s; pair ratios 1.5 and 1.0 -> median 1.25; fastest: 2.0 and 1.0 -> 1.5
    row = "| native | 0.550 | 0.450 | 1.25x | 1.50, 1.00 | 0.500 | 0.375 | 1.50x | 2.00, 1.00 | 1,400, 1,300 | 1.5 |"
    assert row in text
    assert "--rev e6d3721 --kind train --size 256" in text and "abc1234: optimizer fused: True" in text


@pytest.mark.slow
def test_versus_runs_against_a_revision(tmp_path):
    """Both sides of a real comparison (this checkout against its own HEAD), one tiny pair: the workers start with
    the right package, and the report is written."""
    import subprocess

    from serpent_arch.benchmark import versus

    root = Path(versus.__file__).resolve().parents[2]
    if subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True).returncode != 0:
        pytest.skip("not a git checkout")
    argv = ["--rev", "HEAD", "--size", "32", "--steps", "1", "--pairs", "1", "--builds", "native"]
    argv += ["--out", str(tmp_path)]
    assert versus.main(argv) == 0
    text = (tmp_path / "versus_HEAD.md").read_text()
    assert "| native |" in text and "optimizer fused: True" in text
