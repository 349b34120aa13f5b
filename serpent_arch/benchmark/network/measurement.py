"""Measuring one network: peak memory and latency of a forward per size, and the extrapolation of the
rows too expensive to run (memory linear in pixels, latency in FLOPs)."""

from __future__ import annotations

import argparse
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from serpent_arch.benchmark.network.contenders import NETWORKS, SWINIR_EXPECTED_PARAMS_M
from serpent_arch.measure.flops import count_flops
from serpent_arch.measure.memory import cpu_forward_peak, cuda_peak

MIB = 2**20


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


def benchmark_network(
    name: str, sizes: Sequence[int], args: argparse.Namespace, device: torch.device, show: Callable[[Row], None]
) -> list[Row]:
    """All sizes of one network, smallest first (so larger ones can be forecast from them); ``show`` is
    called with each row as soon as it is done."""
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
        show(row)
        rows.append(row)
    del model
    gc.collect()
    return rows
