"""``python -m study tables``: rebuild every committed table of ``study/records/budget/`` from the records.

Runs, in order, the budget commands (``python -m study budget ARGS``) whose tables are committed, each with
``--records-only``: every run, throughput measurement, report-set test and network size they need is in the
records, so nothing trains, tests or is timed, and a command that would stops, naming the missing run. Several
commands write the same table name (a network timed beside another, then the table of all): the last one
writes the committed table, so the order is part of the list. The same commands are listed in
study/README.md ("Commands"). Not rebuilt: the 2-minute tables (``budget_*_2min_*``), written by an earlier
version of the command from a throughput measurement since replaced, and the notes written by hand or by the
other commands (``contrast_*``, ``spectrum_*``, ``layout_sr.md``).

Then, where ``OUT/../colour/runs/`` exists, ``python -m study colour_report --records-only`` rebuilds the colour
report set's tables (``study/records/colour/colour_sr_10min.{md,csv}``, and those of f3-tc's variants in
``colour/sr_variants/``) from their run records.

    python -m study tables [--out study/records/budget] [--list]
"""

from __future__ import annotations

import argparse
from pathlib import Path

_E3 = "serpent-cffn-nc-amp-lmn15-e3"
_ALL_5MIN = (
    "serpent-tiny-lr,serpent-cffn-lr,serpent-cffn-nc-lr,serpent-cffn-nc-amp-lr,serpent-cffn-nc-amp-lmn15-lr,"
    f"{_E3}-lr,{_E3}-f3-lr,edsr-baseline,msrresnet,swinir-light"
)
_SEED_1 = (
    f"serpent-cffn-lr,serpent-cffn-nc-lr,serpent-cffn-nc-amp-lr,serpent-cffn-nc-amp-lmn15-lr,{_E3}-lr,{_E3}-f3-lr,"
    f"{_E3}-f2-lr,{_E3}-f2-tc-lr,{_E3}-f3-tc-lr,{_E3}-f3-w64-lr,edsr-baseline,msrresnet"
)
_SEED_2 = (
    f"serpent-cffn-nc-lr,serpent-cffn-nc-amp-lr,serpent-cffn-nc-amp-lmn15-lr,{_E3}-lr,{_E3}-f3-lr,"
    f"{_E3}-f2-lr,{_E3}-f2-tc-lr,{_E3}-f3-tc-lr,{_E3}-f3-w64-lr,msrresnet"
)
_SEEDS_3_4 = f"{_E3}-lr,{_E3}-f3-lr,{_E3}-f2-lr,{_E3}-f2-tc-lr,{_E3}-f3-tc-lr,msrresnet"
_TEN_MIN = (
    f"serpent-cffn-nc-lr,serpent-cffn-nc-amp-lmn15-lr,{_E3}-lr,{_E3}-f3-lr,{_E3}-f2-lr,{_E3}-f2-tc-lr,"
    f"{_E3}-f3-tc-lr,{_E3}-f4-tc-lr,{_E3}-f3-w64-lr,msrresnet"
)
_SR_5 = "--minutes 5 --threads 2 --tasks sr"
_SR_10 = "--minutes 10 --threads 2 --tasks sr"
_KEPT = "--lr-of-seed 0 --lr-of-budget 5min"

