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
from .cross_scan import lowrank_delta, to_scan_order
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
    """Autograd wrapper around ``xs_fwd_*`` / ``xs_bwd_*``; shapes as in ``cross_selective_scan_ref``.

    The step sizes come as ``delta``, or (``delta`` None) as the low-rank projection of ``dts`` (batch, K, R, L)
    by ``weight`` (K, dim, R), which the forward computes pixel by pixel (SS2D's case: no (batch, K, dim, L)
    tensor in inference, and only the small ``dts`` kept for the backward, which rebuilds delta).
    """

    @staticmethod
    def forward(ctx, x, delta, dts, weight, A, B, C, D, delta_bias, delta_softplus):
        lib = load_library()
        cdt = compute_dtype(x, B if delta is None else delta, A, B, C)
        sfx = "f64" if cdt == torch.float64 else "f32"
        batch, dim, h, w = x.shape
        K, N, L = A.shape[0] // dim, A.shape[1], h * w
        nthreads = _num_threads(batch, K * dim, L, N)

        # the forward reads x, delta / dts, B, C through strides (no copies of channels-last maps or of
        # projection views); only the pixels must be one dimension and B, C, dts unit-stride along N / R
        x_ = x.detach().to(cdt).flatten(2)  # (batch, dim, L): a view unless H, W cannot merge
        B_, C_ = B.detach().to(cdt), C.detach().to(cdt)
        if N > 1 and (B_.stride(2) != 1 or C_.stride() != B_.stride()):
            B_, C_ = (t.transpose(-1, -2).contiguous().transpose(-1, -2) for t in (B_, C_))
        if delta is not None:
            delta_, dts_, wt, rank = delta.detach().to(cdt), None, None, 0
            dts_strides = (0, 0, 0)
        else:
            delta_, rank = None, dts.shape[2]
            dts_ = dts.detach().to(cdt)
            if rank > 1 and dts_.stride(2) != 1:
                dts_ = dts_.transpose(-1, -2).contiguous().transpose(-1, -2)
            dts_strides = (dts_.stride(0), dts_.stride(1), dts_.stride(3))
            # (K, R, dim) rows, zero-padded to whole blocks of 16 channels: the kernel reads whole blocks
            wt = torch.zeros(K, rank, -(-dim // 16) * 16, dtype=cdt)
            wt[..., :dim] = weight.detach().to(cdt).transpose(1, 2)
        A_, D_, bias_ = _prep(A, cdt), _prep(D, cdt), _prep(delta_bias, cdt)
        channels_last = dim > 1 and x_.stride(1) == 1
        out = torch.empty(batch, h, w, dim, dtype=cdt).permute(0, 3, 1, 2) if channels_last else \
            torch.empty(batch, dim, h, w, dtype=cdt)  # fmt: skip
        out3 = out.flatten(2)
        delta_strides = delta_.stride() if delta_ is not None else (0, 0, 0, 0)
        strides = torch.tensor([*x_.stride(), *delta_strides, B_.stride(0), B_.stride(1), B_.stride(3),
                                *out3.stride(), *dts_strides], dtype=torch.int64)  # fmt: skip
        group = forward_group(batch, dim, nthreads)
        work = torch.empty(nthreads, getattr(lib, f"xs_fwd_work_per_thread_{sfx}")(N, h, group), dtype=cdt)
        getattr(lib, f"xs_fwd_{sfx}")(
            _ptr(x_), _ptr(delta_), _ptr(dts_), _ptr(wt), rank, _ptr(A_), _ptr(B_), _ptr(C_), _ptr(D_), _ptr(bias_),
            _ptr(strides), int(delta_softplus), batch, dim, h, w, N, K, group, _ptr(out), _ptr(work), nthreads,
        )  # fmt: skip
        ctx.save_for_backward(x, delta, dts, weight, A, B, C, D, delta_bias)
        ctx.delta_softplus = delta_softplus
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, gout):
        lib = load_library()
        x, delta, dts, weight, A, B, C, D, delta_bias = ctx.saved_tensors
        lowrank = delta is None
        cdt = compute_dtype(x, B if lowrank else delta, A, B, C)
        sfx = "f64" if cdt == torch.float64 else "f32"
        batch, dim, h, w = x.shape
        K, N, L = A.shape[0] // dim, A.shape[1], h * w
        nthreads = _num_threads(batch, K * dim, L, N)
        parts = _num_parts(batch, 1, dim, nthreads)
        pix = scan_pixels(K, h, w)

        if lowrank:
            delta_ = lowrank_delta(dts.detach().to(cdt), weight.detach().to(cdt)).contiguous()
        else:
            delta_ = _prep(delta, cdt)
        x_, A_ = _prep(x, cdt), _prep(A, cdt)
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
        gdelta_out = gdts = gweight = None
        if not lowrank:
            gdelta_out = gdelta.to(delta.dtype)
        else:
            if ctx.needs_input_grad[2]:
                gdts = torch.einsum("bkdl,kdr->bkrl", gdelta, weight.detach().to(cdt)).to(dts.dtype)
            if ctx.needs_input_grad[3]:
                gweight = torch.einsum("bkdl,bkrl->kdr", gdelta, dts.detach().to(cdt)).to(weight.dtype)
        return (
            gx.to(x.dtype),
            gdelta_out,
            gdts,
            gweight,
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
    return CpuCrossScanFn.apply(x, delta, None, None, A, B, C, D, delta_bias, bool(delta_softplus))


def cross_selective_scan_lowrank_cpu(x, dts, weight, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """:func:`cross_selective_scan_cpu` with the step sizes ``lowrank_delta(dts, weight)`` computed in the kernel."""
    return CpuCrossScanFn.apply(x, None, dts, weight, A, B, C, D, delta_bias, bool(delta_softplus))
