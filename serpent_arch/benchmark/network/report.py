"""The benchmark's output: table rows, the ratio summary, the method notes, the environment header and
the md / csv / png files."""

from __future__ import annotations

import csv
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import torch

from serpent_arch.benchmark.network.measurement import Row, load_average
from serpent_arch.measure import machine
from serpent_arch.measure.memory import cpu_memory_method
from serpent_arch.ops import resolve_backend


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
  (see serpent_arch/measure/flops.py); "scan GFLOPs" is that part. Elementwise ops (additions,
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
        where = f"cpu: {machine.describe()}"
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
