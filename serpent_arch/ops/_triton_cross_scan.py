"""The four-direction selective scan fused in Triton: ``cross_selective_scan_triton``.

Same operation as :func:`serpent_arch.ops.cross_scan.cross_selective_scan_ref` (its docstring holds the
contract): the (batch, dim, H, W) map is scanned in K = 1, 2 or 4 pixel orders and the directions' outputs
are summed at their pixels. No direction's copy of anything is made: a kernel reads direction k's step t
at its pixel p_k(t) (row-major, column-major, and both reversed) straight from the map and from the
per-direction tensors, which stay in row-major pixel order, and adds its output into the merged map.

Layout of the work: one program per (batch, block of ``BLOCK_D`` channels) walks the K directions one
after the other, each along its scan order in chunks of ``CHUNK`` steps exactly as the one-direction
kernels of ``_triton_scan.py`` do (whose per-chunk device functions these kernels call). Summing the
directions therefore needs no atomics: the program that adds direction k's output into a pixel is the one
that wrote directions 0 ... k-1 there, and a barrier between directions makes those writes visible to all
its threads. The sum is taken in a fixed order (k = 0, 1, 2, 3) in float32, so the output is bitwise
reproducible; the alternative, K times the programs each adding its direction with ``atomic_add``, would
make the merged output (and the gradient of the map) depend on the order the programs ran in. To keep
the GPU as busy as the unfused path, the default block holds K times fewer channels than the one-direction
kernel's (4 // K): as many programs, each with as much work. ``split_directions=True`` is the knob for
launches too small to fill a GPU even so (batch 1, few channels): each direction gets its own programs
and its own float32 slot of a (batch, K, dim, H*W) buffer, which torch sums over K (a fixed order still,
at the cost of that buffer).

Backward: the same program walks the directions again, each chunk in reverse from the forward's
per-direction checkpoints, and sums the map's gradient over directions in place the same way. The
gradients of the per-direction tensors are written at the pixels they came from, so they come out in
row-major pixel order. As in the one-direction kernel, gB and gC (summed over the channels of a direction,
across programs) go through float32 ``atomic_add``, and gA, gD, g_delta_bias are per-batch partial sums
added by torch.

Arithmetic is float32 whatever the input dtype (float16 / bfloat16 / float32); the output is summed in
float32 and rounded once to x's dtype; gradients have their inputs' dtypes. float64 is not supported.
Under ``TRITON_INTERPRET=1`` (set before triton's first import) the kernels run on CPU tensors, slowly.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from . import _triton_scan
from ._triton_scan import (
    DEFAULT_BLOCK_D,
    DEFAULT_CHUNK,
    DEFAULT_NUM_WARPS,
    _chunk_adjoint,
    _chunk_input_grads,
    _chunk_states,
    _last_state,
    _load_dt,
    _tiles,
)


@triton.jit
def _direction(k, K: tl.constexpr):
    """(reversed, column_major) of direction k out of K (see serpent_arch.ops.cross_scan)."""
    return (2 * k >= K) & (K > 1), (K == 4) & (k % 2 == 1)


@triton.jit
def _pixel(t, reverse, column_major, H, W):
    """(row, col) of the pixel that a direction visits at step t (padded steps t >= H*W give garbage,
    which the callers mask)."""
    s = tl.where(reverse, H * W - 1 - t, t)
    row = tl.where(column_major, s % H, s // W)
    col = tl.where(column_major, s // H, s % W)
    return row, col


@triton.jit
def _directions_of_program(sum_ptr, b, d, dim, L, K: tl.constexpr, SPLIT: tl.constexpr):
    """(first, end, rows): the directions this program scans and the rows of its channels in the buffer
    where they are summed (SPLIT: one direction per program along grid axis 1, each with its own slot)."""
    if SPLIT:
        k = tl.program_id(1)
        return k, k + 1, sum_ptr + ((b * K + k) * dim + d[:, None]) * L
    else:
        return 0, K, sum_ptr + (b * dim + d[:, None]) * L


@triton.jit
def _cross_scan_fwd_kernel(
    x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, out_ptr, ckpt_ptr,
    dim, H, W, N,
    s_xb, s_xd, s_xh, s_xw, s_db, s_dk, s_dd, s_dl, s_Bb, s_Bk, s_Bn, s_Bl, s_Cb, s_Ck, s_Cn, s_Cl,
    K: tl.constexpr, SPLIT: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_CKPT: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Grid (batch * cdiv(dim, BLOCK_D), K if SPLIT else 1). out: contiguous (batch, dim, H*W) float32, the
    merged map (SPLIT: (batch, K, dim, H*W), one direction each, summed by the caller); ckpt:
    (batch, K, nchunks, dim, N) float32, each direction's state before each of its chunks."""
    n_dblocks = tl.cdiv(dim, BLOCK_D)
    b = (tl.program_id(0) // n_dblocks).to(tl.int64)
    d = (tl.program_id(0) % n_dblocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < dim
    d = d.to(tl.int64)
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    i = tl.arange(0, CHUNK)
    dn_mask = d_mask[:, None] & n_mask[None, :]
    L = H * W
    nchunks = tl.cdiv(L, CHUNK)
    x_rows = x_ptr + b * s_xb + d[:, None] * s_xd
    k_first, k_end, out_rows = _directions_of_program(out_ptr, b, d, dim, L, K, SPLIT)

    for k in range(k_first, k_end):
        reverse, column_major = _direction(k, K)
        kd = k * dim + d  # direction k's channels in A, D, delta_bias
        A = tl.load(A_ptr + kd[:, None] * N + n[None, :], mask=dn_mask, other=0.0)
        bias = tl.load(bias_ptr + kd, mask=d_mask, other=0.0) if HAS_BIAS else None
        Dv = tl.load(D_ptr + kd, mask=d_mask, other=0.0) if HAS_D else None
        delta_rows = delta_ptr + b * s_db + k * s_dk + d[:, None] * s_dd
        B_rows = B_ptr + b * s_Bb + k * s_Bk + n[:, None] * s_Bn
        C_rows = C_ptr + b * s_Cb + k * s_Ck + n[:, None] * s_Cn
        ckpt_k = ckpt_ptr + (b * K + k) * nchunks * dim * N + d[:, None] * N + n[None, :]
        # direction k - 1 wrote the pixels that this one adds to, from other threads of the program
        tl.debug_barrier()
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        for c in range(0, nchunks):
            t = c * CHUNK + i
            t_mask = t < L
            dt_mask = d_mask[:, None] & t_mask[None, :]
            nt_mask = n_mask[:, None] & t_mask[None, :]
            row, col = _pixel(t, reverse, column_major, H, W)
            p = row * W + col
            if SAVE_CKPT:
                tl.store(ckpt_k + c * dim * N, h, mask=dn_mask)
            u = tl.load(x_rows + (row * s_xh + col * s_xw)[None, :], mask=dt_mask, other=0.0).to(tl.float32)
            _, dt = _load_dt(delta_rows + p[None, :] * s_dl, dt_mask, bias, HAS_BIAS, SOFTPLUS)
            Bt = tl.load(B_rows + p[None, :] * s_Bl, mask=nt_mask, other=0.0).to(tl.float32)
            Ct = tl.load(C_rows + p[None, :] * s_Cl, mask=nt_mask, other=0.0).to(tl.float32)
            _, _, hs = _chunk_states(h, dt, u, A, Bt)
            y = tl.sum(hs * Ct[None, :, :], axis=1)  # (BLOCK_D, CHUNK)
            if HAS_D:
                y += Dv[:, None] * u
            # every direction visits every pixel once: the first writes it, the others add
            y += tl.load(out_rows + p[None, :], mask=dt_mask & (k > k_first), other=0.0)
            tl.store(out_rows + p[None, :], y, mask=dt_mask)
            h = _last_state(hs, i, CHUNK)


@triton.jit
def _cross_scan_bwd_kernel(
    x_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, gout_ptr, ckpt_ptr,
    gx_ptr, gdelta_ptr, gB_ptr, gC_ptr, gA_ptr, gD_ptr, gbias_ptr,
    dim, H, W, N,
    s_xb, s_xd, s_xh, s_xw, s_db, s_dk, s_dd, s_dl, s_Bb, s_Bk, s_Bn, s_Bl, s_Cb, s_Ck, s_Cn, s_Cl,
    s_gb, s_gd, s_gh, s_gw,
    K: tl.constexpr, SPLIT: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Grid as the forward. gx: contiguous (batch, dim, H*W) float32 (summed over directions here; SPLIT:
    (batch, K, dim, H*W));
    gdelta: contiguous (batch, K, dim, H*W) in delta's dtype; gB, gC: zeroed contiguous (batch, K, N, H*W)
    float32 (accumulated atomically over channel blocks); gA: (batch, K*dim, N), gD, gbias: (batch, K*dim)
    float32 per-batch partial sums."""
    n_dblocks = tl.cdiv(dim, BLOCK_D)
    b = (tl.program_id(0) // n_dblocks).to(tl.int64)
    d = (tl.program_id(0) % n_dblocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d < dim
    d = d.to(tl.int64)
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    i = tl.arange(0, CHUNK)
    dn_mask = d_mask[:, None] & n_mask[None, :]
    L = H * W
    nchunks = tl.cdiv(L, CHUNK)
    x_rows = x_ptr + b * s_xb + d[:, None] * s_xd
    gout_rows = gout_ptr + b * s_gb + d[:, None] * s_gd
    k_first, k_end, gx_rows = _directions_of_program(gx_ptr, b, d, dim, L, K, SPLIT)

    for k in range(k_first, k_end):
        reverse, column_major = _direction(k, K)
        kd = k * dim + d
        A = tl.load(A_ptr + kd[:, None] * N + n[None, :], mask=dn_mask, other=0.0)
        bias = tl.load(bias_ptr + kd, mask=d_mask, other=0.0) if HAS_BIAS else None
        Dv = tl.load(D_ptr + kd, mask=d_mask, other=0.0) if HAS_D else None
        delta_rows = delta_ptr + b * s_db + k * s_dk + d[:, None] * s_dd
        B_rows = B_ptr + b * s_Bb + k * s_Bk + n[:, None] * s_Bn
        C_rows = C_ptr + b * s_Cb + k * s_Ck + n[:, None] * s_Cn
        ckpt_k = ckpt_ptr + (b * K + k) * nchunks * dim * N + d[:, None] * N + n[None, :]
        gdelta_rows = gdelta_ptr + ((b * K + k) * dim + d[:, None]) * L
        gBC_rows = ((b * K + k) * N + n[:, None]) * L
        tl.debug_barrier()  # as in the forward: gx of direction k - 1 visible to every thread

        carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # dA_e gh_e from the chunk after
        gA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        gD = tl.zeros((BLOCK_D,), dtype=tl.float32)
        gbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
        for rc in range(0, nchunks):
            c = nchunks - 1 - rc
            t = c * CHUNK + i
            t_mask = t < L
            dt_mask = d_mask[:, None] & t_mask[None, :]
            nt_mask = n_mask[:, None] & t_mask[None, :]
            row, col = _pixel(t, reverse, column_major, H, W)
            p = row * W + col
            u = tl.load(x_rows + (row * s_xh + col * s_xw)[None, :], mask=dt_mask, other=0.0).to(tl.float32)
            pre, dt = _load_dt(delta_rows + p[None, :] * s_dl, dt_mask, bias, HAS_BIAS, SOFTPLUS)
            Bt = tl.load(B_rows + p[None, :] * s_Bl, mask=nt_mask, other=0.0).to(tl.float32)
            Ct = tl.load(C_rows + p[None, :] * s_Cl, mask=nt_mask, other=0.0).to(tl.float32)
            h0 = tl.load(ckpt_k + c * dim * N, mask=dn_mask, other=0.0)
            dA, dBu, hs = _chunk_states(h0, dt, u, A, Bt)
            # the merged map's gradient is every direction's output gradient, each at its own pixel
            gy = tl.load(gout_rows + (row * s_gh + col * s_gw)[None, :], mask=dt_mask, other=0.0).to(tl.float32)
            if HAS_D:
                gD += tl.sum(gy * u, axis=1)

            # dA at the next step of this direction's order (its pixel, recomputed from delta there)
            row_n, col_n = _pixel(t + 1, reverse, column_major, H, W)
            nxt_mask = d_mask[:, None] & ((i + 1 < CHUNK) & (t + 1 < L))[None, :]
            _, dt_next = _load_dt(delta_rows + (row_n * W + col_n)[None, :] * s_dl, nxt_mask, bias, HAS_BIAS,
                                  SOFTPLUS)  # fmt: skip
            dA_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
            gh, carry = _chunk_adjoint(gy, Ct, dA, dA_next, carry, i)

            gC = tl.sum(gy[:, None, :] * hs, axis=0)  # (BLOCK_N, CHUNK)
            tl.atomic_add(gC_ptr + gBC_rows + p[None, :], gC, mask=nt_mask, sem="relaxed")
            gB = tl.sum(gh * (dt * u)[:, None, :], axis=0)
            tl.atomic_add(gB_ptr + gBC_rows + p[None, :], gB, mask=nt_mask, sem="relaxed")

            gA_chunk, gu, gdt = _chunk_input_grads(gh, hs, dBu, dt, u, pre, A, Bt, dt_mask, SOFTPLUS)
            gA += gA_chunk
            if HAS_D:
                gu += gy * Dv[:, None]
            gu += tl.load(gx_rows + p[None, :], mask=dt_mask & (k > k_first), other=0.0)
            tl.store(gx_rows + p[None, :], gu, mask=dt_mask)
            tl.store(gdelta_rows + p[None, :], gdt.to(gdelta_ptr.dtype.element_ty), mask=dt_mask)
            if HAS_BIAS:
                gbias += tl.sum(gdt, axis=1)

        state_offs = (b * K * dim + kd[:, None]) * N + n[None, :]
        tl.store(gA_ptr + state_offs, gA, mask=dn_mask)
        if HAS_D:
            tl.store(gD_ptr + b * K * dim + kd, gD, mask=d_mask)
        if HAS_BIAS:
            tl.store(gbias_ptr + b * K * dim + kd, gbias, mask=d_mask)


def _fmt(shape) -> str:
    return str(tuple(int(s) for s in shape))


def _check_inputs(x, delta, A, B, C, D, delta_bias) -> tuple[int, int, int, int, int, int]:
    """Shapes, dtypes and devices of the contract; returns (batch, dim, H, W, K, N)."""
    named = {"x": x, "delta": delta, "A": A, "B": B, "C": C, "D": D, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None and name in ("D", "delta_bias"):
            continue
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"cross_selective_scan (triton): `{name}` must be a floating-point tensor")
        if t.dtype == torch.float64:
            raise TypeError(f"cross_selective_scan (triton): `{name}` is float64; the kernels compute in float32")
        if t.device != x.device:
            raise ValueError(f"cross_selective_scan (triton): `{name}` is on {t.device} but `x` is on {x.device}")
    if x.ndim != 4:
        raise ValueError(f"cross_selective_scan (triton): `x` must be (batch, dim, H, W), got {_fmt(x.shape)}")
    batch, dim, H, W = x.shape
    if delta.ndim != 4 or delta.shape[1] not in (1, 2, 4) or tuple(delta.shape) != (batch, delta.shape[1], dim, H * W):
        raise ValueError(f"cross_selective_scan (triton): `delta` must be (batch, K, dim, H*W) = ({batch}, K, {dim}, "
                         f"{H * W}) with K in (1, 2, 4), got {_fmt(delta.shape)}")  # fmt: skip
    K = delta.shape[1]
    if A.ndim != 2 or A.shape[0] != K * dim or A.shape[1] < 1:
        raise ValueError(f"cross_selective_scan (triton): `A` must be (K*dim, N) = ({K * dim}, N), got {_fmt(A.shape)}")
    N = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if tuple(t.shape) != (batch, K, N, H * W):
            raise ValueError(f"cross_selective_scan (triton): `{name}` must be (batch, K, N, H*W) = "
                             f"{_fmt((batch, K, N, H * W))}, got {_fmt(t.shape)}")  # fmt: skip
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (K * dim,):
            raise ValueError(f"cross_selective_scan (triton): `{name}` must be (K*dim,) = ({K * dim},), "
                             f"got {_fmt(t.shape)}")  # fmt: skip
    return batch, dim, H, W, K, N


class TritonCrossScanFn(torch.autograd.Function):
    """``config`` is (block_d, chunk, num_warps, split_directions)."""

    @staticmethod
    def forward(ctx, x, delta, A, B, C, D, delta_bias, delta_softplus, config):
        batch, dim, H, W = x.shape
        K, N, L = delta.shape[1], A.shape[1], H * W
        block_d, chunk, num_warps, split = config
        BLOCK_D, BLOCK_N, CHUNK = _tiles(dim, N, block_d, chunk)
        nchunks = triton.cdiv(L, CHUNK)
        save_ckpt = any(ctx.needs_input_grad)
        f32 = {"dtype": torch.float32, "device": x.device}
        A32 = A.float().contiguous()
        D32 = None if D is None else D.float().contiguous()
        bias32 = None if delta_bias is None else delta_bias.float().contiguous()
        # the sum over directions (split: each direction's slot, summed below), rounded to x's dtype after
        out = torch.empty((batch, K, dim, L) if split else (batch, dim, L), **f32)
        ckpt = torch.empty((batch, K, nchunks, dim, N), **f32) if save_ckpt else None
        grid = (batch * triton.cdiv(dim, BLOCK_D), K if split else 1)
        # unused optional pointers get a real tensor: the kernel never reads them (constexpr flags)
        _cross_scan_fwd_kernel[grid](
            x, delta, A32, B, C, D32 if D is not None else A32, bias32 if delta_bias is not None else A32,
            out, ckpt if ckpt is not None else out,
            dim, H, W, N,
            *x.stride(), *delta.stride(), *B.stride(), *C.stride(),
            K=K, SPLIT=split, HAS_D=D is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus), SAVE_CKPT=save_ckpt, BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, CHUNK=CHUNK,
            num_warps=num_warps,
        )  # fmt: skip
        ctx.save_for_backward(x, delta, A, B, C, D, delta_bias, ckpt)
        ctx.delta_softplus = bool(delta_softplus)
        ctx.tiles = (BLOCK_D, BLOCK_N, CHUNK, num_warps, split)
        if split:
            out = out.sum(1)
        return out.view(batch, dim, H, W).to(x.dtype)

    @staticmethod
    def backward(ctx, gout):
        x, delta, A, B, C, D, delta_bias, ckpt = ctx.saved_tensors
        BLOCK_D, BLOCK_N, CHUNK, num_warps, split = ctx.tiles
        batch, dim, H, W = x.shape
        K, N, L = delta.shape[1], A.shape[1], H * W
        f32 = {"dtype": torch.float32, "device": x.device}
        A32 = A.float().contiguous()
        D32 = None if D is None else D.float().contiguous()
        bias32 = None if delta_bias is None else delta_bias.float().contiguous()
        gx = torch.empty((batch, K, dim, L) if split else (batch, dim, L), **f32)
        gdelta = torch.empty((batch, K, dim, L), dtype=delta.dtype, device=x.device)
        gB = torch.zeros((batch, K, N, L), **f32)
        gC = torch.zeros((batch, K, N, L), **f32)
        gA = torch.empty((batch, K * dim, N), **f32)
        gD = None if D is None else torch.empty((batch, K * dim), **f32)
        gbias = None if delta_bias is None else torch.empty((batch, K * dim), **f32)
        grid = (batch * triton.cdiv(dim, BLOCK_D), K if split else 1)
        _cross_scan_bwd_kernel[grid](
            x, delta, A32, B, C, D32 if D is not None else A32, bias32 if delta_bias is not None else A32,
            gout, ckpt, gx, gdelta, gB, gC, gA, gD if gD is not None else gA, gbias if gbias is not None else gA,
            dim, H, W, N,
            *x.stride(), *delta.stride(), *B.stride(), *C.stride(), *gout.stride(),
            K=K, SPLIT=split, HAS_D=D is not None, HAS_BIAS=delta_bias is not None, SOFTPLUS=ctx.delta_softplus,
            BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, CHUNK=CHUNK, num_warps=num_warps,
        )  # fmt: skip
        if split:
            gx = gx.sum(1)
        return (
            gx.view(batch, dim, H, W).to(x.dtype),
            gdelta,
            gA.sum(0).to(A.dtype),
            gB.to(B.dtype),
            gC.to(C.dtype),
            None if D is None else gD.sum(0).to(D.dtype),
            None if delta_bias is None else gbias.sum(0).to(delta_bias.dtype),
            None,
            None,
        )


def default_block_d(directions: int, split_directions: bool = False) -> int:
    """Channels per program such that a launch has as many programs, each with as much work, as the
    one-direction kernel (``DEFAULT_BLOCK_D`` channels) on the unfused (batch, K*dim, L) scan:
    ``DEFAULT_BLOCK_D // K`` channels walking K directions, or ``DEFAULT_BLOCK_D`` with split directions."""
    return DEFAULT_BLOCK_D if split_directions else max(1, DEFAULT_BLOCK_D // directions)


def cross_selective_scan_triton(x, delta, A, B, C, D=None, delta_bias=None, delta_softplus=True, block_d=None,
                                chunk=DEFAULT_CHUNK, num_warps=DEFAULT_NUM_WARPS, split_directions=False):  # fmt: skip
    """The four-direction selective scan in Triton, forward and backward (module docstring).

    Args:
        x: (batch, dim, H, W) the map, read by every direction.
        delta: (batch, K, dim, H*W) step sizes (before ``delta_bias`` / softplus), row-major pixel order.
        A: (K*dim, N); B, C: (batch, K, N, H*W) row-major pixel order; D, delta_bias: optional (K*dim,).
        delta_softplus: softplus of ``delta + delta_bias``.
        block_d: channels per program (default: :func:`default_block_d`); ``chunk``: steps per scan tile;
            ``num_warps``: tuning knobs as in :func:`~serpent_arch.ops._triton_scan.selective_scan_triton`.
        split_directions: a tuning knob too: each direction scanned by its own programs (K times as many,
            for launches too small to fill the GPU), into its own float32 slot of a (batch, K, dim, H*W)
            buffer that torch then sums over K, in a fixed order (so still reproducible). Default off: one
            program sums its directions in place, no extra buffer.

    Returns:
        (batch, dim, H, W) in x's dtype: the sum over directions of each direction's output at its pixel.
    """
    _check_inputs(x, delta, A, B, C, D, delta_bias)
    if block_d is None:
        block_d = default_block_d(delta.shape[1], split_directions)
    for name, value in (("block_d", block_d), ("chunk", chunk), ("num_warps", num_warps)):
        if int(value) < 1:
            raise ValueError(f"cross_selective_scan (triton): {name} must be >= 1, got {value}")
    config = (int(block_d), int(chunk), int(num_warps), bool(split_directions))
    return TritonCrossScanFn.apply(x, delta, A, B, C, D, delta_bias, bool(delta_softplus), config)


@functools.cache
def _probe(device: torch.device) -> tuple[bool, str]:
    """Run the fused forward + backward once on a tiny map on ``device`` and compare with the unfused
    reference (two chunks per direction, a partial one, every optional input)."""
    from .cross_scan import cross_selective_scan_ref

    gen = torch.Generator().manual_seed(0)
    shapes = {"x": (1, 2, 3, 5), "delta": (1, 4, 2, 15), "A": (8, 2), "B": (1, 4, 2, 15), "C": (1, 4, 2, 15),
              "D": (8,), "delta_bias": (8,)}  # fmt: skip
    try:
        inputs = {name: torch.randn(shape, generator=gen).to(device) for name, shape in shapes.items()}
        inputs["A"] = -inputs["A"].abs()
        fast = {name: v.clone().requires_grad_() for name, v in inputs.items()}
        out = cross_selective_scan_triton(**fast, chunk=8)
        out.sum().backward()
        ref = {name: v.clone().requires_grad_() for name, v in inputs.items()}
        ref_out = cross_selective_scan_ref(**ref, backend="reference")
        ref_out.sum().backward()
    except Exception as exc:  # compiler, driver or launch failure: report it, the caller runs unfused
        return False, f"the fused Triton kernels failed on {device}: {type(exc).__name__}: {exc}"
    pairs = [("out", out, ref_out)] + [(f"grad {name}", fast[name].grad, ref[name].grad) for name in inputs]
    for name, got, want in pairs:
        if not (got - want).abs().max().item() <= 1e-3 * want.abs().max().item() + 1e-5:
            return False, f"the fused Triton kernels disagree with the reference on {device} ({name})"
    return True, ""


def availability(device: torch.device, dtype: torch.dtype = torch.float32, allow_interpreter: bool = True
                 ) -> tuple[bool, str]:  # fmt: skip
    """``(True, "")`` if the fused kernels can run tensors of ``dtype`` on ``device``, else ``(False, reason)``.

    What :func:`serpent_arch.ops._triton_scan.availability` requires, and on CUDA also a tiny fused forward
    + backward that compiled and agreed with the unfused reference on that device (checked once per device).
    """
    ok, reason = _triton_scan.availability(device, dtype, allow_interpreter)
    if not ok or _triton_scan.interpreted():
        return ok, reason
    return _probe(torch.device(device.type, device.index if device.index is not None else torch.cuda.current_device()))
