"""Checks of a BasicSR option file before BasicSR runs it.

BasicSR indexes option dictionaries directly, so a missing or misspelt key surfaces as a
``KeyError`` deep inside the trainer, often after minutes of data loading. ``check_options``
reads the YAML the same way and reports every problem it finds at once, naming the file and
the key. It only reads; BasicSR still parses the file itself.
"""

from __future__ import annotations

import os
from os import path as osp

import yaml

from serpent_arch import amp


class OptionError(ValueError):
    """An option file that BasicSR cannot run; the message lists every problem found."""


def load_yaml(path: str) -> dict:
    if not osp.isfile(path):
        raise OptionError(f"option file {path!r} does not exist.")
    try:
        with open(path, encoding="utf-8") as f:
            opt = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise OptionError(f"option file {path!r} is not valid YAML: {err}") from err
    if not isinstance(opt, dict):
        raise OptionError(f"option file {path!r}: expected a mapping of options, got {type(opt).__name__}.")
    return opt


def apply_force_yml(opt: dict, entries: list[str] | None) -> dict:
    """Apply ``--force_yml KEY:SUBKEY=VALUE`` entries as BasicSR's ``parse_options`` would (values
    parsed by BasicSR's own rule: ``KEY=~`` sets None, it does not remove the key)."""
    from basicsr.utils.options import _postprocess_yml_value

    for entry in entries or []:
        keys, sep, value = entry.partition("=")
        if not sep:
            raise OptionError(f"--force_yml {entry!r}: expected KEY=VALUE, nested keys joined by ':'")
        node, last = _parent_of(opt, keys, f"--force_yml {entry!r}")
        node[last] = _postprocess_yml_value(value.strip())
    return opt


def remove_keys(opt: dict, entries: list[str] | None) -> dict:
    """Apply ``--remove_yml KEY:SUBKEY`` entries: delete each key (after the ``--force_yml`` entries).

    BasicSR's ``--force_yml`` can set a key to None (``KEY=~``) but not remove it, and for some keys
    the two differ (a test set's ``num_images`` is checked when present).
    """
    for entry in entries or []:
        if "=" in entry:
            raise OptionError(f"--remove_yml {entry!r}: give the key only (KEY:SUBKEY); values go with --force_yml")
        node, last = _parent_of(opt, entry, f"--remove_yml {entry!r}")
        if last not in node:
            raise OptionError(f"--remove_yml {entry!r}: there is no key {last!r} to remove")
        del node[last]
    return opt


def removal_flag(where: str, key: str) -> str:
    """The flag that removes ``key`` of the section named ``where`` in messages (``datasets.test_1``)."""
    return f"--remove_yml {where.replace('.', ':')}:{key}"


def _parent_of(opt: dict, keys: str, flag: str) -> tuple[dict, str]:
    """The mapping that holds the last of ``keys`` (``A:B:C``), and that key."""
    *parents, last = [key.strip() for key in keys.split(":")]
    if not last:
        raise OptionError(f"{flag}: expected a key, nested keys joined by ':'")
    node = opt
    for key in parents:
        if not isinstance(node.get(key) if isinstance(node, dict) else None, dict):
            raise OptionError(f"{flag}: the option file has no section {key!r}")
        node = node[key]
    return node, last


