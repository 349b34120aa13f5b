"""Reading BasicSR checkpoints and telling whether they fit a network (for the option checks of
``basicsr train/test`` and for ``basicsr infer``), and writing them atomically."""

from __future__ import annotations

import os

import torch
from torch import nn


class CheckpointError(ValueError):
    """A weights file that cannot be read, or lacks the requested entry."""


def read_state_dict(weights_path: str, param_key: str | None = None) -> tuple[dict, str | None]:
    """The state dict in ``weights_path`` and the checkpoint key it came from.

    A BasicSR checkpoint holds state dicts under ``params`` and (with EMA) ``params_ema``; without
    ``param_key`` the EMA weights are taken when present, as BasicSR's test option files do. A bare
    state dict is taken as it is. The ``module.`` prefix of weights saved from a DataParallel /
    DistributedDataParallel wrapper is stripped.
    """
    if not os.path.isfile(weights_path):
        raise CheckpointError(f"weights file {weights_path!r} does not exist.")
    try:
        checkpoint = torch.load(weights_path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for files that are not checkpoints
        raise CheckpointError(
            f"weights file {weights_path!r} cannot be loaded: not a torch checkpoint, truncated, or holding objects "
            f"other than tensors and dicts (only those are loaded, for safety) ({_load_error_detail(err)})"
        ) from err
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"weights file {weights_path!r} holds a {type(checkpoint).__name__}, not a state dict.")
    is_bare = bool(checkpoint) and all(isinstance(v, torch.Tensor) for v in checkpoint.values())
    entries = [key for key, value in checkpoint.items() if isinstance(value, dict)]
    if param_key is not None:
        if param_key not in entries:
            has = f"entries: {', '.join(entries)}" if entries else "it is a bare state dict; leave out --param-key"
            raise CheckpointError(f"weights file {weights_path!r} has no entry {param_key!r} ({has}).")
        used_key = param_key
    elif is_bare:
        used_key = None
    elif "params_ema" in entries or "params" in entries:
        used_key = "params_ema" if "params_ema" in entries else "params"
    else:
        looks_like = " (it looks like a training state: pass a models/net_g_*.pth file)" if "iter" in checkpoint else ""
        raise CheckpointError(
            f"weights file {weights_path!r} has neither 'params_ema' nor 'params' and is not a state dict"
            f"{looks_like}; its keys: {', '.join(map(str, checkpoint))}."
        )
    state = checkpoint if used_key is None else checkpoint[used_key]
    state = {key.removeprefix("module."): value for key, value in state.items()}
    return state, used_key


def _load_error_detail(err: Exception) -> str:
    """The informative part of a torch.load error, on one line."""
    text = " ".join(str(err).split())
    # weights_only failures start with a long generic paragraph; the cause follows this marker
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text.split(marker, 1)[1].split(" Check the documentation")[0].strip()
    first_sentence = text.split(". ")[0].rstrip(".")
    return f"{type(err).__name__}: {first_sentence}" if text else type(err).__name__


def state_mismatch(net: nn.Module, state: dict, strict: bool = True) -> str | None:
    """How ``state`` fails to fit ``net`` (one line), or None when it loads (``strict``: also with
    no tensor missing or extra, as ``load_state_dict(strict=True)`` needs)."""
    own = net.state_dict()
    missing = [key for key in own if key not in state] if strict else []
    unexpected = [key for key in state if key not in own] if strict else []
    reshaped = [key for key in own if key in state and tuple(state[key].shape) != tuple(own[key].shape)]
    problems = []
    if reshaped:
        key = reshaped[0]
        problems.append(
            f"{len(reshaped)} tensors have another shape (e.g. {key}: {tuple(state[key].shape)} in the weights, "
            f"{tuple(own[key].shape)} in the network)"
        )
    if missing:
        problems.append(f"{len(missing)} network tensors are missing (e.g. {missing[0]})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
    return "; ".join(problems) or None


def named_preset(net_opt: dict) -> str:
    """The preset a Serpent ``network_g`` names (``preset``, or its former name ``variant``; else the default)."""
    from serpent_arch.archs.presets import DEFAULT_PRESET

    return net_opt.get("preset") or net_opt.get("variant") or DEFAULT_PRESET


def preset_that_fits(net_opt: dict, state: dict) -> str | None:
    """For a Serpent ``network_g``, another preset (with the same keys set beside it) whose network the weights
    fit, if any."""
    from serpent_arch.archs.build import NetworkOptionError, build_network
    from serpent_arch.archs.presets import PRESETS

    if net_opt.get("type") != "Serpent":
        return None
    named = named_preset(net_opt)
    base = {key: value for key, value in net_opt.items() if key not in ("preset", "variant")}
    for preset in PRESETS:
        if preset == named:
            continue
        try:
            candidate = build_network({**base, "preset": preset}, meta=True)
        except NetworkOptionError:
            continue
        if state_mismatch(candidate, state) is None:
            return preset
    return None


def atomic_save(obj, f, *args, **kwargs) -> None:
    """``torch.save`` that never leaves a partial file at ``f``: temporary file, fsync, rename."""
    if not isinstance(f, (str, os.PathLike)):
        return torch.save(obj, f, *args, **kwargs)
    tmp = f"{os.fspath(f)}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle, *args, **kwargs)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, f)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
