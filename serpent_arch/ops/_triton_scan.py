"""The ``triton`` backend: a fused selective scan written in Triton (compiled at run time, nothing to build).

Layout of the work (as in mamba-ssm's CUDA kernel): one program per (batch, group, block of
``BLOCK_D`` channels of that group). The program keeps the state of its channels, a
(BLOCK_D, BLOCK_N) tile, in registers and walks along L in chunks of ``CHUNK`` steps. Inside a
chunk the recurrence ``h_t = dA_t h_{t-1} + dBu_t`` is one ``tl.associative_scan`` over the
(BLOCK_D, BLOCK_N, CHUNK) tile of affine maps; the chunk's last state is the carry into the next
chunk, so any L works with registers sized by the chunk. B_t and C_t are shared by the channels of a
group, so a program loads them once per chunk as (BLOCK_N, CHUNK) tiles.

Backward (one launch): the forward stores the state at the start of every chunk (``ckpt``,
(batch, nchunks, dim, N) float32, i.e. N / CHUNK of one (batch, dim, L) float32 tensor: half of
one at N = 16, CHUNK = 32). The
backward program walks its chunks in reverse, recomputes the chunk's states from its checkpoint,
gets the adjoint ``gh_t = C_t gy_t + dA_{t+1} gh_{t+1}`` with a reverse associative scan (the
carry ``dA_e gh_e`` comes from the later chunk) and forms every gradient in registers. Channel
reductions that cross programs (gB, gC: summed over the channels of a group) go through float32
``atomic_add`` as in mamba-ssm; per-channel ones (gA, gD, g_delta_bias) are summed over L inside
the program and written per batch element, then summed over batch by torch. Nothing of size
(batch, dim, L, N) is ever allocated.

Arithmetic is float32 whatever the input dtype (float16 / bfloat16 / float32); ``out`` and the
gradients of u, delta, z are stored in their tensors' dtypes. float64 is not supported (use the
``torch`` or ``cpu_kernel`` backend for ``gradcheck``).

Triton's interpreter: with ``TRITON_INTERPRET=1`` in the environment before ``triton`` is first
imported (in practice: set when launching Python), ``@triton.jit`` builds interpreted kernels that
run on CPU tensors (slowly, one numpy operation per tile operation). :func:`availability` then
accepts CPU tensors, which is how the tests check these kernels on a machine without a GPU. Setting
the variable later in a running process has no effect: Triton's own ``triton.language`` helpers
were built for the compiler at its import.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from .reference import selective_scan_ref

# Defaults from compiling for sm_90 with Triton's bundled ptxas (no GPU at hand to time them;
# `python -m serpent_arch.benchmark triton_build`): at N = 16 a 4 x 16 x 32 tile with 4 warps
# fits in registers forward and backward, while 4 x 16 x 64 spills in the backward.
DEFAULT_BLOCK_D = 4
DEFAULT_CHUNK = 32
DEFAULT_NUM_WARPS = 4
# largest (BLOCK_D * BLOCK_N * CHUNK) tile: bigger N shrinks the chunk so the registers suffice
MAX_TILE = 2048
# torch.nn.functional.softplus's default threshold: above it softplus(x) = x (constexpr: jit code
# may only read globals of that type)
SOFTPLUS_THRESHOLD = tl.constexpr(20.0)


@triton.jit
def _affine_combine(a1, x1, a2, x2):
    """Compose h -> a1 h + x1 (earlier) with h -> a2 h + x2 (later)."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _softplus(x):
    """torch's softplus: x above the threshold, else log1p(exp(x))."""
    e = tl.exp(tl.minimum(x, SOFTPLUS_THRESHOLD))
    p = 1.0 + e
    # log(p) * e / (p - 1) is log1p(e) to a few ulps even when 1 + e rounds (Goldberg); p == 1 means e < ulp
    log1p_e = tl.where(p == 1.0, e, tl.log(p) * (e / (p - 1.0)))
    return tl.where(x > SOFTPLUS_THRESHOLD, x, log1p_e)