def check_options(
    path: str, is_train: bool, force_yml: list[str] | None = None, opt: dict | None = None, source: str | None = None
) -> dict:
    """Validate the option file at ``path`` (with ``--force_yml`` entries applied), or ``opt``, the
    options already read from it with the overrides applied; return the options or raise OptionError.
    Problems are reported under ``source`` (default: ``option file 'PATH'``), which names the user's
    files, never a temporary copy."""
    from basicsr.utils.registry import DATASET_REGISTRY, MODEL_REGISTRY

    if opt is None:
        opt = apply_force_yml(load_yaml(path), force_yml)
    problems: list[str] = []

    def need(mapping, key, where, kind=None):
        if not isinstance(mapping, dict) or key not in mapping or mapping[key] is None:
            problems.append(f"missing required key '{where}{key}'")
            return None
        value = mapping[key]
        if kind is not None and not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            problems.append(f"'{where}{key}' must be {names}, got {value!r}")
            return None
        return value

    need(opt, "name", "", str)
    model_type = need(opt, "model_type", "", str)
    if model_type is not None and model_type not in MODEL_REGISTRY:
        problems.append(f"model_type: unknown model {model_type!r}; registered: {_names(MODEL_REGISTRY)}")
    num_gpu = need(opt, "num_gpu", "")
    if num_gpu is not None and num_gpu != "auto" and not (isinstance(num_gpu, int) and num_gpu >= 0):
        problems.append(f"'num_gpu' must be 'auto' or an integer >= 0, got {num_gpu!r}")
    scale = opt.get("scale", 1)
    if not isinstance(scale, int) or scale < 1:
        problems.append(f"'scale' must be a positive integer, got {scale!r}")
    paths = need(opt, "path", "", dict) or {}
    for key, value in paths.items():
        if value and ("pretrain_network" in key or key == "resume_state") and not osp.isfile(osp.expanduser(value)):
            problems.append(f"path.{key}: {value!r} does not exist (relative paths start at {os.getcwd()})")

    channels = _check_datasets(opt, is_train, problems, DATASET_REGISTRY, scale)
    network_ok = _check_network(opt.get("network_g"), channels, problems)
    weights = paths.get("pretrain_network_g")
    if network_ok and weights and osp.isfile(osp.expanduser(weights)):
        problems += _check_weights_fit(opt["network_g"], paths)

    if is_train:
        train = need(opt, "train", "", dict) or {}
        need(train, "total_iter", "train.", (int, float))
        sections_ok = True
        for section in ("optim_g", "scheduler"):
            if (
                need(train, section, "train.", dict) is None
                or need(train[section], "type", f"train.{section}.", str) is None
            ):
                sections_ok = False
        if sections_ok and model_type in MODEL_REGISTRY:
            problems += _optimization_problems(train, MODEL_REGISTRY.get(model_type))
        if train and not (train.get("pixel_opt") or train.get("perceptual_opt")):
            problems.append("'train' needs a loss: set train.pixel_opt (e.g. {type: L1Loss, loss_weight: 1.0})")
        from serpent_arch.nonfinite import NONFINITE_ACTIONS

        if train.get("on_nonfinite_loss", "stop") not in NONFINITE_ACTIONS:
            problems.append(
                f"'train.on_nonfinite_loss' must be one of {', '.join(NONFINITE_ACTIONS)}, "
                f"got {train['on_nonfinite_loss']!r}"
            )
        problem = amp.option_problem(train, "amp", "train.amp")
        if problem:
            problems.append(problem)
        skips = train.get("max_nonfinite_skips", 10)
        if isinstance(skips, bool) or not isinstance(skips, int) or skips < 0:
            problems.append(f"'train.max_nonfinite_skips' must be an integer >= 0, got {skips!r}")
        if not isinstance(train.get("ema_warmup", True), bool):
            problems.append(f"'train.ema_warmup' must be true or false, got {train['ema_warmup']!r}")
        logger = need(opt, "logger", "", dict) or {}
        need(logger, "print_freq", "logger.", (int, float))
        need(logger, "save_checkpoint_freq", "logger.", (int, float))
        has_val_data = any(str(k).startswith("val") for k in (opt.get("datasets") or {}))
        if has_val_data and opt.get("val") is not None:
            need(opt["val"], "val_freq", "val.", (int, float))
    else:
        val = need(opt, "val", "", dict)
        if val is not None and "suffix" not in val:
            problems.append("'val.suffix' is required by `basicsr test` (use `suffix: ~` for none)")
    val = opt.get("val")
    if isinstance(val, dict):
        for name, metric in (val.get("metrics") or {}).items():
            need(metric, "type", f"val.metrics.{name}.", str)
        problem = amp.option_problem(val, "amp", "val.amp")
        if problem:
            problems.append(problem)
        tile = val.get("tile")
        if tile is not None and (not isinstance(tile, int) or tile < 0):
            problems.append(f"'val.tile' must be a positive integer (input pixels) or null, got {tile!r}")

    if problems:
        raise OptionError(f"{source or f'option file {path!r}'}:\n  - " + "\n  - ".join(problems))
    return opt


