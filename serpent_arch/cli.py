"""The `basicsr` command: BasicSR's train and test pipelines with the Serpent plugin loaded.

    basicsr train -opt options/serpent_sr.yml [--launcher none|pytorch|slurm] [--auto_resume]
                  [--debug] [--force_yml KEY=VALUE ...]
    basicsr test  -opt options/serpent_sr_test.yml
    basicsr infer -opt OPTIONS.yml --weights NET.pth -i IMAGES -o OUT_DIR [flags]
    basicsr leaderboard [results/] [flags]
    basicsr presets [--family unet|sr]
    basicsr doctor

The current directory is the root: experiments/, results/ and tb_logger/ are created under it,
and relative data paths in option files start there. Any BasicSR option file works, for
Serpent or for BasicSR's own networks.
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import sys
import tempfile

COMMANDS = {
    "train": "train a network with BasicSR's training pipeline",
    "test": "evaluate a trained network with BasicSR's test pipeline",
    "infer": "restore your own images (a file or a folder) with a trained network",
    "leaderboard": "collect the metrics of every test run under results/ into one table",
    "presets": "the named Serpent networks: parameters, GFLOPs, what each is for",
    "doctor": "versions, devices and selective-scan backends of this machine (for bug reports)",
}
# Commands that are not BasicSR pipelines: module serpent_arch.<name> with main(argv) -> exit code.
OWN_COMMANDS = ("infer", "leaderboard", "presets", "doctor")


def _basicsr_parser(command: str) -> argparse.ArgumentParser:
    """The flags of BasicSR's own ``parse_options``, for help and for reading ``-opt``."""
    parser = argparse.ArgumentParser(prog=f"basicsr {command}", description=COMMANDS[command])
    parser.add_argument("-opt", required=True, help="path to the option YAML file")
    parser.add_argument("--launcher", choices=["none", "pytorch", "slurm"], default="none", help="job launcher")
    parser.add_argument("--auto_resume", action="store_true", help="resume from the latest training state")
    parser.add_argument("--debug", action="store_true", help="debug mode (name prefixed with debug_)")
    parser.add_argument("--local_rank", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--force_yml", nargs="+", default=None, help="override options, e.g. train:ema_decay=0.999")
    return parser


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


def _without_missing_test_sets(opt_path: str, raw: dict, opt: dict, folder: str) -> tuple[str, set[str]]:
    """A benchmark option file lists every set of its task; evaluate those that are present.

    ``raw`` is the file as written, ``opt`` with the ``--force_yml`` overrides applied. Returns
    ``opt_path``, or the path of a copy in ``folder`` without the missing ``test_*`` sets (with a
    warning naming them; the overrides stay on the command line, for BasicSR to apply), and the
    phases left out. When none is present the option check reports them all.
    """
    import yaml

    from serpent_arch.options import missing_test_sets

    missing = missing_test_sets(opt)
    tests = [phase for phase in opt.get("datasets") or {} if str(phase).startswith("test")]
    if not missing or len(missing) == len(tests):
        return opt_path, set()
    print(
        "basicsr test: warning: skipping test sets whose data is not here (datasets/README.md says how to "
        "prepare them):\n  " + "\n  ".join(missing),
        file=sys.stderr,
    )
    skipped = {entry.split(" ")[0] for entry in missing}
    kept = dict(raw, datasets={phase: ds for phase, ds in raw["datasets"].items() if phase not in skipped})
    path = os.path.join(folder, os.path.basename(opt_path))
    with open(path, "w") as f:
        yaml.safe_dump(kept, f, sort_keys=False)
    return path, skipped


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"basicsr: unknown command {command!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    if command in OWN_COMMANDS:
        import importlib

        import serpent_arch  # noqa: F401

        return importlib.import_module(f"serpent_arch.{command}").main(rest)
    args = _basicsr_parser(command).parse_args(rest)  # exits with a usage message on bad flags

    import serpent_arch  # noqa: F401  (BasicSR fixes and registrations, before BasicSR runs)
    from serpent_arch.options import OptionError, apply_force_yml, check_options, load_yaml

    with tempfile.TemporaryDirectory(prefix="basicsr_test_") as scratch:
        try:
            raw = load_yaml(args.opt)
            opt = apply_force_yml(copy.deepcopy(raw), args.force_yml)
            _prepare_builtin_data(opt)
            if command == "test":
                opt_path, skipped = _without_missing_test_sets(args.opt, raw, opt, scratch)
                if skipped:
                    rest = [opt_path if i and rest[i - 1] == "-opt" else arg for i, arg in enumerate(rest)]
                    args.opt = opt_path
                    opt["datasets"] = {phase: ds for phase, ds in opt["datasets"].items() if phase not in skipped}
            check_options(args.opt, is_train=command == "train", opt=opt)  # BasicSR reads the file itself
        except (OptionError, ValueError, FileExistsError) as err:
            print(f"basicsr {command}: error: {err}", file=sys.stderr)
            return 2
        return _run_pipeline(command, rest)


def _run_pipeline(command: str, rest: list[str]) -> int:
    """BasicSR's own train or test pipeline on the (checked) command line ``rest``."""
    sys.argv = [f"basicsr {command}", *rest]  # BasicSR parses the command line itself
    if command == "train":
        import basicsr.train

        from serpent_arch import compat, nonfinite, training

        run = training.TrainingRun()
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
