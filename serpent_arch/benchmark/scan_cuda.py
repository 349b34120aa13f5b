"""Benchmark the selective-scan backends on a GPU: mamba_ssm, triton and torch in one run.

    python -m serpent_arch.benchmark scan_cuda [--repeats 10] [--out DIR] [--quick] [--sweep]

Size (the Triton backend issue's target): batch 8, dim 768, L 4096, N 16, 4 groups, delta_bias,
delta_softplus, D, z=None, float32; ``--quick`` uses a small size as a smoke test. For each
backend that runs on the device it reports, all measured in this run on this GPU:

* forward time and forward + backward time: median over ``--repeats`` runs after two warm-up
  runs (which include Triton's compilation), timed with ``torch.cuda.synchronize`` around each;
* peak memory of the forward and of forward + backward: ``torch.cuda.max_memory_allocated``
  minus what was allocated before (the inputs and the output gradient are excluded);
* the largest error of the output and of every gradient against the first backend in the list
  that ran (``mamba_ssm`` if installed, else ``triton``), divided by that backend's largest
  magnitude; and, at a small size, every backend against the ``reference`` loop.

``--sweep`` also times the triton backend at a few other tile shapes (channels per program,
chunk length, warps), since its defaults were chosen by register counts without a GPU at hand.

:func:`bench_cuda_scan` does the measuring and runs on any device (the tests call it on CPU at
a tiny size; peak memory is then counted with the project's TensorMemoryTracker); the GPU check
script can call it and :func:`render` directly. The markdown is printed and written to
``DIR/scan_cuda_benchmark.md`` (``..._quick.md`` with ``--quick``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from serpent_arch.benchmark.scan import make_inputs
from serpent_arch.measure.memory import TensorMemoryTracker, cuda_peak
from serpent_arch.ops import available_backends, selective_scan

TARGET = {"batch": 8, "dim": 768, "L": 4096, "N": 16, "groups": 4}
QUICK = {"batch": 2, "dim": 64, "L": 512, "N": 16, "groups": 4}
AGREEMENT = {"batch": 2, "dim": 16, "L": 300, "N": 16, "groups": 4}  # small enough for the reference loop
BACKENDS = ("mamba_ssm", "triton", "torch")
# (block_d, chunk, num_warps) tried by --sweep besides the defaults
TRITON_TILES = ((2, 64, 4), (8, 16, 4), (4, 32, 8), (1, 128, 4), (4, 16, 4))
Tensors = dict[str, torch.Tensor]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _run(backend: str, inputs: Tensors, gout: torch.Tensor | None, **kw) -> Tensors:
    """Forward (no autograd) if ``gout`` is None, else forward + backward; returns out and grads."""
    if gout is None:
        with torch.no_grad():
            return {"out": _scan(backend, inputs, **kw)}
    leaves = {k: v.detach().requires_grad_() for k, v in inputs.items()}
    out = _scan(backend, leaves, **kw)
    out.backward(gout)
    return {"out": out.detach(), **{k: v.grad for k, v in leaves.items()}}


def _scan(backend: str, inputs: Tensors, **kw) -> torch.Tensor:
    if kw:  # triton tile options go to the backend's own entry point
        from serpent_arch.ops._triton_scan import selective_scan_triton

        return selective_scan_triton(**inputs, delta_softplus=True, **kw)
    return selective_scan(**inputs, delta_softplus=True, backend=backend)


def _median_ms(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _peak_bytes(fn: Callable[[], object], device: torch.device) -> int:
    """Most bytes allocated at once by ``fn`` beyond what was allocated before it."""
    if device.type == "cuda":
        return cuda_peak(fn, device)
    with TensorMemoryTracker() as mem:
        fn()
    return mem.peak_bytes


def rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|."""
    scale = expected.abs().max().item()
    return (actual.double() - expected.double()).abs().max().item() / (scale if scale > 0 else 1.0)


def _max_err(results: Tensors, baseline: Tensors) -> float:
    return max(rel_err(results[k], baseline[k]) for k in baseline)