# The arguments of each budget command, in the order that writes the committed tables.
COMMANDS: list[str] = [
    f"{_SR_5} --networks serpent-tiny-lr,serpent-cffn-lr,serpent-cffn-nc-lr,serpent-cffn-nc-amp-lr,"
    "edsr-baseline,msrresnet,swinir-light",
    f"{_SR_5} --networks serpent-cffn-nc-amp-lr,serpent-cffn-nc-amp-lmn15-lr",
    f"{_SR_5} --networks serpent-cffn-nc-amp-lmn15-lr,{_E3}-lr",
    f"{_SR_5} --networks {_E3}-lr,{_E3}-f3-lr",
    f"{_SR_5} --lrs 1e-3 --networks {_E3}-lr,{_E3}-f4-lr,{_E3}-f3-w64-lr",
    f"{_SR_5} --lrs 1e-3 --repeats 9 --networks {_E3}-f3-lr,{_E3}-f2-lr",
    f"{_SR_5} --lrs 1e-3 --repeats 9 --networks {_E3}-f2-lr,{_E3}-f2-tc-lr",
    f"{_SR_5} --lrs 1e-3 --repeats 9 --networks {_E3}-f3-lr,{_E3}-f3-tc-lr,{_E3}-f4-tc-lr",
    f"{_SR_5} --networks {_ALL_5MIN}",
    "--minutes 5 --threads 2 --tasks deblur --networks serpent-tiny,ridnet,swinir-light,plain-unet",
    "--iterations 34 --threads 2 --tasks deblur --networks serpent-tiny,ridnet,swinir-light",
    "--iterations 100 --threads 2 --tasks deblur --networks serpent-tiny,swinir-light",
    "--iterations 2489 --threads 2 --tasks deblur --lr-of-seed 0 --lr-of-budget 5min"
    " --networks serpent-tiny,plain-unet",
    "--minutes 5 --threads 2 --tasks deblur --seed 1 --lr-of-seed 0 --networks serpent-tiny,plain-unet",
    "--minutes 5 --threads 2 --tasks deblur --seed 2 --lr-of-seed 0 --networks serpent-tiny,plain-unet",
    f"{_SR_5} --seed 1 --lr-of-seed 0 --networks {_SEED_1}",
    f"{_SR_5} --seed 2 --lr-of-seed 0 --networks {_SEED_2}",
    f"{_SR_5} --seed 3 --lr-of-seed 0 --networks {_SEEDS_3_4}",
    f"{_SR_5} --seed 4 --lr-of-seed 0 --networks {_SEEDS_3_4}",
    f"{_SR_10} --lrs 1e-3 --repeats 9 --networks {_E3}-f3-tc-lr,serpent-cffn-dc-amp-lmn15-e3-f3-lr",
    f"{_SR_10} --lrs 1e-3 --seed 3 --lr-of-seed 0 --networks serpent-cffn-dc-amp-lmn15-e3-f3-lr",
    f"{_SR_10} {_KEPT} --networks {_TEN_MIN}",
    f"{_SR_10} --seed 1 {_KEPT} --networks {_E3}-lr,{_E3}-f3-lr,{_E3}-f2-tc-lr,{_E3}-f3-tc-lr,{_E3}-f3-w64-lr,"
    "msrresnet",
    f"{_SR_10} --seed 2 {_KEPT} --networks {_E3}-lr,{_E3}-f3-lr,{_E3}-f2-tc-lr,{_E3}-f3-tc-lr,msrresnet",
    *[f"{_SR_10} --seed {seed} {_KEPT} --networks {_E3}-f3-tc-lr,msrresnet" for seed in (3, 4)],
    *[f"--iterations 1646 --threads 2 --tasks sr --seed {seed} {_KEPT} --networks msrresnet" for seed in range(5)],
    *[f"--iterations 3293 --threads 2 --tasks sr --seed {seed} {_KEPT} --networks msrresnet" for seed in range(5)],
    f"--iterations 1999 --threads 2 --tasks sr --seed 0 {_KEPT} --networks {_E3}-f3-lr",
    f"{_SR_5} --recipe gray-contrast {_KEPT} --networks serpent-cffn-nc-amp-lmn15-lr,msrresnet,serpent-cffn-nc-lr",
    f"{_SR_5} --recipe warmup --lrs 1e-3,2e-3 --networks {_E3}-lr",
    f"--iterations 500 --threads 2 --tasks sr --lrs 1e-3 --networks {_E3}-f3-lr,{_E3}-f3-ss-lr,{_E3}-f3-an-lr",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study tables", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, default=Path("study/records/budget"), help="the records' folder, where the tables go"
    )
    parser.add_argument("--list", action="store_true", help="print the commands, run nothing")
    args = parser.parse_args(argv)
    for command in COMMANDS:
        print(f"python -m study budget {command}", flush=True)
        if not args.list:
            from study import budget

            budget.main([*command.split(), "--records-only", "--out", str(args.out)])
    # the colour report set's tables (study/records/colour, beside the budget records), from its run records
    colour = args.out.parent / "colour"
    for folder in (colour, colour / "sr_variants"):  # the 10-minute runs; f3-tc's variants beside them
        if (folder / "runs").is_dir():
            print(f"python -m study colour_report --records-only --out {folder}", flush=True)
            if not args.list:
                from study import colour_report

                colour_report.main(["--records-only", "--out", str(folder)])
    if (colour / "deblur_runs").is_dir():
        print(f"python -m study colour_report --records-only --task deblur --out {colour}", flush=True)
        if not args.list:
            from study import colour_report

            colour_report.main(["--records-only", "--task", "deblur", "--out", str(colour)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
