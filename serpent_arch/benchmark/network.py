"""Network efficiency benchmark: params, GFLOPs, peak memory and latency of full-size restoration.

Run ``python -m serpent_arch.benchmark network [--sizes 128 256 512 1024] [--device cpu|cuda]
[--amp bf16] [--quick] [--out experiments/benchmarks/]``. Every (network, size) pair restores one
RGB image of HxW to HxW (batch 1, deblurring setting) and reports:

* params (M): trainable and frozen parameters.
* GFLOPs: one forward pass, counted by :mod:`serpent_arch.benchmark.flops` (torch's
  ``FlopCounterMode`` for matmuls/convolutions, 2 FLOPs per multiply-accumulate, plus a formula for
  the selective scan, which the counter cannot see).
* Peak memory: torch has no CPU ``max_memory_allocated``, so on CPU it is the peak, above the
  level at the start, of the bytes held through torch's CPU allocator during one
  ``torch.no_grad()`` forward, read from the profiler's allocation events; where they are not
  recorded, the peak of live tensor storages tracked op by op (which misses temporaries allocated
  inside an op): both in :mod:`serpent_arch.benchmark.memory`. On CUDA,
  ``torch.cuda.max_memory_allocated`` minus what was allocated before the forward. "act." is that
  forward peak; "total" adds the weights, buffers and the input.
* Latency: median wall time of ``--repeats`` forwards after one warm-up (CUDA: CUDA events).

Rows whose forward would be too expensive here (``--max-gflops``, or a memory forecast above what
the machine has free) are not run: FLOPs are still counted exactly (the count runs on the meta
device), peak memory is extrapolated linearly in pixels and latency in FLOPs from the largest
measured size of the same network, and the row is marked ``extrapolated``.
"""

from __future__ import annotations

import argparse
import csv
import gc
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

import serpent_arch  # noqa: F401  (must precede basicsr: applies the compat fixes basicsr needs)
from serpent_arch.benchmark.flops import count_flops
from serpent_arch.benchmark.memory import cpu_forward_peak, cpu_memory_method, cuda_peak
from serpent_arch.ops import resolve_backend

MIB = 2**20
SWINIR_EXPECTED_PARAMS_M = 11.5


def build_serpent(variant: str) -> Callable[[], nn.Module]:
    """Builder for a Serpent variant restoring at the input size."""

    def build() -> nn.Module:
        from serpent_arch.archs import Serpent

        return Serpent(variant=variant, upscale=1)

    return build


def build_swinir() -> nn.Module:
    """BasicSR's SwinIR in its ~11.5M-parameter restoration configuration (upscale 1, window 8).

    ``img_size=64`` is the training patch; at other sizes SwinIR recomputes its shift masks, so
    it only affects bookkeeping, not the FLOPs of a forward.
    """
    from basicsr.archs.swinir_arch import SwinIR

    return SwinIR(
        upscale=1,
        img_size=64,
        window_size=8,
        img_range=1.0,
        depths=[6] * 6,
        embed_dim=180,
        num_heads=[6] * 6,
        mlp_ratio=2,
        upsampler="",
        resi_connection="1conv",
    )


def build_rrdbnet() -> nn.Module:
    """ESRGAN's generator from BasicSR at scale 1: it pixel-unshuffles by 4, runs 23 RRDBs, upsamples 4x."""
    from basicsr.archs.rrdbnet_arch import RRDBNet

    return RRDBNet(num_in_ch=3, num_out_ch=3, scale=1, num_feat=64, num_block=23)


NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "serpent-tiny": build_serpent("tiny"),
    "serpent-small": build_serpent("small"),
    "serpent-base": build_serpent("base"),
    "serpent-large": build_serpent("large"),
    "swinir": build_swinir,
    "rrdbnet": build_rrdbnet,
}
DEFAULT_SIZES = (128, 256, 512, 1024)
QUICK_NETWORKS = ("serpent-tiny", "rrdbnet")
QUICK_SIZES = (32, 64)
# Pair compared in the summary (Serpent first), as in the paper's claims.
DEFAULT_PAIR = ("serpent-base", "swinir")
QUICK_PAIR = ("serpent-tiny", "rrdbnet")


@dataclass
class Row:
    """One (network, size) result. Memory in MiB, latency in seconds; NaN where not available."""

    network: str
    size: int
    params_m: float
    gflops: float
    scan_gflops: float
    elementwise_gflops: float
    peak_act_mib: float = math.nan
    peak_total_mib: float = math.nan
    latency_s: float = math.nan
    runs: int = 0
    status: str = "measured"
    note: str = ""
    load_avg: float = math.nan  # 1-minute load average after the row: other processes skew CPU latency
    latencies_s: list[float] = field(default_factory=list)

    @property
    def pixels(self) -> int:
        return self.size * self.size


