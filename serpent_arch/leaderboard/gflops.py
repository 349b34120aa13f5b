"""GFLOPs of the networks in the records: rebuilt from ``network_g`` on the meta device and counted
by :func:`serpent_arch.measure.flops.count_flops`, once per distinct network and input size
(:class:`FlopsCache`); a network that cannot be built or counted gets a footnote, never a crash."""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field

from serpent_arch.leaderboard.cells import Cell
from serpent_arch.leaderboard.runs import Run

DEFAULT_FLOPS_SIZE = (256, 256)


def size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def input_size(output_size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The input whose ``scale``-times output is nearest ``output_size`` (x3 of 256 -> 85)."""
    return tuple(max(1, round(side / scale)) for side in output_size)


def count_network_gflops(network_opt: dict, size: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """GFLOPs of one forward of the BasicSR network ``network_opt`` (type + args) on an HxW input,
    and the input size actually counted.

    Networks with a ``window_size`` option (SwinIR and its kind) only take inputs that are a
    multiple of it; BasicSR's SwinIRModel pads the input up to one for testing, so the count does
    the same. Raises whatever building or counting raises; :class:`FlopsCache` makes that a footnote.
    """
    from serpent_arch.archs.build import NetworkOptionError, build_network, input_channels, network_class
    from serpent_arch.measure.flops import count_flops

    try:
        network_class(network_opt)
    except NetworkOptionError:  # a footnote, so without the registry's whole list
        name = network_opt.get("type")
        raise KeyError(f"{name} is not a registered BasicSR network (import the package that defines it)") from None
    window = network_opt.get("window_size")
    if isinstance(window, int) and window > 1:
        size = tuple(math.ceil(side / window) * window for side in size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constructor chatter would drown the table
        network = build_network(network_opt, meta=True)
        in_chans = input_channels(network_opt) or 3
        return count_flops(network, size, in_chans=in_chans).total / 1e9, size


def _failure_text(err: Exception) -> str:
    """``KeyError: NoSuchNet is not ...``: the error's first line, short enough for a footnote."""
    text = err.args[0] if isinstance(err, KeyError) and err.args else err  # KeyError's str quotes
    reason = str(text).strip().splitlines()[0] if str(text).strip() else ""
    return f"{type(err).__name__}: {reason[:160]}".rstrip(": ")


@dataclass
class FlopsCache:
    """GFLOPs per distinct (network options, input size): runs of one network are counted once."""

    counted: dict[tuple[str, tuple[int, int]], Cell] = field(default_factory=dict)

    def gflops(self, network_opt: dict, size: tuple[int, int]) -> Cell:
        """One forward's GFLOPs at input ``size``, with a footnote where it was padded or not counted."""
        key = (json.dumps(network_opt, sort_keys=True, default=str), size)
        if key not in self.counted:
            self.counted[key] = self._count(network_opt, size)
        return self.counted[key]

    @staticmethod
    def _count(network_opt: dict, size: tuple[int, int]) -> Cell:
        arch_type = network_opt.get("type")
        try:
            gflops, counted_size = count_network_gflops(network_opt, size)
        except Exception as err:  # any network, any failure: a footnote, never a crash
            return Cell(None, (f"GFLOPs of {arch_type} not counted: {_failure_text(err)}",))
        notes = ()
        if counted_size != size:
            notes = (
                f"GFLOPs of {arch_type} counted at {size_text(counted_size)} input: the input padded to a "
                f"multiple of window_size {network_opt['window_size']}, as BasicSR tests it",
            )
        return Cell(gflops, notes)

    def of_run(self, run: Run, output_size: tuple[int, int]) -> Cell:
        """One forward of ``run``'s network producing about ``output_size``; a footnote when its record
        lacks the network or the scale."""
        if run.network_opt is None or run.scale is None:
            missing = "network_g" if run.network_opt is None else "scale"
            return Cell(None, (f"GFLOPs of {run.name} not counted: its record has no {missing}",))
        return self.gflops(run.network_opt, input_size(output_size, run.scale))
