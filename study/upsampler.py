"""``python -m study upsampler``: the fused ``nearest+conv`` upsampler against the layers as written.

``upsampler_fused`` (the default) runs every nearest x2 + conv step of the ``nearest+conv`` upsampler as one
stride-2 transposed convolution (``serpent_arch.archs.upsamplers.nearest_x2_conv``): the same function with
4 instead of 9 multiply-adds per output pixel and channel. This command measures what that saves on this
machine, in two tables, every row interleaved with its reference in the same rounds (the median over rounds
of the per-round ratio, so a load that changes between rounds cancels):

* one step, nearest x2 + 3x3 conv, forward and backward (input and weight gradients), at the equal-budget
  SR shapes (batch 8, 48 channels, 16 -> 32 and 32 -> 64 pixels);
* the whole training step (forward, L1, backward, AdamW) of a network from ``study/options/`` run with
  ``upsampler_fused`` true and false.

Every report names the CPU, its vector extensions and any instruction-set limits in effect
(``machine.AVX2_ENV`` emulates an AVX2-only machine for torch's convolutions too).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

DEFAULT_NETWORK = "serpent-cffn-nc-amp-lmn15-e3-f2-lr"


def _median_ratio(new: list[float], reference: list[float]) -> float:
    return statistics.median(a / b for a, b in zip(new, reference))


def time_step(batch: int, channels: int, size: int, repeats: int, block_seconds: float) -> dict:
    """Forward + backward of nearest x2 + conv on (batch, channels, size, size): as written and fused."""
    from serpent_arch.archs.upsamplers import nearest_x2_conv

    torch.manual_seed(0)
    conv = nn.Conv2d(channels, channels, 3, 1, 1)
    x = torch.randn(batch, channels, size, size)
    grad = torch.randn(batch, channels, 2 * size, 2 * size)
    ways = {
        "as written": lambda t: conv(F.interpolate(t, scale_factor=2, mode="nearest")),
        "fused": lambda t: nearest_x2_conv(t, conv),
    }

    def block(way, iters: int) -> float:
        start = time.perf_counter()
        for _ in range(iters):
            xi = x.detach().requires_grad_()
            ways[way](xi).backward(grad)
        return (time.perf_counter() - start) / iters

    iters = {}
    for way in ways:
        block(way, 1)  # warm-up
        iters[way] = max(1, round(block_seconds / max(block(way, 1), 1e-6)))
    times: dict[str, list[float]] = {way: [] for way in ways}
    for _ in range(repeats):
        for way in ways:
            times[way].append(block(way, iters[way]))
    return dict(
        shape=f"{batch}x{channels}x{size}x{size} -> {2 * size}x{2 * size}",
        written=statistics.median(times["as written"]),
        fused=statistics.median(times["fused"]),
        ratio=_median_ratio(times["fused"], times["as written"]),
    )


def time_network(network: str, task: str, repeats: int, block_seconds: float) -> dict:
    """Training step of ``network`` (``study/options/``) with the upsampler as written and fused."""
    import serpent_arch  # noqa: F401  (registers Serpent before BasicSR builds networks)
    from study.contenders import NETWORKS, TASKS
    from study.serpent_candidates import refuse_record_only
    from study.throughput import seconds_per_iteration

    refuse_record_only(network, "time")
    net_opt = NETWORKS[network][task]
    if net_opt.get("upsampler") != "nearest+conv":
        raise SystemExit(f"--network: {network} has no nearest+conv upsampler ({net_opt.get('upsampler')!r})")
    t = TASKS[task]
    listed = {"as written": {**net_opt, "upsampler_fused": False}, "fused": {**net_opt, "upsampler_fused": True}}
    measured = seconds_per_iteration(
        listed, batch=t["batch"], gt_size=t["gt_size"], scale=t["scale"], repeats=repeats, block_seconds=block_seconds
    )
    written, fused = measured["as written"], measured["fused"]
    ratio = _median_ratio(fused["blocks"], written["blocks"])
    return dict(written=written["s_per_iter"], fused=fused["s_per_iter"], ratio=ratio)


def render(steps: list[dict], net: dict, network: str, repeats: int, where: str, stamp: str, argv: list[str]) -> str:
    lines = [
        "# The nearest+conv upsampler: fused (one transposed convolution per x2 step) against as written",
        "",
        f"Measured {stamp} on {where}; {repeats} interleaved rounds; ratio: median over rounds of fused / as "
        "written in the same round (below 1: the fused step is faster).",
        "",
        "| nearest x2 + 3x3 conv, forward + backward | as written (ms) | fused (ms) | ratio |",
        "|---|---:|---:|---:|",
    ]
    lines += [f"| {s['shape']} | {s['written'] * 1e3:.2f} | {s['fused'] * 1e3:.2f} | {s['ratio']:.3f} |" for s in steps]
    lines += [
        "",
        f"| training step of {network} | as written (s) | fused (s) | ratio |",
        "|---|---:|---:|---:|",
        f"| forward, L1, backward, AdamW | {net['written']:.4f} | {net['fused']:.4f} | {net['ratio']:.3f} |",
        "",
        f"- `python -m study upsampler {' '.join(argv)}`",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from serpent_arch.measure import machine

    prog = "python -m study upsampler"
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n")[0])
    parser.add_argument("--network", default=DEFAULT_NETWORK, help="a budget network with a nearest+conv upsampler")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=9, help="interleaved rounds")
    parser.add_argument("--block-seconds", type=float, default=1.0, help="length of one timed block")
    parser.add_argument("--out", type=Path, default=Path("study/records"), help="folder of the report")
    parser.add_argument("--name", default="upsampler", help="report file name (without .md)")
    argv = list(argv or [])
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.block_seconds <= 0:
        parser.error("--repeats must be >= 1 and --block-seconds > 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    steps = [time_step(8, 48, size, args.repeats, args.block_seconds) for size in (16, 32)]
    net = time_network(args.network, "sr", args.repeats, 2 * args.block_seconds)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    text = render(steps, net, args.network, args.repeats, machine.describe(), stamp, argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{args.name}.md"
    path.write_text(text)
    print(text + f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
