"""Training throughput of the quick start with each selective-scan backend.

    python -m serpent_arch.benchmark train [--opt options/serpent_sr.yml] [--iters 20] [--repeats 3]
        [--march haswell ...] [--name train_throughput]

Builds the network of the option file (``network_g``) and times full training iterations of the
quick start's shape (``batch_size_per_gpu`` patches of ``gt_size`` / ``scale`` LQ pixels, L1
loss, the file's optimizer as ``basicsr train`` builds it, host memory kept as it does) on the CPU,
once per backend, interleaved so that machine load hits all backends alike. Reports iterations per
second (median of ``--repeats`` blocks of ``--iters`` iterations) and the ratio to the plain per-step
loop (``reference``) measured in the same run. cpu_kernel runs once per build: its own
(``-march=native`` or ``$SERPENT_CPU_MARCH``) and
each ``--march`` (default ``haswell`` where the CPU has AVX2: the build of an AVX2-only machine).
The header names the CPU, its vector extensions, threads, ATen's CPU capability and any limits of
torch's instruction sets in the environment (``machine.AVX2_ENV`` emulates an AVX2-only machine
for torch too). Writes ``DIR/<name>.md``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import yaml

BACKENDS = ("reference", "torch", "cpu_kernel")


def _build(net_opt: dict, backend: str, seed: int = 0):
    from basicsr.archs import build_network

    torch.manual_seed(seed)
    return build_network({**net_opt, "scan_backend": backend})


def _time_block(net, optimizer, lq, gt, iters: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) per iteration. On a machine other jobs share,
    CPU time is what the work costs and wall time also counts waiting for a core."""
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(iters):
        optimizer.zero_grad(set_to_none=True)
        loss = F.l1_loss(net(lq), gt)
        loss.backward()
        optimizer.step()
    return (time.perf_counter() - start) / iters, (time.process_time() - cpu) / iters


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serpent_arch.benchmark train", description=__doc__.split("\n")[0])
    parser.add_argument("--opt", default="options/serpent_sr.yml", help="training option file (default: quick start)")
    parser.add_argument("--iters", type=int, default=20, help="iterations per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks per backend (median)")
    parser.add_argument("--backends", nargs="+", default=list(BACKENDS), choices=BACKENDS)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--out", default="results/benchmarks", help="folder for the report")
    parser.add_argument("--name", default="train_throughput", help="report file name (without .md)")
    parser.add_argument("--march", nargs="*", default=None,
                        help="also run cpu_kernel built with these -march (default: haswell where the CPU has "
                        "AVX2; none: --march with no value)")  # fmt: skip
    parser.add_argument("--per-step-sums", action="store_true",
                        help="also run every cpu_kernel build with -DSS_NO_DEFERRED_SUMS (the backward as before "
                        "its deferred sums)")  # fmt: skip
    args = parser.parse_args(argv)

    import serpent_arch  # noqa: F401  (registers Serpent)
    from serpent_arch.benchmark.scan import default_marches, kernel_builds
    from serpent_arch.host_memory import keep_freed_memory
    from serpent_arch.measure.machine import describe
    from serpent_arch.ops import _cpu_kernel, available_backends
    from serpent_arch.optimizers import build_optimizer

    keep_freed_memory()

    if args.threads:
        torch.set_num_threads(args.threads)
    with open(args.opt) as f:
        opt = yaml.safe_load(f)
    train = opt["datasets"]["train"]
    scale = int(opt.get("scale", 1))
    batch, gt_size = int(train["batch_size_per_gpu"]), int(train["gt_size"])
    gen = torch.Generator().manual_seed(0)
    gt = torch.rand(batch, 3, gt_size, gt_size, generator=gen)
    lq = F.interpolate(gt, scale_factor=1 / scale, mode="bicubic", align_corners=False).clamp(0, 1)

    # label -> (scan backend, kernel build for _cpu_kernel.variant or None)
    runs_of: dict[str, tuple[str, tuple | None]] = {}
    for backend in args.backends:
        if backend not in available_backends(torch.device("cpu")):
            continue
        if backend == "cpu_kernel":
            marches = default_marches() if args.march is None else args.march
            for label, variant in kernel_builds(marches, fast_math=False, per_step_sums=args.per_step_sums).items():
                runs_of[label] = (backend, variant)
        else:
            runs_of[backend] = (backend, None)

    def kernel(variant):
        return _cpu_kernel.variant(*variant) if variant else contextlib.nullcontext()

    runs, builds = {}, {}
    for label, (backend, variant) in runs_of.items():
        net = _build(opt["network_g"], backend)
        optim_opt = dict(opt["train"]["optim_g"])
        optimizer = build_optimizer(optim_opt.pop("type"), net.parameters(), **optim_opt)
        with kernel(variant):
            if variant:
                builds[label] = _cpu_kernel.build_info()
            _time_block(net, optimizer, lq, gt, 2)  # warm-up (compiles the C kernel if needed)
        runs[label] = (net, optimizer, variant)
    seconds: dict[str, list[tuple[float, float]]] = {label: [] for label in runs}
    for _ in range(args.repeats):  # interleaved: load spikes hit every backend
        for label, (net, optimizer, variant) in runs.items():
            with kernel(variant):
                seconds[label].append(_time_block(net, optimizer, lq, gt, args.iters))

    per_iter = {b: statistics.median(w for w, _ in s) for b, s in seconds.items()}
    cpu_per_iter = {b: statistics.median(c for _, c in s) for b, s in seconds.items()}
    ref = per_iter.get("reference")
    first = next(iter(seconds))
    lines = [
        "# Quick-start training throughput (CPU)",
        "",
        f"- option file: `{args.opt}`; network {opt['network_g']}",
        f"- batch {batch} x 3 x {gt_size // scale} x {gt_size // scale} LQ -> {gt_size} x {gt_size}, L1 loss, "
        f"{opt['train']['optim_g']['type']}",
        f"- machine: {describe()}",
        *(f"- `{label}`: `{flags}`" for label, flags in builds.items()),
        f"- {datetime.datetime.now().isoformat(timespec='seconds')}; median of {args.repeats} blocks of "
        f"{args.iters} iterations per backend, blocks interleaved across backends",
        "- CPU s / iteration: CPU time of this process (all its threads) per iteration, median of the "
        "blocks: the work an iteration costs, also when other jobs share the machine",
        f"- time vs {first}: the median over rounds of this row's block time / {first}'s in the same round",
        "",
        "| scan backend | s / iteration | iterations / s | speed-up vs reference | CPU s / iteration "
        f"| time vs {first} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for backend, sec in per_iter.items():
        ratio = f"{ref / sec:.1f}x" if ref else "-"
        vs_first = statistics.median(a / b for (a, _), (b, _) in zip(seconds[backend], seconds[first]))
        lines.append(
            f"| {backend} | {sec:.3f} | {1 / sec:.2f} | {ratio} | {cpu_per_iter[backend]:.3f} | {vs_first:.3f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
