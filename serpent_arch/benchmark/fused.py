"""The fused four-direction scan against the unfused one, in the whole network (CPU).

    python -m serpent_arch.benchmark fused [--sizes 512 1024 2048] [--train-size 256] [--train-batch 1]
        [--rounds 3] [--builds native haswell] [--threads 2] [--profile 1024] [--name fused_scan]

Serpent ``base`` at full resolution (``upscale: 1``, the network of the FFHQ deblurring options), its
``auto`` scan backend (``cpu_kernel``). Each measurement runs in a fresh process, so its peak resident
memory (``ru_maxrss``: weights, torch itself, every buffer, oneDNN's scratch) is that of one user's run:

* inference: one whole RGB image of ``--sizes`` pixels, ``torch.inference_mode``; the time of the first
  forward of the process (what restoring one photo costs) and, up to ``--warm-above`` pixels, the median
  of ``--runs`` more after it;
* training: ``--train-batch`` patches of ``--train-size``, L1 loss, AdamW (fused, as ``basicsr train``
  builds it: ``serpent_arch.optimizers``); median of ``--steps`` steps after a warm-up step;
* then, up to ``--warm-above`` pixels and for the training step, both paths in one process,
  alternating for ``--pairs`` pairs: per-pair ratios, the steadiest comparison on a shared machine.

"unfused" is the same process with ``cross_scan.FUSED_BACKENDS`` emptied: SS2D's projections per
direction, cross-scan, the C selective scan, cross-merge (the code before the fused kernel), and the
full-resolution tail on the whole image (``archs.tail``; before it ran in row bands). Inference also runs
"fused, whole tail" (the fused scan with the whole-image tail): what the row bands save. In the
fresh processes the two alternate within each of ``--rounds`` rounds (the first of a pair changes every
round); the report gives medians and the unfused / fused ratio (median over rounds of the ratio within
a round). ``--builds``: ``native`` (the kernel and torch
as this CPU builds them) and ``haswell`` (``machine.AVX2_ENV``: the kernel built ``-march=haswell`` and
torch's ATen, oneDNN and MKL limited to AVX2: an emulated AVX2-only machine). ``--profile SIZE`` adds
a torch.profiler breakdown of one inference forward at SIZE, fused and unfused, by operator group.
Every process keeps freed host memory for reuse as ``basicsr train`` and ``infer`` do
(``serpent_arch.host_memory``; ``SERPENT_KEEP_FREED_MEMORY=0`` measures glibc's defaults instead). Writes
``DIR/<name>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# operator groups of the profile (torch.profiler names -> the categories)
PROFILE_GROUPS = {
    "selective scan (C kernel)": ("scan: ", "CpuSelectiveScanFn", "CpuCrossScanFn"),
    "copy / add / flip / cat / stack (cross-scan, cross-merge, layouts)": (
        "aten::copy_", "aten::add", "aten::flip", "aten::cat", "aten::stack", "aten::clone", "aten::contiguous",
        "aten::index", "aten::permute", "aten::transpose", "aten::sum"),
    "matmul / linear / convolution": ("aten::mm", "aten::bmm", "aten::addmm", "aten::matmul", "aten::linear",
                                      "aten::mkldnn_convolution", "aten::convolution", "aten::_convolution",
                                      "aten::conv2d", "aten::baddbmm"),
    "norms": ("aten::native_layer_norm", "aten::layer_norm", "aten::group_norm", "aten::native_group_norm"),
    "activations / elementwise": ("aten::silu", "aten::gelu", "aten::mul", "aten::exp", "aten::div", "aten::sub",
                                  "aten::neg", "aten::sigmoid", "aten::mean", "aten::var"),
}  # fmt: skip


def _child(args: argparse.Namespace) -> dict:
    """One measurement in this (fresh) process; returns what the parent reports."""
    import resource

    from serpent_arch.host_memory import keep_freed_memory

    memory = keep_freed_memory()  # as basicsr train / infer do (SERPENT_KEEP_FREED_MEMORY=0: glibc's defaults)
    import torch
    import torch.nn.functional as F

    from serpent_arch.archs import Serpent, tail
    from serpent_arch.measure.machine import describe
    from serpent_arch.ops import _cpu_kernel, cross_scan
    from serpent_arch.optimizers import build_optimizer

    torch.set_num_threads(args.threads)
    fused_backends = cross_scan.FUSED_BACKENDS
    if not args.fused:
        cross_scan.FUSED_BACKENDS = ()
    if args.whole_tail or not args.fused:
        tail.BAND_ELEMENTS = 1 << 62  # one band: the whole-image tail
    torch.manual_seed(0)
    net = Serpent(preset="base", upscale=1)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(args.batch, 3, args.size, args.size, generator=gen)
    if args.kind == "infer":
        net.eval()
        if args.profile:
            with torch.inference_mode():
                return _profile(net, x)

        def once():
            with torch.inference_mode():
                net(x)
    else:
        optimizer = build_optimizer("AdamW", net.parameters(), lr=2e-4, weight_decay=1e-4, betas=(0.9, 0.99))
        gt = torch.rand(args.batch, 3, args.size, args.size, generator=gen)

        def once():
            optimizer.zero_grad(set_to_none=True)
            F.l1_loss(net(x), gt).backward()
            optimizer.step()

    def timed(fused: bool | None = None) -> float:
        if fused is not None:
            cross_scan.FUSED_BACKENDS = fused_backends if fused else ()
        t0 = time.perf_counter()
        once()
        return time.perf_counter() - t0

    if args.interleaved:
        # both paths in this one process, alternating, the first of a pair changing every round
        timed(True), timed(False)  # warm-up
        pairs = []
        for rnd in range(args.runs):
            order = (True, False) if rnd % 2 == 0 else (False, True)
            got = {fused: timed(fused) for fused in order}
            pairs.append((got[True], got[False]))
        return {"pairs": pairs, "machine": describe(), "build": _cpu_kernel.build_info(), "host_memory": memory}
    times = [timed() for _ in range(args.runs)]
    return {
        "times": times,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "machine": describe(),
        "build": _cpu_kernel.build_info(),
        "host_memory": memory,
        "optimizer_fused": bool(optimizer.defaults.get("fused")) if args.kind == "train" else None,
    }


def _profile(net, x) -> dict:
    """Self CPU time of one forward by operator group (the C kernels are labelled with record_function)."""
    from torch.profiler import ProfilerActivity, profile, record_function

    import serpent_arch.archs.ss2d as ss2d

    def labelled(fn, label):
        def run(*a, **k):
            with record_function(label):
                return fn(*a, **k)

        return run

    ss2d.selective_scan = labelled(ss2d.selective_scan, "scan: selective_scan")
    ss2d.cross_selective_scan_lowrank = labelled(ss2d.cross_selective_scan_lowrank, "scan: cross_selective_scan")
    net(x)  # warm-up
    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        net(x)
    wall = time.perf_counter() - t0
    self_us: dict[str, float] = {}
    for evt in prof.key_averages():
        self_us[evt.key] = self_us.get(evt.key, 0.0) + evt.self_cpu_time_total
    total = sum(self_us.values())
    groups = {name: 0.0 for name in PROFILE_GROUPS}
    groups["other"] = 0.0
    top = sorted(self_us.items(), key=lambda kv: -kv[1])[:16]
    for key, us in self_us.items():
        group = next((g for g, prefixes in PROFILE_GROUPS.items() if key.startswith(prefixes)), "other")
        groups[group] += us
    return {"wall": wall, "total_s": total / 1e6, "groups": {g: us / total for g, us in groups.items()},
            "top": [(k, us / total) for k, us in top]}  # fmt: skip


def _run_child(kind: str, size: int, batch: int, fused: bool, runs: int, threads: int, build: str,
               profile: bool = False, interleaved: bool = False, whole_tail: bool = False) -> dict:  # fmt: skip
    from serpent_arch.measure.machine import AVX2_ENV

    env = dict(os.environ)
    for key in AVX2_ENV:
        env.pop(key, None)
    if build == "haswell":
        env.update(AVX2_ENV)
    cmd = [sys.executable, "-m", "serpent_arch.benchmark.fused", "--child", kind, "--size", str(size),
           "--batch", str(batch), "--fused", str(int(fused)), "--runs", str(runs), "--threads", str(threads)]
    if profile:
        cmd.append("--profile-child")
    if interleaved:
        cmd.append("--interleaved")
    if whole_tail:
        cmd.append("--whole-tail")
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serpent_arch.benchmark fused", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[512, 1024, 2048], help="inference image sizes")
    parser.add_argument("--train-size", type=int, default=256, help="training patch size (0: no training rows)")
    parser.add_argument("--train-batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed training steps after the warm-up step")
    parser.add_argument("--runs", type=int, default=2, help="timed inference forwards after the first")
    parser.add_argument("--warm-above", type=int, default=1024, help="no repeated forwards above this size")
    parser.add_argument("--rounds", type=int, default=1, help="rounds of fresh processes (first forward, memory)")
    parser.add_argument("--pairs", type=int, default=5,
                        help="fused / unfused pairs timed in one process per workload up to --warm-above")
    parser.add_argument("--builds", nargs="+", default=["native", "haswell"], choices=["native", "haswell"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", type=int, default=0, help="profile one inference forward at this size")
    parser.add_argument("--out", default="results/benchmarks", help="folder for the report")
    parser.add_argument("--name", default="fused_scan", help="report file name (without .md)")
    # the child process (one measurement)
    parser.add_argument("--child", choices=["infer", "train"], help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--fused", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--profile-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--interleaved", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--whole-tail", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.command_line = " ".join(sys.argv[1:] if argv is None else argv)

    if args.child:
        args.kind, args.profile = args.child, args.profile_child
        print(json.dumps(_child(args)))
        return 0

    workloads = [("infer", s, 1, 1 + (args.runs if s <= args.warm_above else 0)) for s in args.sizes]
    if args.train_size:
        workloads.append(("train", args.train_size, args.train_batch, 1 + args.steps))
    if not workloads:
        parser.error("nothing to measure: give --sizes, a --train-size above 0, or both (the report's rows)")
    results: dict[tuple, list[dict]] = {}
    loads = [_load()]
    started = datetime.datetime.now().isoformat(timespec="seconds")
    for rnd in range(args.rounds):
        for build in args.builds:
            for kind, size, batch, runs in workloads:
                order = (True, False) if rnd % 2 == 0 else (False, True)
                for fused in order:
                    r = _run_child(kind, size, batch, fused, runs, args.threads, build)
                    r["load"] = _load()
                    results.setdefault((build, kind, size, fused), []).append(r)
                    print(f"round {rnd} {build} {kind} {size} {'fused' if fused else 'unfused'}: "
                          f"{[round(t, 2) for t in r['times']]} s, {r['peak_rss_mib']:.0f} MiB, load {r['load']:.1f}",
                          flush=True)  # fmt: skip
                if kind == "infer":
                    r = _run_child(kind, size, batch, True, runs, args.threads, build, whole_tail=True)
                    r["load"] = _load()
                    results.setdefault((build, kind, size, "whole tail"), []).append(r)
                    print(f"round {rnd} {build} {kind} {size} fused, whole tail: {[round(t, 2) for t in r['times']]} "
                          f"s, {r['peak_rss_mib']:.0f} MiB, load {r['load']:.1f}", flush=True)  # fmt: skip
    interleaved: dict[tuple, dict] = {}
    for build in args.builds:
        for kind, size, batch, _runs in workloads:
            if kind == "infer" and size > args.warm_above:
                continue
            r = _run_child(kind, size, batch, True, args.pairs, args.threads, build, interleaved=True)
            r["load"] = _load()
            interleaved[(build, kind, size)] = r
            print(f"interleaved {build} {kind} {size}: {[(round(a, 2), round(b, 2)) for a, b in r['pairs']]} "
                  f"(fused, unfused) s, load {r['load']:.1f}", flush=True)  # fmt: skip
    loads.append(_load())
    profiles = {}
    if args.profile:
        for fused in (True, False):
            profiles[fused] = _run_child("infer", args.profile, 1, fused, 1, args.threads, args.builds[0], True)
    text = _report(args, workloads, results, interleaved, profiles, loads, started)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.md").write_text(text)
    return 0


def _seconds(r: dict, kind: str) -> float:
    """The time a row reports: the first forward (inference), the median of the steps after the first (training)."""
    return r["times"][0] if kind == "infer" else statistics.median(r["times"][1:])


def _report(args, workloads, results, interleaved, profiles, loads, started) -> str:
    machines = {b: results[(b, *workloads[0][:2], True)][0]["machine"] for b in args.builds}
    builds = {b: results[(b, *workloads[0][:2], True)][0]["build"] for b in args.builds}
    first = next(iter(results.values()))[0]
    memory_note = first.get("host_memory", "")
    fused_seen = {r.get("optimizer_fused") for (_b, kind, *_), rs in results.items() if kind == "train" for r in rs}
    optimizer_fused = {frozenset({True}): "yes", frozenset({False}): "no"}.get(frozenset(fused_seen), "not recorded")
    lines = [
        "# The fused four-direction scan in the whole network (CPU)",
        "",
        "```",
        f"python -m serpent_arch.benchmark fused {args.command_line}".rstrip(),
        "```",
        "",
        "Serpent `base`, `upscale: 1` (the FFHQ deblurring network), scan backend `auto` = `cpu_kernel`; "
        "every number from a fresh process.",
        "",
        *(f"- `{b}`: {machines[b]}; kernel `{builds[b]}`" for b in args.builds),
        f"- {started}; {args.rounds} round(s), fused and unfused alternating; 1-minute load average "
        f"{loads[0]:.1f} at the start, {loads[-1]:.1f} at the end (the machine is shared: see the load column)",
        "- inference: one RGB image, `torch.inference_mode`; **first** = the first forward of the process (one "
        f"photo restored), **warm** = median of the {args.runs} forwards after it (sizes up to {args.warm_above})",
        f"- training: batch {args.train_batch}, L1 loss, AdamW (fused: {optimizer_fused}); median of {args.steps} "
        "steps after a warm-up step",
        f"- {memory_note}",
        "- peak RSS: `ru_maxrss` of the process (torch, weights, every buffer); speed-up and memory ratio: "
        "unfused / fused, median over rounds of the ratio within the round",
        "",
        "| build | workload | size | fused (s) | unfused (s) | speed-up | fused warm (s) | unfused warm (s) "
        "| fused peak RSS (MiB) | unfused peak RSS (MiB) | memory ratio | fused, whole tail: s, peak RSS (MiB) "
        "| load |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for build in args.builds:
        for kind, size, _batch, _runs in workloads:
            f, u = results[(build, kind, size, True)], results[(build, kind, size, False)]
            tf = statistics.median(_seconds(r, kind) for r in f)
            tu = statistics.median(_seconds(r, kind) for r in u)
            ratio = statistics.median(_seconds(b, kind) / _seconds(a, kind) for a, b in zip(f, u))
            mf = statistics.median(r["peak_rss_mib"] for r in f)
            mu = statistics.median(r["peak_rss_mib"] for r in u)
            mratio = statistics.median(b["peak_rss_mib"] / a["peak_rss_mib"] for a, b in zip(f, u))
            warm = ["-", "-"]
            if kind == "infer" and len(f[0]["times"]) > 1:
                warm = [f"{statistics.median(t for r in rs for t in r['times'][1:]):.2f}" for rs in (f, u)]
            whole = results.get((build, kind, size, "whole tail"), [])
            whole_cell = "-"
            if whole:
                whole_cell = (f"{statistics.median(_seconds(r, kind) for r in whole):.2f} s, "
                              f"{statistics.median(r['peak_rss_mib'] for r in whole):,.0f}")  # fmt: skip
            load = statistics.median(r["load"] for r in f + u + whole)
            label = f"inference {size}x{size}" if kind == "infer" else f"training step {size}x{size}"
            first = "first" if kind == "infer" else "step"
            lines.append(f"| {build} | {label} ({first}) | {size} | {tf:.2f} | {tu:.2f} | {ratio:.2f}x | "
                         f"{warm[0]} | {warm[1]} | {mf:,.0f} | {mu:,.0f} | {mratio:.2f}x | {whole_cell} | "
                         f"{load:.1f} |")  # fmt: skip
    if interleaved:
        lines += ["", "## Fused against unfused in one process", "",
                  f"Each workload in one process, the two paths alternating for {args.pairs} pairs after a warm-up "
                  "pair (the first of a pair changing every pair): the ratio of a pair is the steadiest number on a "
                  "shared machine.", "",
                  "| build | workload | fused (s, median) | unfused (s, median) | speed-up (median of pair ratios) "
                  "| pair ratios | load |", "|---|---|---:|---:|---:|---|---:|"]  # fmt: skip
        for (build, kind, size), r in interleaved.items():
            fused_s = statistics.median(a for a, _ in r["pairs"])
            unfused_s = statistics.median(b for _, b in r["pairs"])
            ratios = [b / a for a, b in r["pairs"]]
            label = f"inference {size}x{size}" if kind == "infer" else f"training step {size}x{size}"
            lines.append(f"| {build} | {label} | {fused_s:.2f} | {unfused_s:.2f} | {statistics.median(ratios):.2f}x | "
                         f"{', '.join(f'{q:.2f}' for q in ratios)} | {r['load']:.1f} |")  # fmt: skip
    if profiles:
        lines += ["", f"## Profile of one inference forward at {args.profile}x{args.profile} (`{args.builds[0]}`)", "",
                  "Share of the self CPU time of all operators (torch.profiler), by group; the C kernels are "
                  "labelled with `record_function` (`scan: ...`).", "",
                  "| operator group | unfused | fused |", "|---|---:|---:|"]  # fmt: skip
        unfused, fused = profiles[False], profiles[True]
        for group in [*PROFILE_GROUPS, "other"]:
            lines.append(f"| {group} | {unfused['groups'][group]:.0%} | {fused['groups'][group]:.0%} |")
        lines.append(f"| total self CPU time (s) | {unfused['total_s']:.2f} | {fused['total_s']:.2f} |")
        lines.append(f"| wall time with the profiler (s) | {unfused['wall']:.2f} | {fused['wall']:.2f} |")
        for fused in (False, True):
            top = ", ".join(f"`{k}` {share:.0%}" for k, share in profiles[fused]["top"])
            lines += ["", f"Top operators, {'fused' if fused else 'unfused'}: {top}"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
