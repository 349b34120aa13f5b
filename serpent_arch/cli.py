"""The `basicsr` command: BasicSR's train and test pipelines with the Serpent plugin loaded.

    basicsr train -opt options/serpent_sr.yml [--launcher none|pytorch|slurm] [--auto_resume]
                  [--debug] [--trial] [--force_yml KEY=VALUE ...] [--remove_yml KEY ...]
    basicsr test  -opt options/serpent_sr_test.yml [-e experiments/NAME] [--force_yml ...] [--remove_yml ...]
    basicsr infer -e experiments/NAME -i IMAGES -o OUT_DIR [flags]    (or -opt OPTIONS.yml --weights NET.pth)
    basicsr export -e experiments/NAME -o MODEL.onnx [flags]          (or -opt OPTIONS.yml --weights NET.pth)
    basicsr leaderboard [results/] [flags]
    basicsr presets [--family unet|sr]
    basicsr doctor

The current directory is the root: experiments/, results/ and tb_logger/ are created under it,
and relative data paths in option files start there. Any BasicSR option file works, for
Serpent or for BasicSR's own networks.

``train`` and ``test`` resolve the options once (``serpent_arch.run_options``: the file, ``-e``,
``--trial``, ``--force_yml``, ``--remove_yml``), check them, and give BasicSR's pipeline a copy of
the result to parse, so that BasicSR runs what was checked and every message names the user's file.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile

COMMANDS = {
    "train": "train a network with BasicSR's training pipeline",
    "test": "evaluate a trained network with BasicSR's test pipeline",
    "infer": "restore your own images (a file or a folder) with a trained network",
    "leaderboard": "collect the metrics of every test run under results/ into one table",
    "presets": "the named Serpent networks: parameters, GFLOPs, what each is for",
    "doctor": "versions, devices and selective-scan backends of this machine (for bug reports)",
    "export": "write a trained network as an ONNX model for ONNX Runtime (any image size)",
}
# Commands that are not BasicSR pipelines: module serpent_arch.<name> with main(argv) -> exit code.
OWN_COMMANDS = ("infer", "leaderboard", "presets", "doctor", "export")


def _basicsr_parser(command: str) -> argparse.ArgumentParser:
    """The flags of BasicSR's own ``parse_options``, and the command's own: ``--remove_yml``, ``--trial``
    (train), ``-e`` (test)."""
    parser = argparse.ArgumentParser(prog=f"basicsr {command}", description=COMMANDS[command])
    if command == "test":
        parser.add_argument("-opt", help="option YAML file: test sets, metrics (required unless -e is given)")
        parser.add_argument(
            "-e",
            "--experiment",
            metavar="experiments/NAME",
            help="test what this training wrote: its network, scale and newest weights (EMA when present); "
            "the test sets of -opt, or without -opt its own validation sets",
        )
    else:
        parser.add_argument("-opt", required=True, help="path to the option YAML file")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none", help="job launcher")
    parser.add_argument("--auto_resume", action="store_true", help="resume from the latest training state")
    parser.add_argument("--debug", action="store_true", help="debug mode (name prefixed with debug_)")
    if command == "train":
        parser.add_argument(
            "--trial",
            action="store_true",
            help="a run of a minute or two on a CPU: 40 iterations of small patches, name prefixed with trial_ "
            "(prints what it changes)",
        )
    parser.add_argument("--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument(
        "--force_yml", nargs="+", default=None, metavar="KEY=VALUE", help="override options, e.g. train:ema_decay=0.999"
    )
    parser.add_argument(
        "--remove_yml",
        nargs="+",
        default=None,
        metavar="KEY",
        help="remove options (after --force_yml), e.g. datasets:test_1:num_images",
    )
    return parser


def _pipeline_argv(args, opt_path: str) -> list[str]:
    """The command line of BasicSR's ``parse_options`` for the resolved copy ``opt_path`` (the overrides
    are applied in it already)."""
    argv = ["-opt", opt_path, "--launcher", args.launcher, "--local_rank", str(args.local_rank)]
    return argv + ["--auto_resume"] * args.auto_resume + ["--debug"] * args.debug


def _usage() -> str:
    lines = ["usage: basicsr {" + ",".join(COMMANDS) + "} [flags]", "", "commands:"]
    width = max(map(len, COMMANDS)) + 2
    lines += [f"  {name:<{width}}{text}" for name, text in COMMANDS.items()]
    lines.append("\nRun `basicsr COMMAND -h` for the flags of a command.")
    return "\n".join(lines)


def _prepare_builtin_data(opt: dict) -> None:
    """Build the built-in sample set before anything checks or reads the datasets that use it."""
    from serpent_arch.data.sample import prepare_sample_set, sample_root_for

    for ds in (opt.get("datasets") or {}).values():
        if isinstance(ds, dict) and ds.get("auto_prepare") == "sample" and ds.get("dataroot_gt"):
            if not os.path.exists(ds["dataroot_gt"]):
                prepare_sample_set(sample_root_for(ds["dataroot_gt"]), scale=int(opt.get("scale", 4)))


def _skip_missing_test_sets(opt: dict) -> None:
    """A benchmark option file lists every set of its task; evaluate those that are present.

    Leaves the ``test_*`` sets whose data is absent out of ``opt``, with a warning naming them. When
    none is present, nothing is left out: the option check then reports them all.
    """
    from serpent_arch.options import missing_test_sets

    missing = missing_test_sets(opt)
    tests = [phase for phase in opt.get("datasets") or {} if str(phase).startswith("test")]
    if not missing or len(missing) == len(tests):
        return
    print(
        "basicsr test: warning: skipping test sets whose data is not here (datasets/README.md says how to "
        "prepare them):\n  " + "\n  ".join(missing),
        file=sys.stderr,
    )
    skipped = {entry.split(" ")[0] for entry in missing}
    opt["datasets"] = {phase: ds for phase, ds in opt["datasets"].items() if phase not in skipped}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"basicsr: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if command in ("train", "test", "infer"):
        from serpent_arch.host_memory import keep_freed_memory

        keep_freed_memory()  # the steps' tensors reuse freed memory instead of faulting in fresh pages
    if command in OWN_COMMANDS:
        import importlib

        import serpent_arch  # noqa: F401

        return importlib.import_module(f"serpent_arch.{command}").main(rest)
    parser = _basicsr_parser(command)
    args = parser.parse_args(rest)  # exits with a usage message on bad flags
    if command == "test" and not (args.opt or args.experiment):
        parser.error("give the test sets (-opt FILE), the experiment to test (-e experiments/NAME), or both")

    import yaml

    import serpent_arch  # noqa: F401  (BasicSR fixes and registrations, before BasicSR runs)
    from serpent_arch.options import OptionError, check_options
    from serpent_arch.run_options import resolve

    try:
        resolved = resolve(command, args)
        for line in resolved.notes:
            print(f"basicsr {command}: {line}")
        for line in resolved.warnings:
            print(f"basicsr {command}: warning: {line}", file=sys.stderr)
        _prepare_builtin_data(resolved.opt)
        if command == "test":
            _skip_missing_test_sets(resolved.opt)
        check_options(resolved.option_file, command == "train", opt=resolved.opt, source=resolved.source)
    except (OptionError, ValueError, FileExistsError) as err:
        print(f"basicsr {command}: error: {err}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix=f"basicsr_{command}_") as scratch:
        path = os.path.join(scratch, os.path.basename(resolved.option_file))
        with open(path, "w", encoding="utf-8") as f:
            yaml.safe_dump(resolved.opt, f, sort_keys=False)
        return _run_pipeline(command, _pipeline_argv(args, path), resolved, shlex.join(["basicsr", command, *rest]))


def _run_pipeline(command: str, argv: list[str], resolved, command_line: str) -> int:
    """BasicSR's own train or test pipeline on the command line ``argv`` (the resolved, checked options)."""
    sys.argv = [f"basicsr {command}", *argv]  # BasicSR parses the command line itself
    if command == "train":
        import basicsr.train

        from serpent_arch import compat, nonfinite, training

        run = training.TrainingRun(resolved.opt, resolved.option_file, command_line)
        try:
            with compat.applied("train", run=run), run.stop_on_signals():
                basicsr.train.train_pipeline(os.getcwd())
        except training.TrainingInterrupted as stop:
            print(f"basicsr train: {stop}", file=sys.stderr)
            return 128 + stop.signum
        except nonfinite.NonFiniteLossError as err:
            logging.getLogger("basicsr").error(str(err))
            print(f"basicsr train: error: {err}", file=sys.stderr)
            return 1
    else:
        from basicsr.test import test_pipeline

        test_pipeline(os.getcwd())
    return 0


if __name__ == "__main__":
    sys.exit(main())
