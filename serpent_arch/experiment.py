"""An experiment folder, ``experiments/NAME``, as ``basicsr test -e`` and ``basicsr infer -e`` read it:
the options its training ran with and its newest weights.

``basicsr train`` writes :data:`RESOLVED_OPTIONS` beside BasicSR's copy of the option file (the
``basicsr.train.copy_opt_file`` entry of ``serpent_arch.compat.PATCHES``): the option file after
``--trial``, ``--force_yml`` and ``--remove_yml``, which BasicSR's copy only records in its
``# CMD:`` comment. Reading the network from there, a test or an inference never needs the user to
write down again what the training was told on its command line.
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass
from os import path as osp

import yaml

from serpent_arch.options import OptionError, load_yaml

RESOLVED_OPTIONS = "options_resolved.yml"


@dataclass(frozen=True)
class Experiment:
    folder: str
    name: str  # the folder's name, which is the run's name (``--debug`` and ``--trial`` prefixes included)
    options_path: str  # FOLDER/options_resolved.yml
    options: dict
    weights: str  # the newest checkpoint of FOLDER/models


def open_experiment(folder: str) -> Experiment:
    """The experiment in ``folder``; OptionError naming the folder when it is not one ``basicsr train`` wrote."""
    folder = folder.rstrip("/") or folder
    if not osp.isdir(folder):
        raise OptionError(f"-e {folder}: no such experiment folder (basicsr train writes experiments/NAME).")
    options_path = osp.join(folder, RESOLVED_OPTIONS)
    if not osp.isfile(options_path):
        copies = sorted(f for f in os.listdir(folder) if f.endswith(".yml"))
        found = f" (only BasicSR's copy {copies[0]}, whose --force_yml overrides are a comment)" if copies else ""
        raise OptionError(
            f"-e {folder}: no {RESOLVED_OPTIONS}{found}; it is written by basicsr train since this version. "
            "Give the options and weights instead: -opt FILE --weights FILE (infer) or -opt FILE with "
            "path.pretrain_network_g (test)."
        )
    options = load_yaml(options_path)
    if not isinstance(options.get("network_g"), dict):
        raise OptionError(f"{options_path}: missing 'network_g'.")
    return Experiment(folder, osp.basename(osp.abspath(folder)), options_path, options, newest_weights(folder))


def newest_weights(folder: str) -> str:
    """``models/net_g_latest.pth`` (saved when training ends), unless a numbered checkpoint is newer
    (a run resumed for more iterations and stopped before its end): then that one."""
    models = osp.join(folder, "models")
    found = []
    if osp.isdir(models):
        for entry in os.listdir(models):
            stem = entry.removeprefix("net_g_").removesuffix(".pth")
            if entry.startswith("net_g_") and entry.endswith(".pth") and (stem.isdigit() or stem == "latest"):
                path = osp.join(models, entry)
                found.append((osp.getmtime(path), stem == "latest", int(stem) if stem.isdigit() else 0, path))
    if not found:
        raise OptionError(f"-e {folder}: no network weights in {models} (net_g_latest.pth or net_g_<iter>.pth).")
    return max(found)[-1]


def options_for_test(exp: Experiment, test_opt: dict | None, test_path: str | None) -> dict:
    """The options of ``basicsr test -e FOLDER [-opt TEST.yml]``: the test sets, metrics and ``val``
    settings of ``test_opt`` (without it: the experiment's own validation sets, as test sets, on
    whole sets), with the experiment's ``network_g``, ``scale`` and newest weights (``params_ema``
    when present, as BasicSR falls back to ``params``), named after the experiment."""
    trained = exp.options
    if test_opt is None:
        left_out = ("train", "logger", "datasets")
        opt = {key: copy.deepcopy(value) for key, value in trained.items() if key not in left_out}
        phases = [phase for phase in trained.get("datasets") or {} if str(phase).startswith("val")]
        if not phases or not isinstance(trained.get("val"), dict):
            raise OptionError(
                f"-e {exp.folder}: the training had no validation set to test on; give the test sets with -opt FILE "
                "(options/test/ has one per task)."
            )
        opt["datasets"] = {f"test_{i}": copy.deepcopy(trained["datasets"][p]) for i, p in enumerate(phases, 1)}
        opt["val"] = {key: value for key, value in opt["val"].items() if key not in ("val_freq", "max_images")}
        opt["val"].setdefault("suffix", None)
    else:
        opt = copy.deepcopy(test_opt)
        scale, trained_scale = opt.get("scale", 1), trained.get("scale", 1)
        if scale != trained_scale:
            raise OptionError(
                f"option file {test_path!r} tests x{scale}, but {exp.folder} was trained for x{trained_scale}; "
                "use the test file of its scale."
            )
    opt["name"] = exp.name
    opt["scale"] = trained.get("scale", 1)
    opt["network_g"] = copy.deepcopy(trained["network_g"])
    opt["path"] = {
        **{k: v for k, v in (opt.get("path") or {}).items() if "pretrain" not in k and "param_key" not in k},
        "pretrain_network_g": exp.weights,
        "param_key_g": "params_ema",
        "strict_load_g": True,
    }
    return opt


def write_resolved_options(opt: dict, experiments_root: str, option_file: str, command: str) -> str:
    """Write ``opt``, the options a training run uses, to ``experiments_root``/:data:`RESOLVED_OPTIONS`."""
    path = osp.join(experiments_root, RESOLVED_OPTIONS)
    header = (
        f"# The options `basicsr train` ran with ({time.asctime()}): {option_file} after --trial, --force_yml\n"
        f"# and --remove_yml. `basicsr test -e` and `basicsr infer -e` read network_g and scale from here.\n"
        f"# CMD: {command}\n"
    )
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(header)
        yaml.safe_dump(opt, f, sort_keys=False)
    os.replace(tmp, path)
    return path
