"""Smoke tests of the scan and training benchmarks: they name the machine (CPU model, vector
extensions, threads), the kernel builds they measured, and measure a forced -march build beside
the native one in the same run."""

import pytest
import torch

from serpent_arch.benchmark import machine
from serpent_arch.benchmark import scan as scan_bench
from serpent_arch.benchmark import train as train_bench
from serpent_arch.ops import _cpu_kernel

needs_kernel = pytest.mark.skipif(not _cpu_kernel.availability()[0], reason="cpu_kernel unavailable")
needs_x86 = pytest.mark.skipif(not _cpu_kernel.is_x86(), reason="x86 -march values")


def test_machine_line_names_cpu_and_extensions(monkeypatch):
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    line = machine.describe()
    assert machine.cpu_model() in line and f"{torch.get_num_threads()} torch threads" in line
    assert "ATEN_CPU_CAPABILITY=avx2" in line  # an emulated machine says so
    if _cpu_kernel.is_x86():
        assert "sse4_2" in machine.vector_extensions()


@needs_kernel
@needs_x86
def test_scan_benchmark_measures_native_and_forced_builds(tmp_path):
    text = scan_bench.main(["--quick", "--repeats", "1", "--out", str(tmp_path), "--march", "x86-64-v2"])
    assert (tmp_path / "scan_benchmark_quick.md").read_text() == text
    assert machine.cpu_model() in text and "vector extensions:" in text
    own = _cpu_kernel.kernel_march()
    for label in (f"cpu_kernel -march={own}", "cpu_kernel -march=x86-64-v2"):
        assert f"| {label} |" in text and f"| {label} -ffast-math |" in text
        assert f"- `{label}`: forward " in text  # the targets line of each build
    assert "-fno-trapping-math" in text and "-march=x86-64-v2`" in text
    # every build agrees with the reference (the error column)
    for row in text.splitlines():
        if row.startswith("| cpu_kernel"):
            assert float(row.rstrip(" |").rsplit("|", 1)[1]) < 1e-4, row


@needs_kernel
def test_scan_benchmark_at_another_state_size(tmp_path):
    args = ["--quick", "--repeats", "1", "--out", str(tmp_path), "--march", "--no-fast-math", "--d-state", "4"]
    text = scan_bench.main([*args, "--backends", "reference", "cpu_kernel"])
    assert (tmp_path / "scan_benchmark_quick_N4.md").read_text() == text and "N 4," in text
    assert not (tmp_path / "scan_benchmark_quick.md").exists()


@needs_kernel
@needs_x86
def test_train_benchmark_measures_native_and_forced_builds(tmp_path):
    args = ["--iters", "1", "--repeats", "1", "--backends", "cpu_kernel", "--march", "x86-64-v2"]
    assert train_bench.main([*args, "--out", str(tmp_path), "--name", "t"]) == 0
    text = (tmp_path / "t.md").read_text()
    assert machine.cpu_model() in text and "ATen CPU capability" in text
    own = _cpu_kernel.kernel_march()
    assert f"| cpu_kernel -march={own} |" in text and "| cpu_kernel -march=x86-64-v2 |" in text
