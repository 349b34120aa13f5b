"""The network of `basicsr infer`: ``network_g`` of the option file, built and loaded with the weights."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from serpent_arch.archs.build import NetworkOptionError, build_network
from serpent_arch.checkpoints import CheckpointError, named_preset, preset_that_fits, read_state_dict, state_mismatch
from serpent_arch.infer.errors import InferError


@dataclass
class LoadedNetwork:
    net: nn.Module
    net_type: str
    scale: int
    in_chans: int | None  # None when the network does not say (then images go in as they are)
    param_key: str | None  # the checkpoint entry that was loaded; None for a bare state dict


def network_options(
    opt_path: str | None, experiment: str | None, weights: str | None, force_yml=None, remove_yml=None
) -> tuple[dict, str, str]:
    """The options, how messages name them, and the weights of ``basicsr infer``: ``-opt FILE --weights
    NET.pth``, or ``-e experiments/NAME`` (the options its training ran with, its newest weights unless
    ``--weights`` picks another), with ``--force_yml`` / ``--remove_yml`` applied as ``basicsr train`` does."""
    from serpent_arch.experiment import open_experiment
    from serpent_arch.options import OptionError, apply_force_yml, load_yaml, remove_keys

    if opt_path and experiment:
        raise InferError("give -opt (with --weights) or -e, not both: -e reads the options of the experiment.")
    if not (opt_path or experiment):
        raise InferError("give the network: -e experiments/NAME, or -opt OPTIONS.yml --weights NET.pth.")
    if opt_path and not weights:
        raise InferError(f"-opt {opt_path} needs --weights NET.pth (or use -e experiments/NAME).")
    try:
        if experiment:
            exp = open_experiment(experiment)
            opt, source, weights = exp.options, exp.options_path, weights or exp.weights
        else:
            opt, source = load_yaml(opt_path), opt_path
        apply_force_yml(opt, force_yml)
        remove_keys(opt, remove_yml)
    except OptionError as err:
        raise InferError(str(err)) from err
    return opt, source, weights


def load_network(opt: dict, opt_path: str, weights_path: str, param_key: str | None) -> LoadedNetwork:
    """Build ``network_g`` of the options ``opt`` (read from ``opt_path``) on the CPU and load the weights
    into it (strictly)."""
    net_opt = opt.get("network_g")
    if not isinstance(net_opt, dict) or not net_opt.get("type"):
        raise InferError(f"option file {opt_path!r}: missing 'network_g' with a 'type' (the network to build).")
    scale = opt.get("scale", 1)
    if not isinstance(scale, int) or scale < 1:
        raise InferError(f"option file {opt_path!r}: 'scale' must be a positive integer, got {scale!r}.")
    net_type = net_opt["type"]
    try:
        net = build_network(net_opt)
    except NetworkOptionError as err:
        raise InferError(f"option file {opt_path!r}: {err}") from err
    upscale = getattr(net, "upscale", None)
    if isinstance(upscale, int) and upscale != scale:
        raise InferError(
            f"option file {opt_path!r}: 'scale' is {scale} but network_g.upscale is {upscale}; make them agree."
        )

    try:
        state, used_key = read_state_dict(weights_path, param_key)
    except CheckpointError as err:
        raise InferError(str(err)) from err
    mismatch = state_mismatch(net, state)
    if mismatch:
        described = f"type {net_type}"
        if net_type == "Serpent":
            described += f", preset {named_preset(net_opt)!r}"
        fitting = preset_that_fits(net_opt, state)
        if fitting:
            hint = f"they fit preset {fitting!r}: use an option file with network_g.preset: {fitting}"
        else:
            hint = "use the option file the weights were trained with (same network_g: preset, sizes, upscale)"
        raise InferError(
            f"weights {weights_path!r} do not fit network_g of {opt_path!r} ({described}): {mismatch}.\n  hint: {hint}"
        )
    net.load_state_dict(state, strict=True)
    net.eval()
    return LoadedNetwork(net, net_type, scale, _input_channels(net), used_key)


def _input_channels(net: nn.Module) -> int | None:
    """Image channels the network takes: Serpent says so; for other BasicSR networks, the first conv's."""
    in_chans = getattr(net, "in_chans", None)
    if isinstance(in_chans, int):
        return in_chans
    first_conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return first_conv.in_channels if first_conv is not None else None
