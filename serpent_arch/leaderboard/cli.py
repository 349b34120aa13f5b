"""The ``basicsr leaderboard`` command line: its flags, and :func:`main` (read the runs, build the
table, print and write it; exit status 0 written, 2 nothing to tabulate or bad flags)."""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from serpent_arch.leaderboard.cells import Cell, Column, Table
from serpent_arch.leaderboard.gflops import DEFAULT_FLOPS_SIZE
from serpent_arch.leaderboard.render import render_markdown, write_csv
from serpent_arch.leaderboard.runs import LeaderboardError, load_runs
from serpent_arch.leaderboard.table import build_table, sort_key_column


def parse_size(text: str) -> tuple[int, int]:
    """``256x256``, ``256×256`` or ``256`` -> (H, W)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×X]\s*(\d+))?\s*", text)
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 256x256, got {text!r}")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="basicsr leaderboard",
        description="Collect the metrics.json of every `basicsr test` run under RESULTS into one table "
        "(markdown on stdout and in RESULTS/leaderboard.md, full values in RESULTS/leaderboard.csv).",
    )
    parser.add_argument(
        "results", nargs="?", default="results", type=Path, metavar="RESULTS", help="results folder (default results)"
    )
    parser.add_argument("--out-md", type=Path, metavar="PATH", help="markdown file (default RESULTS/leaderboard.md)")
    parser.add_argument("--out-csv", type=Path, metavar="PATH", help="CSV file (default RESULTS/leaderboard.csv)")
    parser.add_argument(
        "--sort-by",
        metavar="COLUMN",
        help="order the runs of each scale by a column, best first, e.g. 'Set5 PSNR', 'Params' or 'GFLOPs' "
        "(default: folder name order)",
    )
    parser.add_argument("--reverse", action="store_true", help="with --sort-by: worst first")
    parser.add_argument(
        "--flops-size",
        type=parse_size,
        default=DEFAULT_FLOPS_SIZE,
        metavar="HxW",
        help="output size at which GFLOPs are counted; the input is HxW divided by the scale (default 256x256)",
    )
    parser.add_argument("--no-flops", action="store_true", help="leave the GFLOPs column out (no network is built)")
    parser.add_argument(
        "--ssim-decimals", type=int, default=4, metavar="N", help="decimals of SSIM in the markdown (default 4)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="hide the bicubic / degraded-input rows")
    parser.add_argument(
        "--include-archived", action="store_true", help="also show runs BasicSR renamed NAME_archived_TIME"
    )
    return parser


def _warn(message: str) -> None:
    print(f"basicsr leaderboard: warning: {message}", file=sys.stderr)


def _tabulate(args: argparse.Namespace) -> Table:
    """The table the flags ask for; warnings of the reading on stderr. Raises LeaderboardError."""
    runs, messages = load_runs(args.results, include_archived=args.include_archived)
    for message in messages:
        _warn(message)
    return build_table(
        runs,
        flops_size=None if args.no_flops else args.flops_size,
        ssim_decimals=args.ssim_decimals,
        sort_by=args.sort_by,
        reverse=args.reverse,
        baselines=not args.no_baseline,
    )


def _warn_mixed_sort_column(table: Table, sort_by: str, with_flops: bool) -> None:
    """A warning when the --sort-by column holds runs measured by other conventions (footnoted cells)."""
    column = sort_key_column(sort_by, table.columns, with_flops)
    if isinstance(column, Column) and any(r.cells.get(column, Cell()).notes for r in table.rows if r.kind == "run"):
        _warn(
            f"{column.header} mixes measuring conventions (see the footnotes); "
            "the order compares numbers that are not comparable"
        )


def _write(table: Table, args: argparse.Namespace) -> None:
    """Print the markdown and write it and the CSV (default RESULTS/leaderboard.{md,csv})."""
    markdown = render_markdown(table, args.ssim_decimals)
    md_path = args.out_md or args.results / "leaderboard.md"
    csv_path = args.out_csv or args.results / "leaderboard.csv"
    for path in (md_path, csv_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown, encoding="utf-8")
    write_csv(table, csv_path)
    print(markdown, end="")
    print(f"wrote {md_path} and {csv_path}", file=sys.stderr)


def main(argv: list[str]) -> int:
    """Run the command; returns the exit status (0 written, 2 nothing to tabulate or bad flags)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # -h and usage errors: argparse has printed the message
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.ssim_decimals < 0:
        print("basicsr leaderboard: error: --ssim-decimals must be 0 or more", file=sys.stderr)
        return 2
    try:
        table = _tabulate(args)
    except LeaderboardError as err:
        print(f"basicsr leaderboard: error: {err}", file=sys.stderr)
        return 2
    if args.sort_by:
        _warn_mixed_sort_column(table, args.sort_by, not args.no_flops)
    _write(table, args)
    return 0
