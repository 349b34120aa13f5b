"""The fused four-direction scan on the C kernel (``xs_fwd_*`` / ``xs_bwd_*`` in ``_cross_scan_body.c``).

Same semantics as :func:`serpent_arch.ops.cross_scan.cross_selective_scan_ref`: the map x is read
once, each direction k walks its pixels in its own order (:func:`scan_pixels`) and its output is
added into the merged map at those pixels; the gradient of x is summed over directions the same way.
Nothing of size (batch, K, dim, L) is made beyond the caller's delta and its gradient.

The forward reads x, delta, B and C through their strides (SS2D passes channels-last maps and
views of its projections); the backward copies B and C into each direction's step order, (batch, K,
L, N), so that its per-step reads of them run with unit stride (read through a table of rows, the
same walk ran 5x slower). Compute dtype, threads, scratch as torch tensors: as in ``_cpu_kernel``.
"""

from __future__ import annotations

import functools

import torch

from ._cpu_kernel import _num_parts, _num_threads, _prep, _ptr, load_library
from .cross_scan import to_scan_order
from .reference import compute_dtype

# most blocks of 16 channels one forward task runs side by side (SS_GMAX in _cross_scan_body.c)
MAX_GROUP = 8


def forward_group(batch: int, dim: int, nthreads: int) -> int:
    """Blocks of 16 channels per forward task: as many as leave every thread a task, at most
    :data:`MAX_GROUP` (a task stages the channels of a pixel in one pass and reads B and C once for all
    its blocks)."""
    blocks = -(-dim // 16)
    return max(1, min(MAX_GROUP, blocks, batch * blocks // max(1, nthreads)))


@functools.lru_cache(maxsize=32)
def scan_pixels(directions: int, h: int, w: int) -> torch.Tensor:
    """(K, H*W) int32: ``[k, t]`` is the row-major pixel index direction k visits at step t.

    k = 0 row-major, 1 column-major, 2 and 3 the same reversed (K = 2: row-major and its reverse),
    the order of :func:`serpent_arch.ops.cross_scan.cross_scan`.
    """
    rows = torch.arange(h * w, dtype=torch.int32)
    cols = rows.view(h, w).t().reshape(-1)
    orders = {1: [rows], 2: [rows, rows.flip(0)], 4: [rows, cols, rows.flip(0), cols.flip(0)]}[directions]
    return torch.stack(orders).contiguous()


def _scan_order_rows(t: torch.Tensor, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
    """(batch, K, N, H*W) in pixel order -> contiguous (batch, K, H*W, N), direction k's rows in its own step
    order (for the backward, whose per-step reads of B and C then run with unit stride)."""
    return to_scan_order(t.detach().to(dtype), h, w).transpose(-1, -2).contiguous()


def _pixel_order(g: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_scan_order_rows` (for the gradients): (batch, K, H*W, N) -> (batch, K, N, H*W)."""
    b, k, length, n = g.shape
    g = g.transpose(-1, -2)
    if k == 1:
        return g
    flipped = [1] if k == 2 else [2, 3]
    out = g.clone()
    out[:, flipped] = g[:, flipped].flip(-1)
    if k == 4:
        out[:, 1::2] = out[:, 1::2].reshape(b, 2, n, w, h).transpose(-1, -2).reshape(b, 2, n, length)
    return out


class CpuCrossScanFn(torch.autograd.Function):
    """Autograd wrapper around ``xs_fwd_*`` / ``xs_bwd_*``; shapes as in ``cross_selective_scan_ref``."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, D, delta_bias, delta_softplus):
        lib = load_library()
        cdt = compute_dtype(x, delta, A, B, C)
        sfx = "f64" if cdt == torch.float64 else "f32"
        batch, dim, h, w = x.shape
        K, N, L = delta.shape[1], A.shape[1], h * w
        nthreads = _num_threads(batch, K * dim, L, N)

        # the forward reads x, delta, B, C through strides (no copies of channels-last maps or of
        # projection views); only the pixels must be one dimension and B, C unit-stride along N
        x_ = x.detach().to(cdt).flatten(2)  # (batch, dim, L): a view unless H, W cannot merge
        delta_ = delta.detach().to(cdt)
        B_, C_ = B.detach().to(cdt), C.detach().to(cdt)
        if N > 1 and (B_.stride(2) != 1 or C_.stride() != B_.stride()):
            B_, C_ = (t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in (B_, C_))
        A_, D_, bias_ = _prep(A, cdt), _prep(D, cdt), _prep(delta_bias, cdt)
        channels_last = dim > 1 and x_.stride(1) == 1
        out = torch.empty(batch, h, w, dim, dtype=cdt).permute(0, 3, 1, 2) if channels_last else \
            torch.empty(batch, dim, h, w, dtype=cdt)  # fmt: skip
        out3 = out.flatten(2)
        strides = torch.tensor([*x_.stride(), *delta_.stride(), B_.stride(0), B_.stride(1), B_.stride(3),
                                *out3.stride()], dtype=torch.int64)  # fmt: skip
        group = forward_group(batch, dim, nthreads)
        work = torch.empty(nthreads, getattr(lib, f"xs_fwd_work_per_thread_{sfx}")(N, h, group), dtype=cdt)
        getattr(lib, f"xs_fwd_{sfx}")(
            _ptr(x_), _ptr(delta_), _ptr(A_), _ptr(B_), _ptr(C_), _ptr(D_), _ptr(bias_), _ptr(strides),
            int(delta_softplus), batch, dim, h, w, N, K, group, _ptr(out), _ptr(work), nthreads,
        )  # fmt: skip
        ctx.save_for_backward(x, delta, A, B, C, D, delta_bias)
        ctx.delta_softplus = delta_softplus
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, gout):
        lib = load_library()
        x, delta, A, B, C, D, delta_bias = ctx.saved_tensors
        cdt = compute_dtype(x, delta, A, B, C)
        sfx = "f64" if cdt == torch.float64 else "f32"
        batch, dim, h, w = x.shape
        K, N, L = delta.shape[1], A.shape[1], h * w
        nthreads = _num_threads(batch, K * dim, L, N)
        parts = _num_parts(batch, 1, dim, nthreads)
        pix = scan_pixels(K, h, w)

        x_, delta_, A_ = _prep(x, cdt), _prep(delta, cdt), _prep(A, cdt)
        D_, bias_ = _prep(D, cdt), _prep(delta_bias, cdt)
        Bt, Ct = _scan_order_rows(B, h, w, cdt), _scan_order_rows(C, h, w, cdt)
        gout_ = _prep(gout, cdt)

        gx = torch.empty(batch, dim, h, w, dtype=cdt)
        gdelta = torch.empty(batch, K, dim, L, dtype=cdt)
        gA_part = torch.empty(batch, K * dim, N, dtype=cdt)
        gB_part = torch.zeros(batch, parts, K, L, N, dtype=cdt)
        gC_part = torch.zeros(batch, parts, K, L, N, dtype=cdt)
        gD_part = torch.empty(batch, K * dim, dtype=cdt) if D is not None else None
        gbias_part = torch.empty(batch, K * dim, dtype=cdt) if delta_bias is not None else None
        work = torch.empty(nthreads, getattr(lib, f"xs_bwd_work_per_thread_{sfx}")(L, N), dtype=cdt)
        getattr(lib, f"xs_bwd_{sfx}")(
            _ptr(x_), _ptr(delta_), _ptr(A_), _ptr(Bt), _ptr(Ct), _ptr(D_), _ptr(bias_), _ptr(pix),
            int(ctx.delta_softplus), batch, dim, L, N, K, parts,
            _ptr(gout_), _ptr(gx), _ptr(gdelta), _ptr(gA_part), _ptr(gB_part), _ptr(gC_part),
            _ptr(gD_part), _ptr(gbias_part), _ptr(work), nthreads,
        )  # fmt: skip
        gB = _pixel_order(gB_part.sum(1), h, w)
        gC = _pixel_order(gC_part.sum(1), h, w)
        return (
            gx.to(x.dtype),
            gdelta.to(delta.dtype),
            gA_part.sum(0).to(A.dtype),
            gB.to(B.dtype),
            gC.to(C.dtype),
            None if D is None else gD_part.sum(0).to(D.dtype),
            None if delta_bias is None else gbias_part.sum(0).to(delta_bias.dtype),
            None,
        )


def cross_selective_scan_cpu(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """The fused four-direction scan on CPU tensors (shapes: ``cross_selective_scan_ref``).
    Returns (batch, dim, H, W) in x's dtype."""
    return CpuCrossScanFn.apply(x, delta, A, B, C, D, delta_bias, bool(delta_softplus))
