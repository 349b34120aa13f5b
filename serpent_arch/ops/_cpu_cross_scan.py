"""The fused four-direction scan on the C kernel (``xs_fwd_*`` in ``_cross_scan_body.c``, ``xs_bwd_*`` in
``_cross_scan_bwd_body.c``).

Same semantics as :func:`serpent_arch.ops.cross_scan.cross_selective_scan_ref`: the map x is read
once, each direction k walks its pixels in its own order (cross_scan.py's) and its output is added into
the merged map at those pixels; the gradient of x is summed over directions the same way. Nothing of
size (batch, K, dim, L) is made beyond the caller's delta and its gradient.

Both passes read x, delta (or dts), B, C and the output gradient through their strides (SS2D passes
channels-last maps and views of its projections) and write channels-last gradients where x is
channels-last. In training the forward keeps each direction's state every ``xs_chunk_steps()`` steps
(K N / 32 values per value of x); the backward recomputes one chunk at a time from them, with the
channels as vector lanes. Compute dtype, threads, scratch as torch tensors: as in ``_cpu_kernel``.
"""

from __future__ import annotations

import torch

from ._cpu_kernel import _num_threads, _prep, _ptr, load_library
from .reference import compute_dtype

# most blocks of 16 channels one forward task runs side by side (SS_GMAX in _cross_scan_body.c)
MAX_GROUP = 8


