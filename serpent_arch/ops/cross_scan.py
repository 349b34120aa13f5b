"""The four-direction scan of a 2-D map: cross-scan, selective scan, cross-merge.

:func:`cross_scan` unrolls a (B, D, H, W) map into K sequences (K = 1, 2 or 4), :func:`cross_merge` maps
K sequences back to their pixels and sums them. Direction k reads the pixels in this order:

    k = 0: row-major              k = 2: row-major, reversed
    k = 1: column-major           k = 3: column-major, reversed

(K = 2 uses k = 0 and row-major reversed; K = 1 uses k = 0.)

:func:`cross_selective_scan` is the whole four-direction scan as one operation: the input map is read
once, and every per-direction tensor (step sizes, B, C) is given in the map's own row-major pixel order,
as per-pixel projections of the map produce them, so no direction's copy of anything has to be made
before the scan. :func:`cross_selective_scan_ref` defines it by reordering each direction's tensors,
running :func:`~serpent_arch.ops.selective_scan` and merging; fused kernels are checked against it.
:func:`cross_selective_scan` is the dispatcher: the backends in :data:`FUSED_BACKENDS` run it as one
kernel (``cpu_kernel``: ``_cpu_cross_scan.py``; ``triton``: ``_triton_cross_scan.py``), every other
backend (torch, mamba_ssm, reference, any added later) as the reference composition.
:func:`cross_selective_scan_lowrank` takes the step sizes as SS2D makes them, a low-rank projection
(``dts`` and a weight, :func:`lowrank_delta`): the CPU kernel computes the product as it scans, every other
backend is given it.
"""

from __future__ import annotations

import functools

import torch

from .selective_scan import _autocast_enabled, _fmt, _info_once, resolve_backend, selective_scan

DIRECTIONS = (1, 2, 4)
# backends with a fused four-direction kernel (any other backend runs cross_selective_scan_ref)
FUSED_BACKENDS = ("cpu_kernel", "triton")


def cross_scan(x: torch.Tensor, directions: int) -> torch.Tensor:
    """Unroll (B, D, H, W) into (B, K, D, H*W) sequences, direction k in its own order (module docstring).
    Differentiable; its gradient is :func:`cross_merge`."""
    return _CrossScan.apply(x, directions)