def _names(registry) -> str:
    return ", ".join(sorted(name for name, _ in registry))


def missing_test_sets(opt: dict) -> list[str]:
    """The ``test_*`` dataset sections whose data folders do not exist, as ``"test_3 (Urban100): path"``."""
    missing = []
    for phase, ds in (opt.get("datasets") or {}).items():
        if str(phase).startswith("test") and isinstance(ds, dict):
            for key in ("dataroot_gt", "dataroot_lq"):
                root = ds.get(key)
                if root is not None and not ds.get("auto_prepare") and not osp.exists(osp.expanduser(str(root))):
                    missing.append(f"{phase} ({ds.get('name')}): {root}")
                    break
    return missing


def _check_datasets(opt, is_train, problems, registry, scale) -> int | None:
    """Check every dataset section; return the number of image channels they load (or None)."""
    datasets = opt.get("datasets")
    if not isinstance(datasets, dict) or not datasets:
        problems.append("missing required key 'datasets' (a mapping of train / val / test_* sections)")
        return None
    channels = None
    for phase, ds in datasets.items():
        where = f"datasets.{phase}"
        if not isinstance(ds, dict):
            problems.append(f"'{where}' must be a mapping, got {ds!r}")
            continue
        ds_type = ds.get("type")
        if ds_type is None:
            problems.append(f"missing required key '{where}.type'")
        elif ds_type not in registry:
            problems.append(f"{where}.type: unknown dataset {ds_type!r}; registered: {_names(registry)}")
        if "name" not in ds:
            problems.append(f"missing required key '{where}.name'")
        if str(phase).split("_")[0] == "train":
            if not is_train:
                continue
            for key, least in (("batch_size_per_gpu", 1), ("num_worker_per_gpu", 0)):
                value = ds.get(key)
                if isinstance(value, bool) or not isinstance(value, int) or value < least:
                    problems.append(f"'{where}.{key}' must be an integer >= {least}, got {value!r}")
        found = len(problems)
        for key in ("dataroot_gt", "dataroot_lq", "meta_info_file"):
            root = ds.get(key)
            if root is None or (key == "dataroot_gt" and ds.get("auto_prepare")):
                continue
            if not osp.exists(osp.expanduser(str(root))):
                problems.append(f"{where}.{key}: {root!r} does not exist (relative paths start at {os.getcwd()})")
        if len(problems) == found and ds_type in registry and isinstance(scale, int):
            problems += _check_dataset_files(where, phase, ds, registry.get(ds_type), scale, is_train)
        ds_channels = 1 if ds.get("color") == "y" else 3
        channels = ds_channels if channels is None else channels
    return channels


def _check_network(net_opt, channels, problems) -> bool:
    """Check ``network_g`` by building it on the meta device; True when it can be built."""
    from serpent_arch.archs.build import (
        INPUT_CHANNEL_KEYS,
        NetworkOptionError,
        build_network,
        input_channels,
        unknown_arguments,
    )

    if not isinstance(net_opt, dict):
        problems.append("missing required key 'network_g' (a mapping with the network's type and arguments)")
        return False
    if net_opt.get("type") is None:
        problems.append("missing required key 'network_g.type'")
        return False
    try:
        unknown = unknown_arguments(net_opt)
        if unknown:
            problems.extend(unknown)
            return False
        build_network(net_opt, meta=True)
        in_chans = input_channels(net_opt)
    except NetworkOptionError as err:
        problems.append(str(err))
        return False
    if channels is not None and in_chans is not None and in_chans != channels:
        key = next((k for k in INPUT_CHANNEL_KEYS if k in net_opt), "in_chans")
        problems.append(
            f"network_g.{key} is {in_chans} but the datasets load {channels}-channel images "
            "(datasets load RGB unless `color: y`); make them agree"
        )
        return False
    return True


