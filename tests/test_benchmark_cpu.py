"""Smoke tests of the scan and training benchmarks: they name the machine (CPU model, vector
extensions, threads), the kernel builds they measured, and measure a forced -march build beside
the native one in the same run."""

import pytest
import torch

from serpent_arch.benchmark import scan as scan_bench
from serpent_arch.benchmark import train as train_bench
from serpent_arch.measure import machine
from serpent_arch.ops import _cpu_kernel

needs_kernel = pytest.mark.skipif(not _cpu_kernel.availability()[0], reason="cpu_kernel unavailable")
needs_x86 = pytest.mark.skipif(not _cpu_kernel.is_x86(), reason="x86 -march values")


def _errors(table: str) -> dict[str, float]:
    """cpu_kernel row label -> its "max rel. error" cell in a scan benchmark table."""
    lines = table.splitlines()
    column = next(ln for ln in lines if ln.startswith("| backend |")).split("|").index(" max rel. error ")
    rows = [ln.split("|") for ln in lines if ln.startswith("| cpu_kernel")]
    return {cells[1].strip(): float(cells[column]) for cells in rows}


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
    errors = _errors(text)
    assert len(errors) == 4 and max(errors.values()) < 1e-4, errors


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


@needs_kernel
def test_benchmarks_measure_the_backward_without_its_deferred_sums(tmp_path):
    """--per-step-sums adds each build compiled with -DSS_NO_DEFERRED_SUMS (the N = 16 backward as before its
    deferred sums): the scan table shows it agreeing with the reference, the training table its time against
    the first row."""
    args = ["--quick", "--repeats", "1", "--out", str(tmp_path), "--march", "--no-fast-math", "--per-step-sums"]
    text = scan_bench.main([*args, "--d-state", "16", "--backends", "reference", "cpu_kernel"])
    own = f"cpu_kernel -march={_cpu_kernel.kernel_march()}"
    errors = _errors(text)
    assert list(errors) == [own, f"{own} -DSS_NO_DEFERRED_SUMS"] and max(errors.values()) < 1e-4, errors
    assert "fwd+bwd vs reference |" in text and "| reference |" in text

    args = ["--iters", "1", "--repeats", "2", "--backends", "cpu_kernel", "--march", "--per-step-sums"]
    assert train_bench.main([*args, "--out", str(tmp_path), "--name", "t"]) == 0
    table = (tmp_path / "t.md").read_text()
    assert f"time vs {own} |" in table and f"| {own} -DSS_NO_DEFERRED_SUMS |" in table
    first = next(r for r in table.splitlines() if r.startswith(f"| {own} |"))
    assert first.rstrip(" |").endswith("1.000")
