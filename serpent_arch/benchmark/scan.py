"""Benchmark the selective-scan backends on CPU.

    python -m serpent_arch.benchmark.scan [--repeats 5] [--out DIR] [--quick] [--threads N] [--march haswell ...]
        [--d-state N]

Target size (Serpent's widest stage on a 64x64 crop): batch 1, dim 768, L 4096, N 16, 4 groups,
delta_bias, delta_softplus, D, no z, float32. ``--quick`` uses a small size as a smoke test.

For every available backend among reference, torch and cpu_kernel it reports, all measured in this
run and on this machine. cpu_kernel is measured once per build: the kernel's own build
(``-march=native`` or ``$SERPENT_CPU_MARCH``), each ``--march`` (default ``haswell`` on a CPU with
AVX2: what an AVX2-only machine builds), and for each of these the same kernel with
``-ffast-math`` added, the yardstick of the targets (forward >= 15x reference and within 1.5x of
the -ffast-math build, forward + backward >= 30x). The header names the CPU, its vector
extensions, the threads and every build's flags.

* forward time: median over ``--repeats`` rounds under ``torch.no_grad()``;
* forward + backward time: median over ``--repeats`` rounds (output gradient fixed, inputs fresh
  leaves each run; the forward is included), and its ratio to the first row's, the median of the
  per-round ratios. A round times every row once, in turn, so load on a shared machine hits all
  rows alike;
* forward peak memory: the most bytes of torch tensor storage alive at once that the no-grad
  forward allocated, inputs excluded, measured with
  :class:`serpent_arch.measure.memory.TensorMemoryTracker` (a ``TorchDispatchMode`` that counts
  each new storage until its last tensor is freed). The C kernel takes its scratch space as torch
  tensors, so nothing it uses is hidden from this count, except stack arrays of a few KiB per
  thread;
* the largest error of the output and of every gradient relative to the reference's, divided by
  the reference's largest magnitude.

Warm-up runs come first (for cpu_kernel that includes compiling the C kernel). The markdown table
is printed and written to ``DIR/scan_benchmark.md`` (``DIR/scan_benchmark_quick.md`` with
``--quick``, so a smoke test never overwrites real numbers).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import math
import statistics
import time
from functools import partial
from pathlib import Path

import torch

from serpent_arch.measure.machine import describe, vector_extensions
from serpent_arch.measure.memory import TensorMemoryTracker
from serpent_arch.ops import _cpu_kernel, available_backends, selective_scan

TARGET = {"batch": 1, "dim": 768, "L": 4096, "N": 16, "groups": 4}
QUICK = {"batch": 1, "dim": 64, "L": 256, "N": 8, "groups": 2}
BACKENDS = ("reference", "torch", "cpu_kernel")
Tensors = dict[str, torch.Tensor]


def make_inputs(batch: int, dim: int, L: int, N: int, groups: int, seed: int = 0) -> Tensors:
    """Mamba-like float32 inputs: u, delta (batch, dim, L); A (dim, N) = -(1..N) (S4D-real init);
    B, C (batch, groups, N, L); D, delta_bias (dim,) with softplus(delta + bias) in ~[0.001, 0.1]."""
    gen = torch.Generator().manual_seed(seed)
    dt = torch.exp(torch.rand(dim, generator=gen) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return {
        "u": torch.randn(batch, dim, L, generator=gen),
        "delta": torch.randn(batch, dim, L, generator=gen) * 0.5,
        "A": -torch.arange(1, N + 1, dtype=torch.float32).repeat(dim, 1),
        "B": torch.randn(batch, groups, N, L, generator=gen),
        "C": torch.randn(batch, groups, N, L, generator=gen),
        "D": torch.ones(dim),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # inverse softplus of dt
    }


def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def _forward(backend: str, inputs: Tensors) -> torch.Tensor:
    with torch.no_grad():
        return selective_scan(**inputs, delta_softplus=True, backend=backend)


def _forward_backward(backend: str, inputs: Tensors, gout: torch.Tensor) -> Tensors:
    leaves = {k: v.detach().requires_grad_() for k, v in inputs.items()}
    out = selective_scan(**leaves, delta_softplus=True, backend=backend)
    out.backward(gout)
    return {"out": out.detach(), **{k: v.grad for k, v in leaves.items()}}


def measure(backend: str, inputs: Tensors, gout: torch.Tensor) -> dict:
    """Peak forward memory and the outputs/gradients of one backend (for cpu_kernel: of the build
    selected by the caller's ``_cpu_kernel.variant``); the timings come from :func:`time_rounds`."""
    _forward(backend, inputs)  # warm-up (compiles the C kernel on first use)
    results = _forward_backward(backend, inputs, gout)
    with TensorMemoryTracker() as mem:
        _forward(backend, inputs)
    return {"peak_bytes": mem.peak_bytes, "results": results}


def time_rounds(runs: dict[str, tuple[str, tuple | None]], inputs: Tensors, gout: torch.Tensor, repeats: int) -> dict:
    """label -> {"fwd": [ms], "fwd_bwd": [ms]} over ``repeats`` rounds; each round times every row once,
    in turn, so a load spike on a shared machine hits all of them alike (``runs``: label -> (backend,
    cpu_kernel build for ``_cpu_kernel.variant`` or None))."""
    times = {label: {"fwd": [], "fwd_bwd": []} for label in runs}
    for _ in range(repeats):
        for label, (backend, variant) in runs.items():
            with _cpu_kernel.variant(*variant) if variant else contextlib.nullcontext():
                times[label]["fwd"].append(_ms(partial(_forward, backend, inputs)))
                times[label]["fwd_bwd"].append(_ms(partial(_forward_backward, backend, inputs, gout)))
    return times


def _rel_err(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.abs().max().item()
    return (actual.double() - expected.double()).abs().max().item() / (scale if scale > 0 else 1.0)


def render(cfg: dict, rows: dict[str, dict], repeats: int, builds: dict[str, str]) -> str:
    """Markdown report; ``rows`` label -> measure(), ``builds`` cpu_kernel label -> its flags."""
    ref = rows.get("reference")
    first = next(iter(rows))
    lines = [
        "# Selective scan benchmark (CPU)",
        "",
        f"- size: batch {cfg['batch']}, dim {cfg['dim']}, L {cfg['L']}, N {cfg['N']}, "
        f"groups {cfg['groups']}; delta_bias, delta_softplus, D, z=None; float32",
        f"- machine: {describe()}; cpu_kernel uses the same threads",
        *(f"- `{label}`: `{flags}`" for label, flags in builds.items()),
        f"- {datetime.datetime.now().isoformat(timespec='seconds')}; medians of {repeats} rounds after warm-up, "
        "each round timing every row once in turn",
        "- peak memory: largest live total of torch tensor storage allocated by one no-grad forward "
        "(inputs excluded), tracked with a TorchDispatchMode",
        "- error: max |x - x_ref| / max |x_ref| over the output and all gradients",
        f"- fwd+bwd vs {first}: median over the rounds of this row's fwd+bwd time / {first}'s in the same round",
        "",
        "| backend | forward (ms) | forward speed-up | fwd+bwd (ms) | fwd+bwd speed-up | forward peak (MiB) "
        f"| peak vs reference | max rel. error | fwd+bwd vs {first} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in rows.items():
        vs_first = statistics.median(a / b for a, b in zip(r["fwd_bwd"], rows[first]["fwd_bwd"]))
        if ref is not None:
            fwd_x = f"{ref['fwd_ms'] / r['fwd_ms']:.1f}x"
            bwd_x = f"{ref['fwd_bwd_ms'] / r['fwd_bwd_ms']:.1f}x"
            mem_x = f"{r['peak_bytes'] / ref['peak_bytes']:.2f}" if ref["peak_bytes"] else "n/a"
            err = max(_rel_err(r["results"][k], ref["results"][k]) for k in r["results"])
            err_s = "(reference)" if name == "reference" else f"{err:.1e}"
        else:
            fwd_x = bwd_x = mem_x = err_s = "n/a"
        lines.append(
            f"| {name} | {r['fwd_ms']:.1f} | {fwd_x} | {r['fwd_bwd_ms']:.1f} | {bwd_x} "
            f"| {r['peak_bytes'] / 2**20:.1f} | {mem_x} | {err_s} | {vs_first:.3f} |"
        )
    if ref is not None:
        checks = [_targets(label, rows[label], rows.get(f"{label} -ffast-math"), ref) for label in builds
                  if label in rows and not label.endswith("-ffast-math")]  # fmt: skip
        lines += ["", "Targets (forward >= 15x reference and <= 1.5x the -ffast-math build, fwd+bwd >= 30x, "
                  "forward peak <= reference):", "", *checks]  # fmt: skip
    return "\n".join(lines) + "\n"


def _targets(label: str, r: dict, fast: dict | None, ref: dict) -> str:
    def ok(cond: bool) -> str:
        return "met" if cond else "NOT met"

    fwd_x, bwd_x = ref["fwd_ms"] / r["fwd_ms"], ref["fwd_bwd_ms"] / r["fwd_bwd_ms"]
    text = f"- `{label}`: forward {fwd_x:.1f}x ({ok(fwd_x >= 15)}), "
    if fast is not None:
        vs_fast = r["fwd_ms"] / fast["fwd_ms"]
        text += f"{vs_fast:.2f}x the -ffast-math forward ({ok(vs_fast <= 1.5)}), "
    text += f"fwd+bwd {bwd_x:.1f}x ({ok(bwd_x >= 30)}), "
    text += f"forward peak {r['peak_bytes'] / 2**20:.1f} MiB ({ok(r['peak_bytes'] <= ref['peak_bytes'])})"
    return text


def default_marches() -> list[str]:
    """Forced builds measured by default: haswell (an AVX2-only machine's build) where it runs."""
    return ["haswell"] if _cpu_kernel.is_x86() and {"avx2", "fma"} <= set(vector_extensions()) else []


# the build without the AVX-512 backward's deferred sums (_scan_kernel.c), for measuring what they save
PER_STEP_SUMS = "-DSS_NO_DEFERRED_SUMS"


def kernel_builds(
    marches: list[str], fast_math: bool = True, per_step_sums: bool = False
) -> dict[str, tuple[str | None, tuple[str, ...]]]:
    """Row label -> (march, extra flags) for ``_cpu_kernel.variant``; the kernel's own build first.
    ``per_step_sums`` adds each build without the deferred sums of the N = 16 backward."""
    own = _cpu_kernel.kernel_march()
    builds: dict[str, tuple[str | None, tuple[str, ...]]] = {}
    for march in [own, *(m for m in marches if m != own)]:
        label = f"cpu_kernel -march={march}"
        builds[label] = (march, ())
        if per_step_sums:
            builds[f"{label} {PER_STEP_SUMS}"] = (march, (PER_STEP_SUMS,))
        if fast_math:
            builds[f"{label} -ffast-math"] = (march, ("-ffast-math",))
    return builds


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"), help="output directory")
    parser.add_argument("--quick", action="store_true", help=f"small size {QUICK} as a smoke test")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads before measuring")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--march", nargs="*", default=None,
                        help="also measure cpu_kernel built with these -march (default: haswell where the CPU "
                        "has AVX2; none: --march with no value)")  # fmt: skip
    parser.add_argument("--no-fast-math", action="store_true", help="skip the -ffast-math builds")
    parser.add_argument("--per-step-sums", action="store_true",
                        help=f"also measure every build with {PER_STEP_SUMS} (the backward as before its "
                        "deferred sums)")  # fmt: skip
    parser.add_argument("--d-state", type=int, default=None,
                        help="state size N instead of the size's own (16; 8 for --quick); the table is "
                        "written to scan_benchmark_N<d>.md")  # fmt: skip
    args = parser.parse_args(argv)
    if args.d_state is not None and args.d_state < 1:
        parser.error(f"--d-state: expected a positive state size, got {args.d_state}")

    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = dict(QUICK if args.quick else TARGET)
    if args.d_state is not None:
        cfg["N"] = args.d_state
    inputs = make_inputs(**cfg)
    gout = torch.randn(cfg["batch"], cfg["dim"], cfg["L"], generator=torch.Generator().manual_seed(1))
    usable = set(available_backends("cpu"))
    runs: dict[str, tuple[str, tuple | None]] = {}
    for name in args.backends:
        if name not in usable:
            print(f"skipping {name}: not available here")
            continue
        variants = {name: None}
        if name == "cpu_kernel":
            marches = default_marches() if args.march is None else args.march
            variants = kernel_builds(marches, fast_math=not args.no_fast_math, per_step_sums=args.per_step_sums)
        runs.update({label: (name, variant) for label, variant in variants.items()})
    rows, builds = {}, {}
    for label, (name, variant) in runs.items():
        print(f"measuring {label} ...", flush=True)
        with _cpu_kernel.variant(*variant) if variant else contextlib.nullcontext():
            if variant:
                builds[label] = _cpu_kernel.build_info()
            rows[label] = measure(name, inputs, gout)
    print(f"timing {len(runs)} rows, {args.repeats} interleaved rounds ...", flush=True)
    for label, t in time_rounds(runs, inputs, gout, args.repeats).items():
        rows[label].update(t, fwd_ms=statistics.median(t["fwd"]), fwd_bwd_ms=statistics.median(t["fwd_bwd"]))

    table = render(cfg, rows, args.repeats, builds)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    suffix = ("_quick" if args.quick else "") + (f"_N{args.d_state}" if args.d_state is not None else "")
    path = args.out / f"scan_benchmark{suffix}.md"
    path.write_text(table)
    print(f"written to {path}")
    return table


if __name__ == "__main__":
    main()