def cross_merge(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`cross_scan`, summing the directions: (B, K, D, H*W) -> (B, D, H, W).
    Differentiable; its gradient is :func:`cross_scan`."""
    return _CrossMerge.apply(y, h, w)


def _scan_plain(x: torch.Tensor, directions: int) -> torch.Tensor:
    """cross_scan without autograd: each direction is written once into the output, no
    intermediate stacks (the autograd of stack / cat / slices zero-filled and copied whole
    (B, K, D, L) tensors several times per call)."""
    b, d, h, w = x.shape
    rows = x.reshape(b, d, h * w)
    if directions == 1:
        return rows.unsqueeze(1).clone()
    out = x.new_empty(b, directions, d, h * w)
    out[:, 0] = rows
    if directions == 2:
        out[:, 1] = rows.flip(-1)
        return out
    out[:, 1].view(b, d, w, h).copy_(x.transpose(-1, -2))
    out[:, 2:] = out[:, :2].flip(-1)
    return out


def _merge_plain(y: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """cross_merge without autograd."""
    b, k, d, length = y.shape
    if k == 1:
        return y[:, 0].reshape(b, d, h, w).clone()
    if k == 2:
        return (y[:, 0] + y[:, 1].flip(-1)).reshape(b, d, h, w)
    both = y[:, :2] + y[:, 2:].flip(-1)
    return both[:, 0].view(b, d, h, w) + both[:, 1].view(b, d, w, h).transpose(-1, -2)


class _CrossScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, directions):
        ctx.hw = x.shape[-2:]
        return _scan_plain(x, directions)

    @staticmethod
    def backward(ctx, grad):
        return _merge_plain(grad, *ctx.hw), None


class _CrossMerge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, y, h, w):
        ctx.directions = y.shape[1]
        return _merge_plain(y, h, w)

    @staticmethod
    def backward(ctx, grad):
        return _scan_plain(grad.contiguous(), ctx.directions), None, None


def to_scan_order(t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Per-direction tensors (B, K, C, H*W) in row-major pixel order -> each direction k in its own
    scan order (module docstring). Differentiable (plain indexing ops)."""
    b, k, c, length = t.shape
    if length != h * w:
        raise ValueError(f"to_scan_order: last dim {length} is not h*w = {h}*{w}.")
    if k == 1:
        return t
    if k == 2:
        return torch.stack([t[:, 0], t[:, 1].flip(-1)], dim=1)
    if k != 4:
        raise ValueError(f"to_scan_order: K must be 1, 2 or 4, got {k}.")
    cols = t[:, 1].reshape(b, c, h, w).transpose(-1, -2).reshape(b, c, length)
    rev_cols = t[:, 3].reshape(b, c, h, w).transpose(-1, -2).reshape(b, c, length).flip(-1)
    return torch.stack([t[:, 0], cols, t[:, 2].flip(-1), rev_cols], dim=1)


def lowrank_delta(dts: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Step sizes from a low-rank projection, as SS2D makes them: ``dts`` (batch, K, R, H*W) in pixel order
    and ``weight`` (K, dim, R) -> (batch, K, dim, H*W),
    ``delta[b, k, c, p] = sum_r weight[k, c, r] dts[b, k, r, p]``."""
    # written over the (batch, L, K, R) view: for SS2D's projections that is their storage, and the product
    # comes out with dim unit-stride (the layout the fused kernels read best)
    return torch.einsum("blkr,kdr->bkdl", dts.permute(0, 3, 1, 2), weight)


def cross_selective_scan_ref(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, backend="reference"):
    """The four-direction scan, defined by its parts. Every fused kernel is tested against this.

    Args:
        x: (batch, dim, H, W) the map; every direction scans the same values, in its own order.
        delta: (batch, K, dim, H*W) each direction's step sizes (before ``delta_bias`` / softplus), in
            row-major pixel order: ``delta[:, k, :, p]`` belongs to pixel p (p = row * W + col).
        A: (K * dim, N) state matrices, direction k's channels at rows k * dim ... (k + 1) * dim - 1.
        B, C: (batch, K, N, H*W) each direction's input / output projections, row-major pixel order.
        D: optional (K * dim,) skip weights; delta_bias: optional (K * dim,).
        delta_softplus: softplus of ``delta + delta_bias``.
        backend: the :func:`selective_scan` backend of the unfused path.

    Returns:
        (batch, dim, H, W): the sum over directions of each direction's output at its pixel.
    """
    b, d, h, w = x.shape
    k = delta.shape[1]
    xs = cross_scan(x, k).reshape(b, k * d, h * w)
    ds = to_scan_order(delta, h, w).reshape(b, k * d, h * w)
    y = selective_scan(xs, ds, A, to_scan_order(B, h, w), to_scan_order(C, h, w), D=D, delta_bias=delta_bias,
                       delta_softplus=delta_softplus, backend=backend)  # fmt: skip
    return cross_merge(y.view(b, k, d, h * w), h, w)


@functools.cache
def _triton_fused():
    """``(cross_selective_scan_triton, "")``, or ``(None, why)`` when its module does not import."""
    try:
        from ._triton_cross_scan import cross_selective_scan_triton
    except ImportError as exc:
        return None, f"{type(exc).__name__}: {exc}"
    return cross_selective_scan_triton, ""


def fused_kernel(backend: str):
    """The fused four-direction kernel of the concrete backend ``backend``, or None (run unfused).
    Only backends in :data:`FUSED_BACKENDS` have one (the benchmark empties it to measure the unfused path)."""
    if backend not in FUSED_BACKENDS:
        return None
    if backend == "cpu_kernel":
        from ._cpu_cross_scan import cross_selective_scan_cpu

        return cross_selective_scan_cpu
    if backend == "triton":
        fn, why = _triton_fused()
        if fn is None:
            _info_once(f"cross_selective_scan: triton has no fused four-direction kernel here ({why}); running unfused")
        return fn
    return None


def fused_backend(backend: str, x: torch.Tensor) -> str | None:
    """The concrete backend ``backend`` resolves to for ``x`` if it runs the four-direction scan fused, else None.

    SS2D asks this to decide whether to project its map in pixel order (fused) or per direction (unfused).
    """
    name = resolve_backend(backend, x)
    return name if fused_kernel(name) is not None else None


def _check_cross_inputs(x, delta, A, B, C, D, delta_bias) -> None:
    if x.ndim != 4:
        raise ValueError(f"cross_selective_scan: `x` must have shape (batch, dim, H, W), got {_fmt(x.shape)}")
    b, d, h, w = x.shape
    k = delta.shape[1] if delta.ndim == 4 else None
    if k not in DIRECTIONS or tuple(delta.shape) != (b, k, d, h * w):
        raise ValueError(f"cross_selective_scan: `delta` must have shape (batch, K, dim, H*W) = ({b}, K, {d}, {h * w}) "
                         f"with K in {DIRECTIONS}, got {_fmt(delta.shape)}")  # fmt: skip
    if A.ndim != 2 or A.shape[0] != k * d:
        raise ValueError(f"cross_selective_scan: `A` must have shape (K*dim, N) = ({k * d}, N), got {_fmt(A.shape)}")
    n = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (b, k, n, h * w):
            raise ValueError(f"cross_selective_scan: `{name}` must have shape (batch, K, N, H*W) = "
                             f"{_fmt((b, k, n, h * w))}, got {_fmt(t.shape)}")  # fmt: skip
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (k * d,):
            raise ValueError(f"cross_selective_scan: `{name}` must have shape (K*dim,) = ({k * d},), "
                             f"got {_fmt(t.shape)}")  # fmt: skip
    for name, t in (("delta", delta), ("A", A), ("B", B), ("C", C), ("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.device != x.device:
            raise ValueError(f"cross_selective_scan: `{name}` is on {t.device} but `x` is on {x.device}")


def cross_selective_scan(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, backend="auto"):
    """The four-direction scan (arguments and result as :func:`cross_selective_scan_ref`), fused where the
    backend has a fused kernel (:data:`FUSED_BACKENDS`), else as the reference composition with ``backend``.

    ``backend`` is resolved by :func:`~serpent_arch.ops.selective_scan.resolve_backend` (same names, same
    errors). Which path ran is logged once per backend and device.
    """
    _check_cross_inputs(x, delta, A, B, C, D, delta_bias)
    name = resolve_backend(backend, x)
    kernel = fused_kernel(name)
    if kernel is None:
        _info_once(f"cross_selective_scan on {x.device}: {name} runs unfused (cross-scan, selective scan, cross-merge)")
        return cross_selective_scan_ref(x, delta, A, B, C, D, delta_bias, delta_softplus, backend=name)
    _info_once(f"cross_selective_scan on {x.device}: fused {name} kernel")
    return _run_fused(kernel, x, (x, delta, A, B, C, D, delta_bias, delta_softplus))


def _run_fused(kernel, x, args):
    if _autocast_enabled(x.device.type):
        # as selective_scan: the scan computes in float32 whatever autocast does around it
        with torch.autocast(x.device.type, enabled=False):
            return kernel(*args)
    return kernel(*args)


def cross_selective_scan_lowrank(x, dts, weight, A, B, C, D=None, delta_bias=None, delta_softplus=True,
                                 backend="auto"):  # fmt: skip
    """:func:`cross_selective_scan` with the step sizes ``delta = lowrank_delta(dts, weight)``: ``dts``
    (batch, K, R, H*W) in pixel order, ``weight`` (K, dim, R). The CPU kernel computes delta pixel by pixel
    as it scans (no (batch, K, dim, H*W) tensor, and the backward keeps only ``dts``); every other backend
    is given the product."""
    b, d, h, w = x.shape
    k = A.shape[0] // max(d, 1)
    if dts.ndim != 4 or dts.shape[:2] != (b, k) or dts.shape[3] != h * w:
        raise ValueError(f"cross_selective_scan_lowrank: `dts` must have shape (batch, K, R, H*W) = ({b}, {k}, R, "
                         f"{h * w}), got {_fmt(dts.shape)}")  # fmt: skip
    if tuple(weight.shape) != (k, d, dts.shape[2]):
        raise ValueError(f"cross_selective_scan_lowrank: `weight` must have shape (K, dim, R) = "
                         f"{_fmt((k, d, dts.shape[2]))}, got {_fmt(weight.shape)}")  # fmt: skip
    name = resolve_backend(backend, x)
    if name != "cpu_kernel" or fused_kernel(name) is None:
        return cross_selective_scan(x, lowrank_delta(dts, weight), A, B, C, D, delta_bias, delta_softplus, backend=name)
    from ._cpu_cross_scan import cross_selective_scan_lowrank_cpu

    # the shapes of delta's check, without delta
    _check_cross_inputs(x, x.new_empty(()).expand(b, k, d, h * w), A, B, C, D, delta_bias)
    _info_once(f"cross_selective_scan on {x.device}: fused {name} kernel, step sizes projected in the kernel")
    return _run_fused(cross_selective_scan_lowrank_cpu, x, (x, dts, weight, A, B, C, D, delta_bias, delta_softplus))