def bench_cuda_scan(
    device: str | torch.device = "cuda",
    backends: Sequence[str] = BACKENDS,
    size: dict | None = None,
    repeats: int = 10,
    sweep: bool = False,
    agreement_size: dict | None = AGREEMENT,
) -> dict:
    """Time and check the selective-scan backends on ``device``.

    Args:
        device: where to run (``"cuda"`` for the real measurement).
        backends: names to try; those that cannot run on ``device`` are skipped (listed in
            ``"skipped"`` with the reason).
        size: dict of batch, dim, L, N, groups (default :data:`TARGET`).
        repeats: timed runs per measurement (median).
        sweep: also time triton at the tiles in :data:`TRITON_TILES`.
        agreement_size: size at which every backend is compared with ``reference``; None skips it.

    Returns:
        ``{"size", "device", "rows": {label: {fwd_ms, fwd_bwd_ms, fwd_peak, fwd_bwd_peak,
        err_vs_baseline}}, "baseline", "agreement": {label: max rel. error vs reference},
        "skipped": {name: reason}}``.
    """
    device = torch.device(device)
    size = dict(TARGET if size is None else size)
    usable = set(available_backends(device))
    skipped = {}
    runs: list[tuple[str, str, dict]] = []  # (label, backend, triton tile options)
    for name in backends:
        if name not in usable:
            skipped[name] = _why_not(name, device)
            continue
        runs.append((name, name, {}))
        if name == "triton" and sweep:
            for block_d, chunk, warps in TRITON_TILES:
                label = f"triton d{block_d} c{chunk} w{warps}"
                runs.append((label, name, {"block_d": block_d, "chunk": chunk, "num_warps": warps}))

    inputs = {k: v.to(device) for k, v in make_inputs(**size).items()}
    gen = torch.Generator().manual_seed(1)
    gout = torch.randn(size["batch"], size["dim"], size["L"], generator=gen).to(device)
    rows, baseline = {}, None
    for label, name, kw in runs:
        fwd = functools.partial(_run, name, inputs, None, **kw)
        fwd_bwd = functools.partial(_run, name, inputs, gout, **kw)
        for _ in range(2):  # warm-up: compilation, allocator
            results = fwd_bwd()
        row = {
            "fwd_ms": _median_ms(fwd, device, repeats),
            "fwd_bwd_ms": _median_ms(fwd_bwd, device, repeats),
            "fwd_peak": _peak_bytes(fwd, device),
            "fwd_bwd_peak": _peak_bytes(fwd_bwd, device),
        }
        if baseline is None:
            baseline = (label, results)
        row["err_vs_baseline"] = _max_err(results, baseline[1])
        rows[label] = row
        del results

    agreement = {}
    if agreement_size is not None and rows:
        small = {k: v.to(device) for k, v in make_inputs(**agreement_size).items()}
        small_gout = torch.randn(agreement_size["batch"], agreement_size["dim"], agreement_size["L"],
                                 generator=torch.Generator().manual_seed(2)).to(device)  # fmt: skip
        ref = _run("reference", small, small_gout)
        for label, name, kw in runs:
            agreement[label] = _max_err(_run(name, small, small_gout, **kw), ref)
    return {
        "size": size,
        "device": _device_name(device),
        "rows": rows,
        "baseline": None if baseline is None else baseline[0],
        "agreement": agreement,
        "skipped": skipped,
    }


def _why_not(name: str, device: torch.device) -> str:
    from serpent_arch.ops import resolve_backend

    try:
        resolve_backend(name, torch.empty(0, device=device))
    except RuntimeError as exc:
        return str(exc)
    return "not available"


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)}, CUDA {torch.version.cuda}"
    return str(device)


def render(report: dict, repeats: int) -> str:
    """The report of :func:`bench_cuda_scan` as markdown, with the issue's targets checked."""
    s = report["size"]
    lines = [
        "# Selective scan benchmark (GPU)",
        "",
        f"- size: batch {s['batch']}, dim {s['dim']}, L {s['L']}, N {s['N']}, groups {s['groups']}; "
        "delta_bias, delta_softplus, D, z=None; float32",
        f"- device: {report['device']}; torch {torch.__version__}; "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}; medians of {repeats} runs after 2 warm-ups",
        "- peak: "
        + (
            "max_memory_allocated minus memory allocated before the call (inputs excluded)"
            if report["device"] != "cpu"
            else "torch tensor storage allocated by the call (TensorMemoryTracker; CPU smoke run)"
        ),
        f"- error: max |x - x_base| / max |x_base| over the output and all gradients, base = {report['baseline']}",
        "",
        "| backend | forward (ms) | fwd+bwd (ms) | forward peak (MiB) | fwd+bwd peak (MiB) | error vs base "
        "| error vs reference (small size) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in report["rows"].items():
        agree = report["agreement"].get(label)
        lines.append(
            f"| {label} | {r['fwd_ms']:.2f} | {r['fwd_bwd_ms']:.2f} | {r['fwd_peak'] / 2**20:.1f} "
            f"| {r['fwd_bwd_peak'] / 2**20:.1f} | {r['err_vs_baseline']:.1e} "
            f"| {'n/a' if agree is None else f'{agree:.1e}'} |"
        )
    for name, reason in report["skipped"].items():
        lines.append(f"| {name} | skipped: {reason} | | | | | |")
    rows = report["rows"]
    if "triton" in rows:
        tri = rows["triton"]["fwd_bwd_ms"]
        lines.append("")
        if "mamba_ssm" in rows:
            ratio = tri / rows["mamba_ssm"]["fwd_bwd_ms"]
            verdict = "met" if ratio <= 2 else "NOT met"
            lines.append(f"- triton fwd+bwd / mamba_ssm fwd+bwd = {ratio:.2f} (target <= 2: {verdict})")
        if "torch" in rows:
            speedup = rows["torch"]["fwd_bwd_ms"] / tri
            lines.append(
                f"- torch fwd+bwd / triton fwd+bwd = {speedup:.1f}x (target >= 10x: "
                f"{'met' if speedup >= 10 else 'NOT met'})"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(
        prog="python -m serpent_arch.benchmark scan_cuda", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median reported)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"), help="output directory")
    parser.add_argument("--quick", action="store_true", help=f"small size {QUICK} as a smoke test")
    parser.add_argument("--sweep", action="store_true", help=f"also time triton tiles {TRITON_TILES}")
    parser.add_argument("--device", default="cuda", help="device to measure on (default cuda)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS + ("reference",))
    args = parser.parse_args(argv)

    size = QUICK if args.quick else TARGET
    report = bench_cuda_scan(args.device, args.backends, size, args.repeats, args.sweep, agreement_size=AGREEMENT)
    table = render(report, args.repeats)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("scan_cuda_benchmark_quick.md" if args.quick else "scan_cuda_benchmark.md")
    path.write_text(table)
    print(f"written to {path}")
    return table


if __name__ == "__main__":
    main()
