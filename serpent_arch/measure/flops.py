"""FLOP counting for the network benchmark: torch's counter plus the selective scan it cannot see.

What is counted, and how (text for the README):

* Dense ops: :class:`torch.utils.flop_counter.FlopCounterMode`. It counts matrix products and
  convolutions only (``mm``, ``addmm``, ``bmm``, ``baddbmm``, convolutions including grouped and
  depthwise ones, and the fused attention kernels), each multiply-accumulate as 2 FLOPs. The
  GFLOPs we report are the counter's numbers, unscaled.
* The selective scan: ``serpent_arch.ops.selective_scan`` runs in a C kernel, mamba-ssm's CUDA
  kernel or a Python-level recurrence, none of which the counter sees (or, for the pure-torch
  backend, only partly). While counting, SS2D's reference to the op (and to the fused four-direction
  scan, ``cross_selective_scan_lowrank``, counted as the one scan it replaces, its step sizes' low-rank
  projection as the matrix product it is) is replaced by a wrapper that adds :func:`scan_flops` for the
  call's shape and flags (formula below).
* Elementwise ops (additions, activations, LayerNorm, softmax, copies) are not in the counter. As a
  check that they do not change the picture, :class:`ElementwiseEstimate` counts 1 FLOP per output
  element of every pointwise op and 5 per element of LayerNorm / softmax; the benchmark reports
  it beside the main count but never adds it in.

The forward runs on PyTorch's ``meta`` device: shapes propagate, nothing is computed, so counting
SwinIR at 1024x1024 takes a second and the count is exact, not extrapolated.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import FlopCounterMode, flop_registry

import serpent_arch.archs.ss2d as ss2d_module
from serpent_arch.archs import tail
from serpent_arch.ops import cross_scan

# Selective scan cost, in the counter's convention (a multiply-add is 2 FLOPs, exp is 1).
# Per state element (batch b, channel d, step l, state n):
#   dA = exp(dt * A)                 1 mul + 1 exp
#   dBu = dt * B * u                 2 mul   (the kernel may hoist dt * u; we do not assume so)
#   h = dA * h + dBu                 1 mul + 1 add
#   y += C * h                       1 mul + 1 add
SCAN_FLOPS_PER_STATE = 8
# Per channel step (b, d, l), depending on the call's options:
SCAN_FLOPS_DELTA_BIAS = 1  # dt = delta + delta_bias
SCAN_FLOPS_SOFTPLUS = 3  # softplus(dt) = log(1 + exp(dt)): exp, add, log
SCAN_FLOPS_D = 2  # y += D * u
SCAN_FLOPS_GATE = 5  # y *= z * sigmoid(z): sigmoid as exp, add, div; then 2 mul

# Elementwise estimate: FLOPs per output element of ops outside torch's counter.
_NORM_FLOPS_PER_ELEMENT = 5  # mean, variance, subtract, scale, shift (roughly)
_NORM_OPS = {"native_layer_norm", "layer_norm", "_softmax", "softmax", "native_group_norm", "native_batch_norm"}


def scan_flops(
    batch: int,
    dim: int,
    length: int,
    d_state: int,
    *,
    delta_bias: bool = False,
    delta_softplus: bool = False,
    D: bool = False,
    z: bool = False,
) -> int:
    """FLOPs of one selective scan call over (batch, dim, length) channels with state size d_state.

    ``batch * dim * length * (8 * d_state + per_step)`` where per_step adds 1 for ``delta_bias``,
    3 for ``delta_softplus``, 2 for ``D`` and 5 for the gate ``z``; see the constants above.
    """
    per_step = (
        SCAN_FLOPS_PER_STATE * d_state
        + SCAN_FLOPS_DELTA_BIAS * delta_bias
        + SCAN_FLOPS_SOFTPLUS * delta_softplus
        + SCAN_FLOPS_D * D
        + SCAN_FLOPS_GATE * z
    )
    return batch * dim * length * per_step


@dataclass
class FlopCount:
    """FLOPs of one forward pass: counter-visible dense ops, the scan formula, and the estimate."""

    dense: int
    scan: int
    elementwise_estimate: int

    @property
    def total(self) -> int:
        """What the benchmark reports: dense ops (torch's counter) + the selective scan formula."""
        return self.dense + self.scan


class ElementwiseEstimate(TorchDispatchMode):
    """Rough FLOPs of the ops torch's counter ignores (see the module docstring); a sanity check only."""

    def __init__(self) -> None:
        super().__init__()
        self.flops = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func._overloadpacket in flop_registry:
            return out
        name = func._overloadpacket.__name__
        if name in _NORM_OPS:
            per_element = _NORM_FLOPS_PER_ELEMENT
        elif torch.Tag.pointwise in func.tags:
            per_element = 1
        else:  # views, copies, concatenation, padding, indexing: data movement, not arithmetic
            return out
        # layer norm returns (out, mean, rstd): only the first output has the input's size
        first = next((t for t in tree_leaves(out) if isinstance(t, torch.Tensor)), None)
        if first is not None:
            self.flops += per_element * first.numel()
        return out


@contextlib.contextmanager
def count_scan_flops(include: bool = True) -> Iterator[list[int]]:
    """Route SS2D's selective scan calls through a wrapper that tallies :func:`scan_flops`.

    Yields a one-element list holding the running total. On ``meta`` tensors the wrapper returns
    an empty result of the right shape (the values do not matter for counting); on real tensors it
    calls the real op. With ``include=False`` nothing is tallied, for "without the scan" counts.
    """
    real = ss2d_module.selective_scan
    total = [0]

    def counted(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, **kwargs):
        if include:
            batch, dim, length = u.shape
            total[0] += scan_flops(
                batch,
                dim,
                length,
                A.shape[-1],
                delta_bias=delta_bias is not None,
                delta_softplus=bool(delta_softplus),
                D=D is not None,
                z=z is not None,
            )
        if u.is_meta:
            if kwargs.get("return_last_state"):
                return torch.empty_like(u), u.new_empty(u.shape[0], u.shape[1], A.shape[-1])
            return torch.empty_like(u)
        return real(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus, **kwargs)

    def counted_cross(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, **kwargs):
        # the fused four-direction scan (SS2D on backends that have it) does the work of one scan of
        # K * dim channels over the H * W pixels
        if include:
            batch, dim, h, w = x.shape
            total[0] += scan_flops(batch, delta.shape[1] * dim, h * w, A.shape[-1], delta_bias=delta_bias is not None,
                                   delta_softplus=bool(delta_softplus), D=D is not None, z=False)  # fmt: skip
        return cross_scan.cross_selective_scan(x, delta, A, B, C, D=D, delta_bias=delta_bias,
                                               delta_softplus=delta_softplus, **kwargs)  # fmt: skip

    real_lowrank = ss2d_module.cross_selective_scan_lowrank

    def counted_lowrank(x, dts, weight, A, B, C, **kwargs):
        # the step sizes' low-rank projection (computed inside the CPU kernel) counted as the matrix product
        # it is, in the dense FLOPs, then the scan given that product
        return counted_cross(x, cross_scan.lowrank_delta(dts, weight), A, B, C, **kwargs)

    ss2d_module.selective_scan = counted
    ss2d_module.cross_selective_scan_lowrank = counted_lowrank
    try:
        yield total
    finally:
        ss2d_module.selective_scan = real
        ss2d_module.cross_selective_scan_lowrank = real_lowrank


def count_flops(
    model: nn.Module,
    size: int | tuple[int, int],
    *,
    in_chans: int = 3,
    batch: int = 1,
    include_scan: bool = True,
    device: str | torch.device = "meta",
) -> FlopCount:
    """FLOPs of one inference forward of ``model`` on a (batch, in_chans, H, W) input.

    By default a copy of the model is moved to the ``meta`` device so nothing is computed; pass a
    real ``device`` to run the forward for real (used by the tests to check both agree).
    """
    h, w = (size, size) if isinstance(size, int) else size
    device = torch.device(device)
    if device.type == "meta":
        model = copy.deepcopy(model).to(device)
    x = torch.zeros(batch, in_chans, h, w, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), tail.whole(), count_scan_flops(include_scan) as scan_total:
            with FlopCounterMode(display=False) as counter, ElementwiseEstimate() as elementwise:
                model(x)
    finally:
        model.train(was_training)
    return FlopCount(dense=counter.get_total_flops(), scan=scan_total[0], elementwise_estimate=elementwise.flops)