def _autocast(device: torch.device, amp: str | None):
    if amp is None:
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype={"bf16": torch.bfloat16, "fp16": torch.float16}[amp])


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _forward(model: nn.Module, x: torch.Tensor, device: torch.device, amp: str | None) -> None:
    with torch.no_grad(), _autocast(device, amp):
        model(x)


def _timed_forward(model: nn.Module, x: torch.Tensor, device: torch.device, amp: str | None) -> float:
    """Seconds for one forward; CUDA events on GPU (kernel time, no host-side noise), perf_counter on CPU."""
    with torch.no_grad(), _autocast(device, amp):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            _sync(device)
            start.record()
            model(x)
            end.record()
            _sync(device)
            return start.elapsed_time(end) / 1000.0
        t0 = time.perf_counter()
        model(x)
        return time.perf_counter() - t0


def measure(
    model: nn.Module,
    x: torch.Tensor,
    device: torch.device,
    amp: str | None,
    repeats: int,
    row_budget_s: float,
) -> tuple[int, list[float], str]:
    """Peak forward bytes, the timed latencies and a note.

    The warm-up forward is also the memory measurement (on CPU the profiler or tracker slows it
    down, which does not matter since it is not timed). The number of timed runs is cut, down to one, when
    ``repeats`` forwards would exceed ``row_budget_s`` judging by the warm-up.
    """
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        warmup = []
        peak = cuda_peak(lambda: warmup.append(_timed_forward(model, x, device, amp)), device)
        warmup_s = warmup[0]
    else:
        t0 = time.perf_counter()
        peak = cpu_forward_peak(lambda: _forward(model, x, device, amp))
        warmup_s = time.perf_counter() - t0
    runs = max(1, min(repeats, int(row_budget_s // max(warmup_s, 1e-9))))
    note = f"{runs} timed run(s) instead of {repeats}: warm-up took {warmup_s:.0f} s" if runs < repeats else ""
    latencies = [_timed_forward(model, x, device, amp) for _ in range(runs)]
    return peak, latencies, note


def load_average() -> float:
    """1-minute system load average (NaN where the OS has none)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return math.nan


def available_memory_bytes(device: torch.device) -> int | None:
    """Free memory that a forward may use: CUDA free memory, or MemAvailable on Linux; None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def benchmark_network(name: str, sizes: Sequence[int], args: argparse.Namespace, device: torch.device) -> list[Row]:
    """All sizes of one network, smallest first (so larger ones can be forecast from them)."""
    model = NETWORKS[name]().eval()
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    if name == "swinir" and abs(params_m - SWINIR_EXPECTED_PARAMS_M) > 0.5:
        print(f"warning: SwinIR has {params_m:.2f}M params, expected ~{SWINIR_EXPECTED_PARAMS_M}M", file=sys.stderr)
    weight_bytes = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
    model.to(device)
    rows: list[Row] = []
    measured: Row | None = None  # the largest measured size so far
    for size in sorted(sizes):
        flops = count_flops(model, size)
        row = Row(name, size, params_m, flops.total / 1e9, flops.scan / 1e9, flops.elementwise_estimate / 1e9)
        input_bytes = 3 * size * size * 4
        reason = ""
        if row.gflops > args.max_gflops:
            reason = f"{row.gflops:.0f} GFLOPs > --max-gflops {args.max_gflops:g}"
        elif measured is not None:
            forecast = measured.peak_total_mib * MIB * row.pixels / measured.pixels
            free = available_memory_bytes(device)
            if free is not None and forecast > 0.8 * free:
                reason = f"forecast peak {forecast / MIB:.0f} MiB > 80% of free memory {free / MIB:.0f} MiB"
        if reason:
            row.status = "extrapolated"
            if measured is not None:
                row.peak_act_mib = measured.peak_act_mib * row.pixels / measured.pixels
                row.peak_total_mib = row.peak_act_mib + (weight_bytes + input_bytes) / MIB
                row.latency_s = measured.latency_s * row.gflops / measured.gflops
                row.note = (
                    f"not run ({reason}); memory x pixels and latency x GFLOPs from {measured.size}x{measured.size}"
                )
            else:
                row.note = f"not run ({reason}); nothing smaller measured to extrapolate from"
        else:
            x = torch.rand(1, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
            peak, latencies, row.note = measure(model, x, device, args.amp, args.repeats, args.row_budget)
            del x
            row.peak_act_mib = peak / MIB
            row.peak_total_mib = (peak + weight_bytes + input_bytes) / MIB
            row.latencies_s = latencies
            row.latency_s = statistics.median(latencies)
            row.runs = len(latencies)
            row.load_avg = load_average()
            measured = row
        print(format_row(row), flush=True)
        rows.append(row)
    del model
    gc.collect()
    return rows


# ----------------------------------------------------------------------------------------- output


def _fmt(value: float, digits: int = 1) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.{digits}f}"


def _fmt_ratio(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}x" if value < 100 else f"{value:.0f}x"


TABLE_HEADER = (
    "| network | params (M) | size | GFLOPs | scan GFLOPs | elementwise GFLOPs (est., not in total) "
    "| peak act. (MiB) | peak total (MiB) | latency (s) | runs | load | status |"
)

TABLE_SEPARATOR = "|" + "---|" * TABLE_HEADER.count(" | ") + "---|"


def format_row(row: Row) -> str:
    """One markdown table line; extrapolated values carry a leading ``~``."""
    approx = "~" if row.status == "extrapolated" else ""
    mem_act = approx + _fmt(row.peak_act_mib)
    mem_total = approx + _fmt(row.peak_total_mib)
    latency = approx + _fmt(row.latency_s, 3)
    return (
        f"| {row.network} | {row.params_m:.2f} | {row.size}x{row.size} | {_fmt(row.gflops)} | "
        f"{_fmt(row.scan_gflops, 2)} | {_fmt(row.elementwise_gflops, 2)} | {mem_act} | {mem_total} | "
        f"{latency} | {row.runs or '-'} | {_fmt(row.load_avg)} | {row.status} |"
    )


def _ratio(a: float, b: float) -> float:
    return b / a if a and not (math.isnan(a) or math.isnan(b)) else math.nan


def summary_lines(rows: list[Row], pair: tuple[str, str], sizes: Sequence[int]) -> list[str]:
    """Baseline / Serpent ratios per size and each network's growth between the two largest sizes."""
    by_key = {(r.network, r.size): r for r in rows}
    ours, theirs = pair
    lines = [
        f"### {theirs} / {ours} (how many times more the baseline needs; * = involves an extrapolated row)",
        "",
        "| size | FLOPs ratio | peak act. memory ratio | peak total memory ratio | latency ratio |",
        "|---|---|---|---|---|",
    ]
    for size in sorted(sizes):
        a, b = by_key.get((ours, size)), by_key.get((theirs, size))
        if a is None or b is None:
            continue
        lines.append(f"| {size}x{size} | {_ratio_cells(a, b)} |")
    if len(sizes) >= 2:
        lo, hi = sorted(sizes)[-2:]
        lines += [
            "",
            f"### Growth from {lo}x{lo} to {hi}x{hi} ({(hi / lo) ** 2:.1f}x the pixels)",
            "",
            "| network | FLOPs | peak act. memory | peak total memory | latency |",
            "|---|---|---|---|---|",
        ]
        for name in dict.fromkeys(r.network for r in rows):
            a, b = by_key.get((name, lo)), by_key.get((name, hi))
            if a is None or b is None:
                continue
            lines.append(f"| {name} | {_ratio_cells(a, b)} |")
    return lines


def _ratio_cells(a, b) -> str:
    """FLOPs, peak act. memory, peak total memory and latency of ``b`` over ``a`` as table cells;
    ``*`` marks ratios that involve an extrapolated row (FLOPs are always counted exactly)."""
    star = "*" if "extrapolated" in (a.status, b.status) else ""
    return (
        f"{_fmt_ratio(_ratio(a.gflops, b.gflops))} | "
        f"{_fmt_ratio(_ratio(a.peak_act_mib, b.peak_act_mib))}{star} | "
        f"{_fmt_ratio(_ratio(a.peak_total_mib, b.peak_total_mib))}{star} | "
        f"{_fmt_ratio(_ratio(a.latency_s, b.latency_s))}{star}"
    )


METHOD_NOTES = """\
How it is measured:
- GFLOPs: torch.utils.flop_counter.FlopCounterMode on one forward (run on the meta device, so exact
  for any size at no cost). The counter covers matmuls and convolutions (mm, addmm, bmm, baddbmm,
  grouped/depthwise convolutions, fused attention) and counts a multiply-accumulate as 2 FLOPs;
  the numbers are the counter's, unscaled. Serpent's selective scan is invisible to the counter and
  is added by formula per scan call: batch*dim*L*(8*N + 1 [delta_bias] + 3 [softplus] + 2 [D*u]
  + 5 [silu gate, when given]), i.e. per state element exp(dt*A), dt*B*u, the state update and C.h
  (see serpent_arch/benchmark/flops.py); "scan GFLOPs" is that part. Elementwise ops (additions,
  activations, LayerNorm, softmax) are not counted; "elementwise GFLOPs" is a rough estimate of
  them (1 FLOP per output element of pointwise ops, 5 for norms/softmax) shown only to check that
  leaving them out does not change the comparison.
- Peak memory: CPU (torch has no CPU max_memory_allocated): the peak, above the level at the
  start, of the bytes held through torch's CPU allocator during one torch.no_grad() forward, read
  from torch.profiler's allocation events (profile_memory=True). It includes every tensor and the
  temporaries allocated inside ops (e.g. convolution buffers), excludes the weights and the input
  (allocated before), and does not see memory that libraries allocate on their own (oneDNN/MKL
  scratch space) or malloc's overhead, so the process's peak RSS grows by more. Where the profiler
  API is missing, the fallback tracks live tensor storages op by op (TorchDispatchMode), which also
  misses temporaries inside ops; the header says which was used. CUDA: torch.cuda.max_memory_allocated()
  minus the allocation before the forward. "act." is that forward peak; "total" adds the weights,
  buffers and the input.
- Latency: median of the timed forwards after one warm-up forward (the memory pass), batch 1,
  torch.no_grad(); wall clock on CPU, CUDA events on GPU.
- extrapolated rows were not run: FLOPs are still counted exactly; memory is scaled by pixels and
  latency by FLOPs from the largest measured size of the same network (values marked ~)."""


SLOW_BACKEND_NOTE = " (SLOW pure-torch fallback: the C kernel is unavailable, Serpent's CPU latency is pessimistic)"


def environment_lines(device: torch.device, amp: str | None, argv: Sequence[str]) -> list[str]:
    """Header: what ran where, including the selective scan backend (it decides Serpent's latency)."""
    backend = resolve_backend("auto", torch.empty(0, device=device))
    slow = device.type == "cpu" and backend != "cpu_kernel"
    if device.type == "cuda":
        memory = "torch.cuda.max_memory_allocated"
    elif cpu_memory_method() == "allocator":
        memory = "torch's CPU allocator totals (torch.profiler allocation events)"
    else:
        memory = "live tensor storages (TorchDispatchMode tracker; the profiler's allocation events are unavailable)"
    if device.type == "cuda":
        where = f"cuda ({torch.cuda.get_device_name(device)})"
    else:
        where = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    return [
        f"- command: `{' '.join(['python -m serpent_arch.benchmark network', *argv])}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- device: {where}; torch {torch.__version__}; amp: {amp or 'off (float32)'}",
        f"- selective scan backend: {backend}" + (SLOW_BACKEND_NOTE if slow else ""),
        "- task: full-size restoration, input and output 3xHxW, batch 1, inference (torch.no_grad())",
        f"- peak memory measured by: {memory}",
        f"- 1-minute load average at the start: {load_average():.2f} on {os.cpu_count()} logical CPUs"
        " (the 'load' column is the same after each row; load above the thread count means other"
        " processes competed for the CPU and latencies are inflated)",
    ]


def write_outputs(
    rows: list[Row], header: list[str], summary: list[str], out_dir: Path, stem: str, elapsed_s: float
) -> dict[str, Path]:
    """Write ``<stem>.md``, ``<stem>.csv`` and ``<stem>.png`` to ``out_dir``; returns their paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{stem}.{ext}" for ext in ("md", "csv", "png")}

    table = [TABLE_HEADER, TABLE_SEPARATOR] + [format_row(r) for r in rows]
    notes = [f"- {r.network} {r.size}x{r.size}: {r.note}" for r in rows if r.note]
    md = ["# Network efficiency benchmark", "", *header, f"- wall time of the whole run: {elapsed_s:.0f} s", ""]
    md += [*table, "", *summary, ""]
    if notes:
        md += ["Notes:", *notes, ""]
    md += [METHOD_NOTES, "", f"![GFLOPs and peak memory against pixels]({paths['png'].name})", ""]
    paths["md"].write_text("\n".join(md), encoding="utf-8")

    with paths["csv"].open("w", newline="", encoding="utf-8") as f:
        fieldnames = [k for k in Row.__dataclass_fields__ if k != "latencies_s"] + ["pixels", "latencies_s"]
        writer = csv.DictWriter(f, fieldnames=fieldnames)
        writer.writeheader()
        for r in rows:
            record = asdict(r)
            record["pixels"] = r.pixels
            record["latencies_s"] = " ".join(f"{t:.4f}" for t in r.latencies_s)
            writer.writerow(record)

    plot(rows, paths["png"])
    return paths


def plot(rows: list[Row], path: Path) -> None:
    """Log-log GFLOPs and peak total memory against pixels, one line per network; hollow = extrapolated."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must be set before pyplot is imported
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    panels = (
        ("gflops", "GFLOPs per forward"),
        ("peak_total_mib", "peak memory, MiB (weights + input + activations)"),
    )
    for ax, (attr, label) in zip(axes, panels):
        for name in dict.fromkeys(r.network for r in rows):
            pts = [(r.pixels, getattr(r, attr), r.status) for r in rows if r.network == name]
            pts = [p for p in pts if not math.isnan(p[1])]
            if not pts:
                continue
            (line,) = ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
            hollow = [p for p in pts if p[2] == "extrapolated"]
            if hollow:
                ax.plot([p[0] for p in hollow], [p[1] for p in hollow], "o", mfc="white", color=line.get_color())
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("pixels (H x W)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("Full-size restoration, batch 1 (hollow markers: extrapolated, not run)")
    fig.tight_layout(rect=(0, 0, 1, 0.95))  # leave room for the suptitle
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m serpent_arch.benchmark network",
        description="Params, GFLOPs, peak memory and latency of Serpent and baselines for full-size restoration.",
    )
    parser.add_argument("--networks", nargs="+", choices=list(NETWORKS), help="default: all")
    parser.add_argument(
        "--sizes", nargs="+", type=int, help=f"image sides (default {' '.join(map(str, DEFAULT_SIZES))})"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed forwards per row after one warm-up (median)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:i]")
    parser.add_argument("--amp", choices=["bf16", "fp16"], help="autocast dtype (default: float32)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--max-gflops",
        type=float,
        default=10000.0,
        help="do not run rows above this many GFLOPs; extrapolate their memory and latency (default 10000)",
    )
    parser.add_argument(
        "--row-budget",
        type=float,
        default=180.0,
        help="seconds of timed forwards per row; fewer repeats (at least 1) when the warm-up says they won't fit",
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        metavar=("SERPENT", "BASELINE"),
        help=f"networks to compare (default {' '.join(DEFAULT_PAIR)})",
    )
    parser.add_argument("--quick", action="store_true", help=f"smoke test: {' '.join(QUICK_NETWORKS)} at 32 and 64")
    parser.add_argument("--out", type=Path, default=Path("experiments/benchmarks"), help="output directory")
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Path]:
    """Run the benchmark; returns the paths of the written md / csv / png files."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda requested but CUDA is not available")
    if args.repeats < 1:
        raise SystemExit("--repeats must be >= 1")
    previous_threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return _run(args, argv, device)
    finally:
        torch.set_num_threads(previous_threads)  # callers in the same process (tests) keep their setting


def _run(args: argparse.Namespace, argv: list[str], device: torch.device) -> dict[str, Path]:
    networks = args.networks or (list(QUICK_NETWORKS) if args.quick else list(NETWORKS))
    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    pair = tuple(args.pair) if args.pair else (QUICK_PAIR if args.quick else DEFAULT_PAIR)
    threads = torch.get_num_threads()
    if device.type == "cpu" and threads > 1 and load_average() > (os.cpu_count() or 1) - threads + 0.5:
        # Measured: on a 2-core machine with two other busy processes, a 2-thread RRDBNet forward
        # took 60x longer than a 1-thread one, because each parallel region waits for its slowest
        # (descheduled) thread. One thread per process degrades gracefully instead.
        print(
            f"warning: the CPU is busy (load {load_average():.1f} on {os.cpu_count()} CPUs); {threads}-thread "
            "latencies will be inflated by thread stalls, consider --threads 1",
            file=sys.stderr,
        )

    header = environment_lines(device, args.amp, argv)
    print("\n".join(header), flush=True)
    print(TABLE_HEADER + "\n" + TABLE_SEPARATOR, flush=True)
    start = time.perf_counter()
    rows: list[Row] = []
    for name in networks:
        rows += benchmark_network(name, sizes, args, device)
    elapsed = time.perf_counter() - start

    summary = summary_lines(rows, pair, sizes)
    print("\n" + "\n".join(summary), flush=True)
    stem = f"network_{device.type}"
    if device.type == "cpu":
        stem += f"_{threads}threads"  # latencies depend on it; runs with different counts don't overwrite
    stem += (f"_{args.amp}" if args.amp else "") + ("_quick" if args.quick else "")
    paths = write_outputs(rows, header, summary, args.out, stem, elapsed)
    print(f"\nrun took {elapsed:.0f} s; wrote {', '.join(str(p) for p in paths.values())}", flush=True)
    return paths


if __name__ == "__main__":
    main()