def forward_group(batch: int, dim: int, nthreads: int) -> int:
    """Blocks of 16 channels per forward task: as many as leave every thread a task, at most
    :data:`MAX_GROUP` (a task stages the channels of a pixel in one pass and reads B and C once for all
    its blocks)."""
    blocks = -(-dim // 16)
    return max(1, min(MAX_GROUP, blocks, batch * blocks // max(1, nthreads)))


def _unit_stride_last(t: torch.Tensor, u: torch.Tensor | None, n: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(batch, K, n, L) tensors (B and C, or dts alone) as the kernels read them: unit stride along n, and
    the second with the first's strides (B and C share theirs). Views where they already are."""
    if n > 1 and (t.stride(2) != 1 or (u is not None and u.stride() != t.stride())):
        t = t.transpose(-1, -2).contiguous().transpose(-1, -2)
        u = None if u is None else u.transpose(-1, -2).contiguous().transpose(-1, -2)
    return t, u


def _weight_rows(weight: torch.Tensor, dim: int, dtype: torch.dtype) -> torch.Tensor:
    """The step-size projection's (K, dim, R) weight as the kernels read it: (K, R, dim) rows zero-padded
    to whole blocks of 16 channels."""
    k, _, rank = weight.shape
    wt = torch.zeros(k, rank, -(-dim // 16) * 16, dtype=dtype)
    wt[..., :dim] = weight.detach().to(dtype).transpose(1, 2)
    return wt


def _sum_parts(t: torch.Tensor) -> torch.Tensor:
    """The backward's (batch, parts, ...) partial sums over channel groups, summed (no copy for one part)."""
    return t[:, 0] if t.shape[1] == 1 else t.sum(1)


class CpuCrossScanFn(torch.autograd.Function):
    """Autograd wrapper around ``xs_fwd_*`` / ``xs_bwd_*``; shapes as in ``cross_selective_scan_ref``.

    The step sizes come as ``delta``, or (``delta`` None) as the low-rank projection of ``dts`` (batch, K, R, L)
    by ``weight`` (K, dim, R), which both passes compute pixel by pixel (SS2D's case: no (batch, K, dim, L)
    tensor at all; the backward returns the gradients of ``dts`` and ``weight``). ``grad_enabled`` (the
    caller's grad mode) decides with ``needs_input_grad`` whether the forward keeps the backward's states.
    """

    @staticmethod
    def forward(ctx, x, delta, dts, weight, A, B, C, D, delta_bias, delta_softplus, grad_enabled):
        lib = load_library()
        cdt = compute_dtype(x, B if delta is None else delta, A, B, C)
        sfx = "f64" if cdt == torch.float64 else "f32"
        batch, dim, h, w = x.shape
        K, N, L = A.shape[0] // dim, A.shape[1], h * w
        nthreads = _num_threads(batch, K * dim, L, N)

        # the forward reads x, delta / dts, B, C through strides (no copies of channels-last maps or of
        # projection views); only the pixels must be one dimension and B, C, dts unit-stride along N / R
        x_ = x.detach().to(cdt).flatten(2)  # (batch, dim, L): a view unless H, W cannot merge
        B_, C_ = _unit_stride_last(B.detach().to(cdt), C.detach().to(cdt), N)
        if delta is not None:
            delta_, dts_, wt, rank = delta.detach().to(cdt), None, None, 0
            dts_strides = (0, 0, 0)
        else:
            delta_, rank = None, dts.shape[2]
            dts_ = _unit_stride_last(dts.detach().to(cdt), None, rank)[0]
            dts_strides = (dts_.stride(0), dts_.stride(1), dts_.stride(3))
            wt = _weight_rows(weight, dim, cdt)
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
        # for the backward, the state at every chunk start of every direction (K N / chunk values per value
        # of x): the backward recomputes each chunk from it
        ckpt = None
        if grad_enabled and any(ctx.needs_input_grad):
            chunks = -(-L // getattr(lib, f"xs_chunk_steps_{sfx}")())
            ckpt = torch.empty(batch, K, chunks, -(-dim // 16), N, 16, dtype=cdt)
        getattr(lib, f"xs_fwd_{sfx}")(
            _ptr(x_), _ptr(delta_), _ptr(dts_), _ptr(wt), rank, _ptr(A_), _ptr(B_), _ptr(C_), _ptr(D_), _ptr(bias_),
            _ptr(strides), int(delta_softplus), batch, dim, h, w, N, K, group, _ptr(out), _ptr(ckpt), _ptr(work),
            nthreads,
        )  # fmt: skip
        ctx.save_for_backward(x, delta, dts, weight, A, B, C, D, delta_bias, ckpt)
        ctx.delta_softplus = delta_softplus
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, gout):
        lib = load_library()
        x, delta, dts, weight, A, B, C, D, delta_bias, ckpt = ctx.saved_tensors
        lowrank = delta is None
        cdt = compute_dtype(x, B if lowrank else delta, A, B, C)
        sfx = "f64" if cdt == torch.float64 else "f32"
        batch, dim, h, w = x.shape
        K, N, L = A.shape[0] // dim, A.shape[1], h * w
        nthreads = _num_threads(batch, K * dim, L, N)
        group = forward_group(batch, dim, nthreads)
        parts = -(-dim // (16 * group))

        # read through strides as in the forward: no copies of channels-last maps or projection views
        x_, gout_ = x.detach().to(cdt).flatten(2), gout.to(cdt).flatten(2)
        B_, C_ = _unit_stride_last(B.detach().to(cdt), C.detach().to(cdt), N)
        if lowrank:
            rank, delta_ = dts.shape[2], None
            dts_ = _unit_stride_last(dts.detach().to(cdt), None, rank)[0]
            wt = _weight_rows(weight, dim, cdt)
            dts_strides = (dts_.stride(0), dts_.stride(1), dts_.stride(3))
        else:
            rank, delta_, dts_, wt = 0, delta.detach().to(cdt), None, None
            dts_strides = (0, 0, 0)
        A_, D_, bias_ = _prep(A, cdt), _prep(D, cdt), _prep(delta_bias, cdt)
        channels_last = dim > 1 and x_.stride(1) == 1
        gx = torch.empty(batch, h, w, dim, dtype=cdt).permute(0, 3, 1, 2) if channels_last else \
            torch.empty(batch, dim, h, w, dtype=cdt)  # fmt: skip
        # gdelta channels-last per direction: the kernel writes a pixel's channels in one run
        gdelta = None if lowrank else torch.empty(batch, K, L, dim, dtype=cdt).transpose(2, 3)
        gdts_part = torch.empty(batch, parts, K, L, rank, dtype=cdt) if lowrank else None
        gw_part = torch.empty(batch, K, rank, -(-dim // 16) * 16, dtype=cdt) if lowrank else None
        gA_part = torch.empty(batch, K * dim, N, dtype=cdt)
        gB_part = torch.empty(batch, parts, K, L, N, dtype=cdt)
        gC_part = torch.empty(batch, parts, K, L, N, dtype=cdt)
        gD_part = torch.empty(batch, K * dim, dtype=cdt) if D is not None else None
        gbias_part = torch.empty(batch, K * dim, dtype=cdt) if delta_bias is not None else None
        delta_strides = delta_.stride() if delta_ is not None else (0, 0, 0, 0)
        gdelta_strides = gdelta.stride() if gdelta is not None else (0, 0, 0, 0)
        strides = torch.tensor([*x_.stride(), *delta_strides, B_.stride(0), B_.stride(1), B_.stride(3),
                                *dts_strides, *gout_.stride(), *gx.flatten(2).stride(), *gdelta_strides],
                               dtype=torch.int64)  # fmt: skip
        work = torch.empty(nthreads, getattr(lib, f"xs_bwd_work_per_thread_{sfx}")(N, rank, group), dtype=cdt)
        getattr(lib, f"xs_bwd_{sfx}")(
            _ptr(x_), _ptr(delta_), _ptr(dts_), _ptr(wt), rank, _ptr(A_), _ptr(B_), _ptr(C_), _ptr(D_), _ptr(bias_),
            _ptr(ckpt), _ptr(strides), int(ctx.delta_softplus), batch, dim, h, w, N, K, group,
            _ptr(gout_), _ptr(gx), _ptr(gdelta), _ptr(gdts_part), _ptr(gw_part), _ptr(gA_part), _ptr(gB_part),
            _ptr(gC_part), _ptr(gD_part), _ptr(gbias_part), _ptr(work), nthreads,
        )  # fmt: skip
        # (batch, K, L, N) pixel-order rows -> (batch, K, N, L) views
        gB = _sum_parts(gB_part).transpose(-1, -2)
        gC = _sum_parts(gC_part).transpose(-1, -2)
        gdelta_out = gdts = gweight = None
        if not lowrank:
            gdelta_out = gdelta.to(delta.dtype)
        else:
            if ctx.needs_input_grad[2]:
                gdts = _sum_parts(gdts_part).transpose(-1, -2).to(dts.dtype)
            if ctx.needs_input_grad[3]:
                gweight = gw_part.sum(0)[..., :dim].transpose(1, 2).to(weight.dtype)
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
            None,
        )


def cross_selective_scan_cpu(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """The fused four-direction scan on CPU tensors (shapes: ``cross_selective_scan_ref``).
    Returns (batch, dim, H, W) in x's dtype."""
    return CpuCrossScanFn.apply(x, delta, None, None, A, B, C, D, delta_bias, bool(delta_softplus),
                                torch.is_grad_enabled())


def cross_selective_scan_lowrank_cpu(x, dts, weight, A, B, C, D=None, delta_bias=None, delta_softplus=True):
    """:func:`cross_selective_scan_cpu` with the step sizes ``lowrank_delta(dts, weight)`` computed in the kernel."""
    return CpuCrossScanFn.apply(x, None, dts, weight, A, B, C, D, delta_bias, bool(delta_softplus),
                                torch.is_grad_enabled())