@triton.jit
def _load_dt(delta_ptrs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """(pre-softplus value, dt) of a (BLOCK_D, CHUNK) tile; dt is 0 where ``mask`` is off, so
    padded steps are the identity map (exp(0 * A) = 1, dBu = 0)."""
    pre = tl.load(delta_ptrs, mask=mask, other=0.0).to(tl.float32)
    if HAS_BIAS:
        pre = pre + bias[:, None]
    dt = pre
    if SOFTPLUS:
        dt = _softplus(pre)
    return pre, tl.where(mask, dt, 0.0)


# One chunk's arithmetic, shared with the four-direction kernels of _triton_cross_scan.py: the
# kernels differ only in where a chunk's values come from and where its results go.


@triton.jit
def _chunk_states(h0, dt, u, A, Bt):
    """(dA, dBu, hs), each (BLOCK_D, BLOCK_N, CHUNK): the chunk's decays exp(dt A), inputs dt B u and
    states h_t, from the state ``h0`` before the chunk (dt, u: (BLOCK_D, CHUNK); Bt: (BLOCK_N, CHUNK))."""
    dA = tl.exp(dt[:, None, :] * A[:, :, None])
    dBu = (dt * u)[:, None, :] * Bt[None, :, :]
    a_cum, x_cum = tl.associative_scan((dA, dBu), axis=2, combine_fn=_affine_combine)
    return dA, dBu, a_cum * h0[:, :, None] + x_cum


@triton.jit
def _last_state(hs, i, CHUNK: tl.constexpr):
    """The state after the chunk's last step (padded steps are identity maps, so the last column)."""
    return tl.sum(tl.where((i == CHUNK - 1)[None, None, :], hs, 0.0), axis=2)


@triton.jit
def _chunk_adjoint(gy, Ct, dA, dA_next, carry, i):
    """(gh, carry): the adjoint gh_t = C_t gy_t + dA_{t+1} gh_{t+1} over the chunk, by a reverse
    scan, and ``dA_first gh_first``, the carry into the chunk before. ``dA_next`` is dA_{t+1}, with
    1 at the chunk's last step (the incoming ``carry`` from the later chunk is added instead)."""
    gyC = gy[:, None, :] * Ct[None, :, :]
    a_rev, gh = tl.associative_scan((dA_next, gyC), axis=2, combine_fn=_affine_combine, reverse=True)
    gh = gh + a_rev * carry[:, :, None]
    return gh, tl.sum(tl.where((i == 0)[None, None, :], dA * gh, 0.0), axis=2)


@triton.jit
def _chunk_input_grads(gh, hs, dBu, dt, u, pre, A, Bt, mask, SOFTPLUS: tl.constexpr):
    """(gA, gu, gdelta) of one chunk: gA summed over the chunk (BLOCK_D, BLOCK_N); gu (the scan's
    part, without D) and the gradient of the pre-softplus delta, (BLOCK_D, CHUNK), 0 off ``mask``."""
    # dA_t h_{t-1} = h_t - dBu_t: no shifted copy of the states needed
    gh_dAh = gh * (hs - dBu)
    gA = tl.sum(gh_dAh * dt[:, None, :], axis=2)
    ghB = tl.sum(gh * Bt[None, :, :], axis=1)  # (BLOCK_D, CHUNK)
    gdt = tl.sum(gh_dAh * A[:, :, None], axis=1) + ghB * u
    if SOFTPLUS:
        # torch's softplus backward: identity above the threshold, sigmoid below
        gdt = tl.where(pre > SOFTPLUS_THRESHOLD, gdt, gdt * tl.sigmoid(pre))
    return gA, ghB * dt, tl.where(mask, gdt, 0.0)


@triton.jit
def _scan_fwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr,
    out_ptr, last_ptr, ckpt_ptr,
    L, G, dpg, N,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_zb, s_zd, s_zl, s_ob, s_od, s_ol,
    s_Bb, s_Bg, s_Bn, s_Bl, s_Cb, s_Cg, s_Cn, s_Cl,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    SAVE_CKPT: tl.constexpr, SAVE_LAST: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Grid (batch * G * cdiv(dpg, BLOCK_D),). out: (batch, dim, L); last: (batch, dim, N) float32;
    ckpt: (batch, nchunks, dim, N) float32, the state before each chunk."""
    # one grid axis (the others are limited to 65535 programs); neighbouring programs are channel
    # blocks of one (batch, group), so they read the same B and C tiles at about the same time
    n_dblocks = tl.cdiv(dpg, BLOCK_D)
    pid_bg = tl.program_id(0) // n_dblocks
    b = (pid_bg // G).to(tl.int64)  # int64 offsets: batch * dim * L may exceed 2**31
    g = pid_bg % G
    dim = G * dpg
    d_loc = (tl.program_id(0) % n_dblocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d_loc < dpg
    d = (g * dpg + d_loc).to(tl.int64)
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    i = tl.arange(0, CHUNK)
    dn_mask = d_mask[:, None] & n_mask[None, :]

    # padded channels / states get A = 0 and B = 0: their state stays 0 and contributes nothing
    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0)  # (BLOCK_D, BLOCK_N)
    bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0) if HAS_BIAS else None
    Dv = tl.load(D_ptr + d, mask=d_mask, other=0.0) if HAS_D else None
    u_rows = u_ptr + b * s_ub + d[:, None] * s_ud
    delta_rows = delta_ptr + b * s_db + d[:, None] * s_dd
    z_rows = z_ptr + b * s_zb + d[:, None] * s_zd
    out_rows = out_ptr + b * s_ob + d[:, None] * s_od
    B_rows = B_ptr + b * s_Bb + g * s_Bg + n[:, None] * s_Bn
    C_rows = C_ptr + b * s_Cb + g * s_Cg + n[:, None] * s_Cn
    state_offs = d[:, None] * N + n[None, :]

    h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    nchunks = tl.cdiv(L, CHUNK)
    for c in range(0, nchunks):
        t = c * CHUNK + i
        t_mask = t < L
        dt_mask = d_mask[:, None] & t_mask[None, :]
        nt_mask = n_mask[:, None] & t_mask[None, :]
        if SAVE_CKPT:
            tl.store(ckpt_ptr + (b * nchunks + c) * dim * N + state_offs, h, mask=dn_mask)
        u = tl.load(u_rows + t[None, :] * s_ul, mask=dt_mask, other=0.0).to(tl.float32)
        _, dt = _load_dt(delta_rows + t[None, :] * s_dl, dt_mask, bias, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(B_rows + t[None, :] * s_Bl, mask=nt_mask, other=0.0).to(tl.float32)
        Ct = tl.load(C_rows + t[None, :] * s_Cl, mask=nt_mask, other=0.0).to(tl.float32)

        _, _, hs = _chunk_states(h, dt, u, A, Bt)
        y = tl.sum(hs * Ct[None, :, :], axis=1)  # (BLOCK_D, CHUNK)
        if HAS_D:
            y += Dv[:, None] * u
        if HAS_Z:
            z = tl.load(z_rows + t[None, :] * s_zl, mask=dt_mask, other=0.0).to(tl.float32)
            y = y * z * tl.sigmoid(z)
        tl.store(out_rows + t[None, :] * s_ol, y.to(out_ptr.dtype.element_ty), mask=dt_mask)
        h = _last_state(hs, i, CHUNK)
    if SAVE_LAST:
        tl.store(last_ptr + b * dim * N + state_offs, h, mask=dn_mask)


@triton.jit
def _scan_bwd_kernel(
    u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, gout_ptr, ckpt_ptr,
    gu_ptr, gdelta_ptr, gz_ptr, gB_ptr, gC_ptr, gA_ptr, gD_ptr, gbias_ptr,
    L, G, dpg, N,
    s_ub, s_ud, s_ul, s_db, s_dd, s_dl, s_zb, s_zd, s_zl, s_gb, s_gd, s_gl,
    s_Bb, s_Bg, s_Bn, s_Bl, s_Cb, s_Cg, s_Cn, s_Cl,
    HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr,
    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, CHUNK: tl.constexpr,
):  # fmt: skip
    """Grid as the forward. gu, gdelta, gz: contiguous (batch, dim, L) in the inputs' dtypes;
    gB, gC: zeroed contiguous (batch, G, N, L) float32 (accumulated atomically over channel
    blocks); gA: (batch, dim, N), gD, gbias: (batch, dim) float32 per-batch partial sums."""
    n_dblocks = tl.cdiv(dpg, BLOCK_D)
    pid_bg = tl.program_id(0) // n_dblocks
    b = (pid_bg // G).to(tl.int64)
    g = pid_bg % G
    dim = G * dpg
    d_loc = (tl.program_id(0) % n_dblocks) * BLOCK_D + tl.arange(0, BLOCK_D)
    d_mask = d_loc < dpg
    d = (g * dpg + d_loc).to(tl.int64)
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    i = tl.arange(0, CHUNK)
    dn_mask = d_mask[:, None] & n_mask[None, :]

    A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_mask, other=0.0)
    bias = tl.load(bias_ptr + d, mask=d_mask, other=0.0) if HAS_BIAS else None
    Dv = tl.load(D_ptr + d, mask=d_mask, other=0.0) if HAS_D else None
    u_rows = u_ptr + b * s_ub + d[:, None] * s_ud
    delta_rows = delta_ptr + b * s_db + d[:, None] * s_dd
    z_rows = z_ptr + b * s_zb + d[:, None] * s_zd
    gout_rows = gout_ptr + b * s_gb + d[:, None] * s_gd
    B_rows = B_ptr + b * s_Bb + g * s_Bg + n[:, None] * s_Bn
    C_rows = C_ptr + b * s_Cb + g * s_Cg + n[:, None] * s_Cn
    grad_rows = (b * dim + d[:, None]) * L  # gu, gdelta, gz are contiguous
    gBC_rows = ((b * G + g) * N + n[:, None]) * L  # gB, gC are contiguous
    state_offs = d[:, None] * N + n[None, :]

    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)  # dA_e gh_e from the chunk after
    gA = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    gD = tl.zeros((BLOCK_D,), dtype=tl.float32)
    gbias = tl.zeros((BLOCK_D,), dtype=tl.float32)
    nchunks = tl.cdiv(L, CHUNK)
    for rc in range(0, nchunks):
        c = nchunks - 1 - rc
        t = c * CHUNK + i
        t_mask = t < L
        dt_mask = d_mask[:, None] & t_mask[None, :]
        nt_mask = n_mask[:, None] & t_mask[None, :]
        u = tl.load(u_rows + t[None, :] * s_ul, mask=dt_mask, other=0.0).to(tl.float32)
        pre, dt = _load_dt(delta_rows + t[None, :] * s_dl, dt_mask, bias, HAS_BIAS, SOFTPLUS)
        Bt = tl.load(B_rows + t[None, :] * s_Bl, mask=nt_mask, other=0.0).to(tl.float32)
        Ct = tl.load(C_rows + t[None, :] * s_Cl, mask=nt_mask, other=0.0).to(tl.float32)
        h0 = tl.load(ckpt_ptr + (b * nchunks + c) * dim * N + state_offs, mask=dn_mask, other=0.0)

        # recompute the chunk's states from its checkpoint, as the forward did
        dA, dBu, hs = _chunk_states(h0, dt, u, A, Bt)

        gy = tl.load(gout_rows + t[None, :] * s_gl, mask=dt_mask, other=0.0).to(tl.float32)
        if HAS_Z:
            z = tl.load(z_rows + t[None, :] * s_zl, mask=dt_mask, other=0.0).to(tl.float32)
            y = tl.sum(hs * Ct[None, :, :], axis=1)
            if HAS_D:
                y += Dv[:, None] * u
            sig = tl.sigmoid(z)
            gz = gy * y * sig * (1.0 + z * (1.0 - sig))
            tl.store(gz_ptr + grad_rows + t[None, :], gz.to(gz_ptr.dtype.element_ty), mask=dt_mask)
            gy = gy * z * sig
        if HAS_D:
            gD += tl.sum(gy * u, axis=1)

        # adjoint: gh_t = C_t gy_t + dA_{t+1} gh_{t+1}; dA_{t+1} is recomputed from delta at t + 1
        # (a shift along the tile has no cheap register form); at the chunk's last step the
        # factor is 1 and the carry from the later chunk is added below
        nxt_mask = d_mask[:, None] & ((i + 1 < CHUNK) & (t + 1 < L))[None, :]
        _, dt_next = _load_dt(delta_rows + (t + 1)[None, :] * s_dl, nxt_mask, bias, HAS_BIAS, SOFTPLUS)
        dA_next = tl.exp(dt_next[:, None, :] * A[:, :, None])
        gh, carry = _chunk_adjoint(gy, Ct, dA, dA_next, carry, i)

        # relaxed: the sums need no ordering with other memory operations, only atomicity
        gC = tl.sum(gy[:, None, :] * hs, axis=0)  # (BLOCK_N, CHUNK)
        tl.atomic_add(gC_ptr + gBC_rows + t[None, :], gC, mask=nt_mask, sem="relaxed")
        gB = tl.sum(gh * (dt * u)[:, None, :], axis=0)
        tl.atomic_add(gB_ptr + gBC_rows + t[None, :], gB, mask=nt_mask, sem="relaxed")

        gA_chunk, gu, gdt = _chunk_input_grads(gh, hs, dBu, dt, u, pre, A, Bt, dt_mask, SOFTPLUS)
        gA += gA_chunk
        if HAS_D:
            gu += gy * Dv[:, None]
        tl.store(gu_ptr + grad_rows + t[None, :], gu.to(gu_ptr.dtype.element_ty), mask=dt_mask)
        tl.store(gdelta_ptr + grad_rows + t[None, :], gdt.to(gdelta_ptr.dtype.element_ty), mask=dt_mask)
        if HAS_BIAS:
            gbias += tl.sum(gdt, axis=1)

    tl.store(gA_ptr + b * dim * N + state_offs, gA, mask=dn_mask)
    if HAS_D:
        tl.store(gD_ptr + b * dim + d, gD, mask=d_mask)
    if HAS_BIAS:
        tl.store(gbias_ptr + b * dim + d, gbias, mask=d_mask)


def interpreted() -> bool:
    """True if the kernels were built for Triton's interpreter (TRITON_INTERPRET=1 at import)."""
    return not isinstance(_scan_fwd_kernel, triton.runtime.JITFunction)


def _tiles(dpg: int, N: int, block_d: int, chunk: int) -> tuple[int, int, int]:
    """(BLOCK_D, BLOCK_N, CHUNK): powers of two, the chunk shrunk so the tile fits MAX_TILE."""
    block_n = triton.next_power_of_2(N)
    block_d = min(triton.next_power_of_2(block_d), triton.next_power_of_2(dpg))
    chunk = triton.next_power_of_2(chunk)
    while block_d * block_n * chunk > MAX_TILE and chunk > 16:
        chunk //= 2
    while block_d * block_n * chunk > MAX_TILE and block_d > 1:
        block_d //= 2
    return block_d, block_n, chunk


def _strides3(t: torch.Tensor | None) -> tuple[int, int, int]:
    return (0, 0, 0) if t is None else tuple(t.stride())


class TritonSelectiveScanFn(torch.autograd.Function):
    """B and C arrive as (batch, groups, N, L); ``config`` is (block_d, chunk, num_warps)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, config):
        batch, dim, L = u.shape
        G, N = B.shape[1], A.shape[1]
        dpg = dim // G
        block_d, chunk, num_warps = config
        BLOCK_D, BLOCK_N, CHUNK = _tiles(dpg, N, block_d, chunk)
        nchunks = triton.cdiv(L, CHUNK)
        save_ckpt = any(ctx.needs_input_grad)
        f32 = {"dtype": torch.float32, "device": u.device}
        A32 = A.float().contiguous()
        D32 = None if D is None else D.float().contiguous()
        bias32 = None if delta_bias is None else delta_bias.float().contiguous()
        out = torch.empty((batch, dim, L), dtype=u.dtype, device=u.device)
        last = torch.empty((batch, dim, N), **f32) if return_last_state else None
        ckpt = torch.empty((batch, nchunks, dim, N), **f32) if save_ckpt else None
        grid = (batch * G * triton.cdiv(dpg, BLOCK_D),)
        # unused optional pointers get a real tensor: the kernel never reads them (constexpr flags)
        _scan_fwd_kernel[grid](
            u, delta, A32, B, C, D32 if D is not None else A32, z if z is not None else u,
            bias32 if delta_bias is not None else A32, out,
            last if last is not None else out, ckpt if ckpt is not None else out,
            L, G, dpg, N,
            *u.stride(), *delta.stride(), *_strides3(z), *out.stride(), *B.stride(), *C.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=bool(delta_softplus), SAVE_CKPT=save_ckpt, SAVE_LAST=bool(return_last_state),
            BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, CHUNK=CHUNK, num_warps=num_warps,
        )  # fmt: skip
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, ckpt)
        ctx.delta_softplus = bool(delta_softplus)
        ctx.tiles = (BLOCK_D, BLOCK_N, CHUNK, num_warps)
        if return_last_state:
            ctx.mark_non_differentiable(last)
            return out, last
        return out

    @staticmethod
    def backward(ctx, gout, *_unused_glast):
        u, delta, A, B, C, D, z, delta_bias, ckpt = ctx.saved_tensors
        BLOCK_D, BLOCK_N, CHUNK, num_warps = ctx.tiles
        batch, dim, L = u.shape
        G, N = B.shape[1], A.shape[1]
        dpg = dim // G
        f32 = {"dtype": torch.float32, "device": u.device}
        A32 = A.float().contiguous()
        D32 = None if D is None else D.float().contiguous()
        bias32 = None if delta_bias is None else delta_bias.float().contiguous()
        gu = torch.empty((batch, dim, L), dtype=u.dtype, device=u.device)
        gdelta = torch.empty((batch, dim, L), dtype=delta.dtype, device=u.device)
        gz = None if z is None else torch.empty((batch, dim, L), dtype=z.dtype, device=u.device)
        gB = torch.zeros((batch, G, N, L), **f32)
        gC = torch.zeros((batch, G, N, L), **f32)
        gA = torch.empty((batch, dim, N), **f32)
        gD = None if D is None else torch.empty((batch, dim), **f32)
        gbias = None if delta_bias is None else torch.empty((batch, dim), **f32)
        grid = (batch * G * triton.cdiv(dpg, BLOCK_D),)
        _scan_bwd_kernel[grid](
            u, delta, A32, B, C, D32 if D is not None else A32, z if z is not None else u,
            bias32 if delta_bias is not None else A32, gout, ckpt,
            gu, gdelta, gz if gz is not None else gu, gB, gC, gA,
            gD if gD is not None else gA, gbias if gbias is not None else gA,
            L, G, dpg, N,
            *u.stride(), *delta.stride(), *_strides3(z), *gout.stride(), *B.stride(), *C.stride(),
            HAS_D=D is not None, HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
            SOFTPLUS=ctx.delta_softplus, BLOCK_D=BLOCK_D, BLOCK_N=BLOCK_N, CHUNK=CHUNK, num_warps=num_warps,
        )  # fmt: skip
        return (
            gu,
            gdelta,
            gA.sum(0).to(A.dtype),
            gB.to(B.dtype),
            gC.to(C.dtype),
            None if D is None else gD.sum(0).to(D.dtype),
            gz,
            None if delta_bias is None else gbias.sum(0).to(delta_bias.dtype),
            None,
            None,
            None,
        )


def selective_scan_triton(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False, block_d=DEFAULT_BLOCK_D, chunk=DEFAULT_CHUNK,
                          num_warps=DEFAULT_NUM_WARPS):  # fmt: skip
    """Triton selective scan; B, C must already be (batch, groups, N, L).

    Shapes as in :func:`serpent_arch.ops.selective_scan`. ``block_d`` (channels per program),
    ``chunk`` (steps per scan tile) and ``num_warps`` are tuning knobs (rounded up to powers of
    two; the chunk shrinks for large N). Returns ``out`` (batch, dim, L) in u's dtype, plus
    ``last_state`` (batch, dim, N) float32 (not differentiable) if ``return_last_state``.
    """
    for name, value in (("block_d", block_d), ("chunk", chunk), ("num_warps", num_warps)):
        if int(value) < 1:
            raise ValueError(f"selective_scan (triton): {name} must be >= 1, got {value}")
    config = (int(block_d), int(chunk), int(num_warps))
    return TritonSelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                       bool(return_last_state), config)  # fmt: skip


@functools.cache
def _probe(device: torch.device) -> tuple[bool, str]:
    """Run forward + backward once on a tiny problem on ``device`` and compare with the reference."""
    gen = torch.Generator().manual_seed(0)
    # two chunks of the default tile, two groups, every optional input
    shapes = {"u": (1, 4, 40), "delta": (1, 4, 40), "A": (4, 2), "B": (1, 2, 2, 40), "C": (1, 2, 2, 40), "D": (4,),
              "z": (1, 4, 40), "delta_bias": (4,)}  # fmt: skip
    try:
        inputs = {k: torch.randn(s, generator=gen).to(device) for k, s in shapes.items()}
        inputs["A"] = -inputs["A"].abs()
        fast = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        out = selective_scan_triton(**fast, delta_softplus=True)
        out.sum().backward()
        ref = {k: v.clone().requires_grad_() for k, v in inputs.items()}
        ref_out = selective_scan_ref(**ref, delta_softplus=True)
        ref_out.sum().backward()
    except Exception as exc:  # compiler, driver or launch failure: report it, the caller falls back
        return False, f"the Triton kernels failed on {device}: {type(exc).__name__}: {exc}"
    pairs = [("out", out, ref_out)] + [(f"grad {k}", fast[k].grad, ref[k].grad) for k in inputs]
    for name, got, want in pairs:
        scale = want.abs().max().item()
        if not (got - want).abs().max().item() <= 1e-3 * scale + 1e-5:
            return False, f"the Triton kernels disagree with the reference on {device} ({name})"
    return True, ""


def availability(
    device: torch.device, dtype: torch.dtype = torch.float32, allow_interpreter: bool = True
) -> tuple[bool, str]:
    """``(True, "")`` if this backend can run tensors of ``dtype`` on ``device``, else ``(False, reason)``.

    On CUDA the kernels are compiled and checked once per device (a tiny forward + backward).
    With ``allow_interpreter=False`` (automatic choice) interpreted kernels count as unavailable.
    """
    if dtype == torch.float64:
        return False, "float64 inputs are not supported (the kernels compute in float32)"
    if interpreted():
        if not allow_interpreter:
            return False, "TRITON_INTERPRET=1 is set, so Triton would run its slow CPU interpreter"
        return True, ""
    if device.type != "cuda":
        return False, (
            f"it needs CUDA tensors, got tensors on {device} (for CPU tensors launch Python with "
            "TRITON_INTERPRET=1 in the environment, which runs the kernels in Triton's slow interpreter)"
        )
    if not torch.cuda.is_available():
        return False, "CUDA is not available here (no driver or no GPU)"
    return _probe(torch.device(device.type, device.index if device.index is not None else torch.cuda.current_device()))
