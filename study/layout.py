"""``python -m study layout``: each network's training step in NCHW and in channels-last.

The equal-budget experiment runs every network as its code ships: BasicSR's networks in PyTorch's
default NCHW memory format, Serpent as written. On CPU, oneDNN's convolutions are often faster on
channels-last tensors, so a network made mostly of convolutions may train faster in that layout,
and the budget's iteration counts (and so its comparison at equal time) depend on the layout. This
command measures by how much: every network once as shipped and once converted with
``.to(memory_format=torch.channels_last)`` and fed a channels-last batch, all interleaved in one run
(``throughput.seconds_per_iteration``), and reports per network the median over rounds of the
channels-last time / the NCHW time of the same round. A step's results do not depend on the layout
(the same arithmetic, up to rounding), only its time.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from serpent_arch.measure import machine
from study.contenders import NETWORKS, TASKS
from study.serpent_candidates import refuse_record_only

SUFFIX = " (channels_last)"


def measure(task: str, networks: list[str], repeats: int, block_seconds: float) -> list[dict]:
    """Per network: NCHW and channels-last s / iteration (medians) and the median per-round ratio."""
    import serpent_arch  # noqa: F401  (registers Serpent before BasicSR builds networks)
    from study.throughput import seconds_per_iteration

    t = TASKS[task]
    listed = {}
    for name in networks:
        listed[name] = NETWORKS[name][task]
        listed[name + SUFFIX] = NETWORKS[name][task]
    measured = seconds_per_iteration(
        listed,
        batch=t["batch"],
        gt_size=t["gt_size"],
        scale=t["scale"],
        repeats=repeats,
        block_seconds=block_seconds,
        channels_last=frozenset(name + SUFFIX for name in networks),
    )
    reference = measured[networks[0]]["blocks"]

    def per_round(blocks: list[float], base: list[float]) -> float:
        return statistics.median(b / a for a, b in zip(base, blocks))

    rows = []
    for name in networks:
        nchw, last = measured[name], measured[name + SUFFIX]
        rows.append(
            dict(
                network=name,
                nchw=nchw["s_per_iter"],
                channels_last=last["s_per_iter"],
                ratio=per_round(last["blocks"], nchw["blocks"]),
                nchw_to_first=per_round(nchw["blocks"], reference),
                last_to_first=per_round(last["blocks"], reference),
            )
        )
    return rows


def render(task: str, rows: list[dict], repeats: int, where: str, stamp: str, argv: list[str]) -> str:
    t = TASKS[task]
    lines = [
        f"# Training step by memory format: {t['title']}",
        "",
        f"Forward, L1, backward and AdamW step of one training batch ({t['batch']} patches of "
        f"{t['gt_size']}x{t['gt_size']} GT pixels), each network as it ships (NCHW) and converted to "
        f"channels-last with a channels-last input, interleaved in {repeats} rounds; ratio: median over rounds of "
        "channels-last / NCHW time in the same round (below 1: channels-last is faster); the last two columns: "
        f"median over rounds of the time / {rows[0]['network']}'s NCHW time in the same round, which compares "
        "networks measured on one machine.",
        "",
        f"| network | NCHW s / iter | channels-last s / iter | ratio | NCHW / {rows[0]['network']} | "
        f"channels-last / {rows[0]['network']} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['network']} | {r['nchw']:.4f} | {r['channels_last']:.4f} | {r['ratio']:.3f} | "
        f"{r['nchw_to_first']:.3f} | {r['last_to_first']:.3f} |"
        for r in rows
    ]
    lines += [
        "",
        f"- Measured {stamp} on {where}.",
        f"- `python -m study layout {' '.join(argv)}`",
    ]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m study layout", description=__doc__.split("\n")[0])
    p.add_argument("--task", default="sr", help=f"one of {', '.join(TASKS)} (the batch and patch size)")
    p.add_argument("--networks", default="msrresnet,serpent-cffn-nc-amp-lmn15-e3-f3-lr", help="comma-separated")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--repeats", type=int, default=9, help="interleaved rounds")
    p.add_argument("--block-seconds", type=float, default=2.0, help="length of one timed block")
    p.add_argument("--out", type=Path, default=Path("study/records/budget"), help="folder of the table")
    return p


def main(argv: list[str] | None = None) -> int:
    import torch

    parser = build_parser()
    argv = list(argv or [])
    args = parser.parse_args(argv)
    if args.task not in TASKS:
        parser.error(f"--task: unknown {args.task!r}; choose from {', '.join(TASKS)}")
    networks = [n for n in args.networks.split(",") if n]
    unknown = [n for n in networks if n not in NETWORKS]
    if unknown or not networks:
        parser.error(f"--networks: unknown {', '.join(unknown) or '(none given)'}; choose from {', '.join(NETWORKS)}")
    absent = [n for n in networks if args.task not in NETWORKS[n]]
    if absent:
        parser.error(f"--networks: {', '.join(absent)} take no part in task {args.task!r}")
    if args.repeats < 1 or args.block_seconds <= 0:
        parser.error("--repeats must be >= 1 and --block-seconds > 0")
    for name in networks:
        refuse_record_only(name, "time")
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = measure(args.task, networks, args.repeats, args.block_seconds)
    text = render(args.task, rows, args.repeats, machine.describe(), time.strftime("%Y-%m-%d %H:%M:%S"), argv)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"layout_{args.task}.md"
    path.write_text(text)
    print(text + f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
