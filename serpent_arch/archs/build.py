"""Building a network from an option file's ``network_g``: the one place that looks the type up in
BasicSR's ``ARCH_REGISTRY``, checks the arguments against the constructor, and builds it (on the
meta device when only shapes are needed). The option checks, ``basicsr infer``, the checkpoint
matching and the leaderboard's FLOP counts all build networks here.
"""

from __future__ import annotations

import inspect
import warnings

import torch
from torch import nn

__all__ = [
    "INPUT_CHANNEL_KEYS",
    "NetworkOptionError",
    "build_network",
    "input_channels",
    "network_class",
    "unknown_arguments",
]

# Option keys under which BasicSR networks name their input channels (Serpent and SwinIR: in_chans).
INPUT_CHANNEL_KEYS = ("in_chans", "num_in_ch", "in_nc", "in_channels", "num_in_channels")


class NetworkOptionError(ValueError):
    """``network_g`` names no registered network, or arguments its constructor rejects."""


def network_class(net_opt: dict) -> type[nn.Module]:
    """The registered class of ``net_opt["type"]`` (also under BasicSR's ``_basicsr`` suffix)."""
    from basicsr.utils.registry import ARCH_REGISTRY

    if not isinstance(net_opt, dict) or not net_opt.get("type"):
        raise NetworkOptionError("network_g: missing 'type' (the network to build)")
    net_type = net_opt["type"]
    # Registry.get prints a line to stdout while trying a suffixed name: look the name up first.
    for name in (net_type, f"{net_type}_basicsr"):
        if name in ARCH_REGISTRY:
            return ARCH_REGISTRY.get(name)
    known = ", ".join(sorted(name for name, _ in ARCH_REGISTRY))
    raise NetworkOptionError(f"network_g.type: unknown network {net_type!r}; registered: {known}")


def unknown_arguments(net_opt: dict) -> list[str]:
    """The keys of ``net_opt`` that the network's constructor does not take, as messages."""
    cls = network_class(net_opt)
    params = inspect.signature(cls).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return []
    return [
        f"network_g.{key}: not an argument of {net_opt['type']}; valid: {', '.join(params)}"
        for key in net_opt
        if key != "type" and key not in params
    ]


def build_network(net_opt: dict, meta: bool = False) -> nn.Module:
    """Build ``network_g`` on the CPU, or with ``meta=True`` on the meta device (shapes only, nothing
    allocated or initialised, even for large networks). Raises :class:`NetworkOptionError` naming
    the network for any argument its constructor rejects."""
    cls = network_class(net_opt)
    args = {key: value for key, value in net_opt.items() if key != "type"}
    try:
        if meta:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # meta-device chatter of some constructors
                try:
                    with torch.device("meta"):
                        return cls(**args)
                except Exception:  # constructors that read values (.item(), copies into buffers)
                    pass
        return cls(**args)
    except Exception as err:  # the constructor's own message, whatever its type (BasicSR asserts)
        detail = str(err) or type(err).__name__
        prefix = "" if detail.startswith(net_opt["type"]) else f"{net_opt['type']}: "
        raise NetworkOptionError(f"network_g: {prefix}{detail}") from err


def input_channels(net_opt: dict) -> int | None:
    """Image channels ``network_g`` takes, from its options or its constructor's default."""
    for key in INPUT_CHANNEL_KEYS:
        if key in net_opt:
            return int(net_opt[key])
    params = inspect.signature(network_class(net_opt)).parameters
    for key in INPUT_CHANNEL_KEYS:
        if key in params and isinstance(params[key].default, int):
            return params[key].default
    return None