def _optimization_problems(train: dict, model_cls) -> list[str]:
    """Build ``train.optim_g`` and ``train.scheduler`` the way ``model_cls`` will, on one dummy
    parameter, so an unknown name or a bad argument is reported before anything runs."""
    import copy
    import types

    import torch

    optim_opt = copy.deepcopy(train["optim_g"])
    optim_type = optim_opt.pop("type")
    dummy = [torch.nn.Parameter(torch.zeros(1))]
    try:
        optimizer = model_cls.get_optimizer(None, optim_type, dummy, **optim_opt)
    except Exception as err:  # NotImplementedError, TypeError for a bad argument, ValueError ...
        return [f"train.optim_g: {optim_type!r} cannot be built by {model_cls.__name__}: {_message(err)}"]
    stand_in = types.SimpleNamespace(opt={"train": copy.deepcopy(train)}, optimizers=[optimizer], schedulers=[])
    try:
        model_cls.setup_schedulers(stand_in)
    except Exception as err:
        kind = train["scheduler"]["type"]
        return [f"train.scheduler: {kind!r} cannot be built by {model_cls.__name__}: {_message(err)}"]
    return []


def _message(err: Exception) -> str:
    text = str(err)
    for prefix in ("train.optim_g.type: ", "train.scheduler.type: "):
        text = text.removeprefix(prefix)
    return text or type(err).__name__


def _check_dataset_files(where, phase, ds, dataset_cls, scale, is_train) -> list[str]:
    """Build the dataset as BasicSR will (its own checks run), then check its files and size."""
    from serpent_arch.data.checks import dataset_problems

    kind = str(phase).split("_")[0]
    try:
        dataset = dataset_cls(dict(ds, phase=kind, scale=scale))
    except Exception as err:  # the dataset's own message, whatever its type (BasicSR asserts)
        return [f"{where}: {type(err).__name__}: {err}" if not str(err).startswith(type(err).__name__) else str(err)]
    problems = dataset_problems(f"{where} ({ds.get('name')})", dataset, is_train)
    expected = ds.get("num_images")
    if expected is not None:
        if isinstance(expected, bool) or not isinstance(expected, int) or expected < 1:
            problems.append(f"'{where}.num_images' must be a positive integer, got {expected!r}")
        elif len(dataset) != expected:
            problems.append(
                f"{where} ({ds.get('name')}): {len(dataset)} images, expected {expected} (num_images); a partial or "
                "wrong download? Prepare it again (datasets/README.md); for a custom set, leave the count out: "
                f"{removal_flag(where, 'num_images')}"
            )
    return problems


def _check_weights_fit(net_opt: dict, paths: dict) -> list[str]:
    """Whether ``path.pretrain_network_g`` holds weights that BasicSR can load into this ``network_g``."""
    from serpent_arch.archs.build import build_network
    from serpent_arch.checkpoints import (
        CheckpointError,
        named_preset,
        preset_that_fits,
        read_state_dict,
        state_mismatch,
    )

    path = osp.expanduser(paths["pretrain_network_g"])
    key = paths.get("param_key_g", "params")
    try:
        try:
            state, _ = read_state_dict(path, key)
        except CheckpointError:
            if key == "params":
                raise
            state, _ = read_state_dict(path, "params")  # BasicSR falls back to 'params' as well
    except CheckpointError as err:
        return [f"path.pretrain_network_g: {err}"]
    net = build_network(net_opt, meta=True)
    mismatch = state_mismatch(net, state, strict=paths.get("strict_load_g", True))
    if mismatch is None:
        return []
    described = net_opt["type"] + (f" preset {named_preset(net_opt)!r}" if net_opt["type"] == "Serpent" else "")
    fitting = preset_that_fits(net_opt, state)
    hint = f"they fit preset {fitting!r}" if fitting else "were they trained with other network options?"
    return [f"path.pretrain_network_g: {path} does not fit network_g ({described}): {mismatch}; {hint}"]
