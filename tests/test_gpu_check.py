"""The GPU check script, run on the CPU with tiny sizes (its GPU run is `python -m serpent_arch.benchmark gpu`)."""

import csv
import importlib
import re

import pytest

from serpent_arch.benchmark import gpu
from serpent_arch.benchmark.__main__ import main as benchmark_main


def test_dry_run_on_cpu(tmp_path):
    out = tmp_path / "gpu"
    argv = ["gpu", "--device", "cpu", "--small", "--out", str(out), "--skip", "quickstart", "--train-budget", "5"]
    assert benchmark_main(argv) == 0
    report = (out / "gpu_check.md").read_text()
    for heading in (
        "## 1. Scan backends",
        "## 2. Scan speed",
        "## 3. Training steps of Serpent tiny",
        "## 4. Efficiency",
    ):
        assert heading in report
    agreement = list(csv.DictReader((out / "gpu_agreement.csv").open()))
    backends = gpu.available_scan_backends(gpu.torch.device("cpu"))
    assert {(r["backend"], r["precision"]) for r in agreement} == {(b, p) for b in backends for p in ("fp32", "bf16")}
    assert all(r["agrees"] == "True" for r in agreement)
    train = list(csv.DictReader((out / "gpu_train.csv").open()))
    assert len(train) == 2 * len(backends) and all(float(r["it_per_s"]) > 0 and not r["note"] for r in train)
    # the efficiency tables, fp32 and bf16, with the SwinIR / Serpent ratios
    assert (out / "network_cpu_2threads.csv").exists() or list(out.glob("network_cpu_*threads.csv"))
    assert len(list(out.glob("network_cpu_*threads_bf16.csv"))) == 1
    assert report.count("#### swinir / serpent-tiny") == 2


def test_agreement_catches_a_wrong_backend(monkeypatch):
    module = importlib.import_module("serpent_arch.ops.selective_scan")
    real = module.selective_scan_torch
    monkeypatch.setattr(module, "selective_scan_torch", lambda *a, **k: real(*a, **k) * 1.002)
    row = gpu.scan_agreement("torch", gpu.torch.device("cpu"), "fp32", gpu.SMALL.scan)
    assert not row["agrees"] and row["err_out"] > gpu.TOLERANCE["fp32"]


def test_without_cuda_it_says_so(capsys):
    if gpu.torch.cuda.is_available():
        pytest.skip("CUDA is here")
    assert gpu.main(["--out", "unused"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err


@pytest.mark.slow
def test_quickstart_part_runs_the_real_command(tmp_path):
    out = tmp_path / "gpu"
    argv = ["--device", "cpu", "--small", "--out", str(out), "--skip", "agreement", "scan", "train", "efficiency"]
    assert gpu.main([*argv, "--quickstart-iters", "2"]) == 0
    report = (out / "gpu_check.md").read_text()
    assert "- exit status 0" in report and "- log line: `selective scan: " in report and " on cpu (" in report
    assert re.search(r"every 1 iterations and at the end: \d+\.\d+, .* dB \(bicubic: \d+\.\d+ dB\)", report), report
