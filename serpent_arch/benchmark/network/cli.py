"""``python -m serpent_arch.benchmark network``: flags, the thread and load checks, the run over the
networks and the files it writes."""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from serpent_arch.benchmark.network.contenders import (
    DEFAULT_PAIR,
    DEFAULT_SIZES,
    NETWORKS,
    QUICK_NETWORKS,
    QUICK_PAIR,
    QUICK_SIZES,
)
from serpent_arch.benchmark.network.measurement import Row, benchmark_network, load_average
from serpent_arch.benchmark.network.report import (
    TABLE_HEADER,
    TABLE_SEPARATOR,
    environment_lines,
    format_row,
    summary_lines,
    write_outputs,
)


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
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"), help="output directory")
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
        rows += benchmark_network(name, sizes, args, device, show=lambda row: print(format_row(row), flush=True))
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
