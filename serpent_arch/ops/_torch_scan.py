"""The ``torch`` backend: chunked, log-depth selective scan in plain PyTorch (any device).

The sequence is cut into chunks of ``chunk_size`` steps. Within a chunk the per-step coefficients
``dA = exp(dt * A)`` and ``dBu = dt * B * u`` are materialised as (batch, groups, dim/groups, T, N)
tensors and the recurrence ``h_t = dA_t h_{t-1} + dBu_t`` is solved by a Hillis-Steele scan
(log2(T) steps). The state is carried from chunk to chunk, so memory is O(batch*dim*T*N) for the
chunk plus O(batch*dim*L) for inputs/outputs; a (batch, dim, L, N) tensor is never built.

The scan only multiplies and adds the same factors the sequential recurrence uses (no division,
no ``exp(-cumsum)`` rescaling), so it cannot overflow where the sequential loop does not.

Backward saves the inputs plus each chunk's start state, walks the chunks in reverse, recomputes
the chunk's states from its start state, obtains the adjoint ``gh`` by a reverse scan with the same
primitive and then every gradient by elementwise formulas and reductions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .reference import compute_dtype

DEFAULT_CHUNK_SIZE = 64


def _linear_scan_(a: torch.Tensor, x: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """Inclusive scan of ``h_t = a_t * h_{t-1} + x_t`` along dim -2 with ``h_{-1} = 0``.

    ``reverse=True`` scans from the end: ``h_t = a_t * h_{t+1} + x_t``.
    a, x: (..., T, N); both are used as scratch (the caller passes tensors it no longer needs).
    Returns h, (..., T, N). Hillis-Steele: after the round with offset s, element t holds the
    composition of the affine maps of steps (t-2s, t]; composing (a1, x1) then (a2, x2) gives
    (a2*a1, a2*x1 + x2). Each round writes into a second buffer (ping-pong) with ``out=`` so no
    temporary is allocated and copied back.
    """
    T = x.shape[-2]
    if T == 1:
        return x
    x_next, a_next = torch.empty_like(x), torch.empty_like(a)
    s = 1
    while s < T:
        if reverse:  # element t absorbs t + s; the last s elements are already complete
            upd, src, keep = slice(0, T - s), slice(s, T), slice(T - s, T)
        else:  # element t absorbs t - s; the first s elements are already complete
            upd, src, keep = slice(s, T), slice(0, T - s), slice(0, s)
        x_next[..., keep, :] = x[..., keep, :]
        torch.addcmul(x[..., upd, :], a[..., upd, :], x[..., src, :], out=x_next[..., upd, :])
        x, x_next = x_next, x
        if 2 * s < T:  # the last round's products would never be read
            a_next[..., keep, :] = a[..., keep, :]
            torch.mul(a[..., upd, :], a[..., src, :], out=a_next[..., upd, :])
            a, a_next = a_next, a
        s *= 2
    return x


def _chunk_states(dA: torch.Tensor, dBu: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """States of one chunk. dA, dBu: (batch, groups, dpg, T, N); h0: (batch, groups, dpg, N).

    Returns h: (batch, groups, dpg, T, N) with h_t = dA_t h_{t-1} + dBu_t and h_{-1} = h0.
    dA and dBu are used as scratch (pass copies if they are needed afterwards). Every (..., T, N)
    state tensor of the torch backend is made here, which the tests use to check that no
    whole-sequence tensor is built.
    """
    dBu[..., 0, :].addcmul_(dA[..., 0, :], h0)
    return _linear_scan_(dA, dBu)


def _chunk_adjoint(dA: torch.Tensor, gyC: torch.Tensor, carry: torch.Tensor) -> torch.Tensor:
    """Adjoint states of one chunk: gh_t = gyC_t + dA_{t+1} gh_{t+1}.

    dA, gyC: (batch, groups, dpg, T, N); carry: (batch, groups, dpg, N) = dA_{T} gh_{T}, the
    contribution of the next chunk (zeros for the last one). gyC is consumed. Returns gh, same shape.
    """
    a = torch.empty_like(dA)
    a[..., :-1, :] = dA[..., 1:, :]
    a[..., -1, :] = 1  # never multiplies anything: the carry is folded into x below
    gyC[..., -1, :] += carry
    return _linear_scan_(a, gyC, reverse=True)


class _Chunk:
    """Inputs of steps [s, e) in the compute dtype, shaped for broadcasting over (b, g, dpg, T, N)."""

    def __init__(self, s, e, u, delta, B, C, D, z, delta_bias, softplus, cdt):
        b, d, _ = u.shape
        g = B.shape[1]
        self.T = T = e - s
        self.u = u[..., s:e].to(cdt).reshape(b, g, d // g, T)
        pre = delta[..., s:e].to(cdt)
        if delta_bias is not None:
            pre = pre + delta_bias.to(cdt)[:, None]
        self.pre = pre.reshape(b, g, d // g, T)  # dt before softplus
        self.dt = F.softplus(self.pre) if softplus else self.pre
        self.B = B[..., s:e].to(cdt).transpose(-1, -2).unsqueeze(2)  # (b, g, 1, T, N)
        self.C = C[..., s:e].to(cdt).transpose(-1, -2).unsqueeze(2)
        self.D = None if D is None else D.to(cdt).reshape(g, d // g, 1)
        self.z = None if z is None else z[..., s:e].to(cdt).reshape(b, g, d // g, T)

    def coefficients(self, A4: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """dA = exp(dt A), dBu = dt u B, both (b, g, dpg, T, N); A4 is A as (g, dpg, 1, N)."""
        dA = torch.exp(self.dt.unsqueeze(-1) * A4)
        dBu = (self.dt * self.u).unsqueeze(-1) * self.B
        return dA, dBu

    def y_no_gate(self, hs: torch.Tensor) -> torch.Tensor:
        """sum_n C_t[n] h_t[n] + D u_t: (b, g, dpg, T)."""
        # mul + sum over the contiguous last dim: einsum would first copy hs into a bmm layout
        y = (hs * self.C).sum(-1)
        return y if self.D is None else y + self.D * self.u


class TorchSelectiveScanFn(torch.autograd.Function):
    """Chunked scan with a hand-written backward. B and C arrive as (batch, groups, N, L)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, chunk_size):
        cdt = compute_dtype(u, delta, A, B, C)
        b, d, L = u.shape
        g, N = B.shape[1], A.shape[1]
        A4 = A.to(cdt).reshape(g, d // g, 1, N)
        nchunks = -(-L // chunk_size)
        keep = any(ctx.needs_input_grad)
        starts = u.new_empty((nchunks, b, g, d // g, N), dtype=cdt) if keep else None
        out = u.new_empty((b, d, L))
        h = u.new_zeros((b, g, d // g, N), dtype=cdt)
        for ci in range(nchunks):
            s, e = ci * chunk_size, min(L, (ci + 1) * chunk_size)
            if keep:
                starts[ci] = h
            c = _Chunk(s, e, u, delta, B, C, D, z, delta_bias, delta_softplus, cdt)
            hs = _chunk_states(*c.coefficients(A4), h)
            y = c.y_no_gate(hs)
            if c.z is not None:
                y = y * F.silu(c.z)
            out[..., s:e] = y.reshape(b, d, c.T)
            h = hs[..., -1, :].clone()  # clone so the chunk's states can be freed now
            del hs
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, starts)
        ctx.delta_softplus = delta_softplus
        ctx.chunk_size = chunk_size
        if return_last_state:
            last = h.reshape(b, d, N)
            ctx.mark_non_differentiable(last)
            return out, last
        return out

    @staticmethod
    def backward(ctx, gout, *_unused_glast):
        u, delta, A, B, C, D, z, delta_bias, starts = ctx.saved_tensors
        softplus, chunk_size = ctx.delta_softplus, ctx.chunk_size
        cdt = compute_dtype(u, delta, A, B, C)
        b, d, L = u.shape
        g, N = B.shape[1], A.shape[1]
        A4 = A.to(cdt).reshape(g, d // g, 1, N)
        opts = {"dtype": cdt, "device": u.device}

        gu = torch.empty(b, d, L, **opts)
        gdelta = torch.empty(b, d, L, **opts)
        gA = torch.zeros(g, d // g, N, **opts)
        gB = torch.empty(b, g, N, L, **opts)
        gC = torch.empty(b, g, N, L, **opts)
        gD = None if D is None else torch.zeros(g, d // g, **opts)
        gz = None if z is None else torch.empty(b, d, L, **opts)
        gbias = None if delta_bias is None else torch.zeros(g, d // g, **opts)

        carry = torch.zeros(b, g, d // g, N, **opts)
        for ci in reversed(range(starts.shape[0])):
            s, e = ci * chunk_size, min(L, (ci + 1) * chunk_size)
            c = _Chunk(s, e, u, delta, B, C, D, z, delta_bias, softplus, cdt)
            T = c.T
            h0 = starts[ci]
            dA, dBu = c.coefficients(A4)
            hs = _chunk_states(dA.clone(), dBu, h0)
            del dBu

            gy = gout[..., s:e].to(cdt).reshape(b, g, d // g, T)
            if c.z is not None:
                y = c.y_no_gate(hs)
                sig = torch.sigmoid(c.z)
                gz[..., s:e] = (gy * y * sig * (1 + c.z * (1 - sig))).reshape(b, d, T)
                gy = gy * c.z * sig
            if gD is not None:
                gD += (gy * c.u).sum((0, 3))

            gh = _chunk_adjoint(dA, gy.unsqueeze(-1) * c.C, carry)
            carry = gh[..., 0, :] * dA[..., 0, :]
            dAh = torch.empty_like(dA)  # dA_t h_{t-1}
            torch.mul(dA[..., 0, :], h0, out=dAh[..., 0, :])
            torch.mul(dA[..., 1:, :], hs[..., :-1, :], out=dAh[..., 1:, :])
            del dA

            # elementwise products + sums rather than einsum, which on CPU turns these
            # contractions into many small per-(b, g, t) matmuls
            gC[..., s:e] = (gy.unsqueeze(-1) * hs).sum(2).transpose(-1, -2)
            del hs
            gB[..., s:e] = (gh * (c.dt * c.u).unsqueeze(-1)).sum(2).transpose(-1, -2)
            ghB = (gh * c.B).sum(-1)
            gh_dAh = gh * dAh
            del dAh
            gA += (gh_dAh * c.dt.unsqueeze(-1)).sum((0, 3))
            gdt = (gh_dAh * A4).sum(-1) + ghB * c.u
            gu_c = ghB * c.dt
            if c.D is not None:
                gu_c = gu_c + gy * c.D
            gu[..., s:e] = gu_c.reshape(b, d, T)
            if softplus:
                # torch's softplus backward: identity above the threshold, sigmoid below
                gdt = torch.where(c.pre > 20, gdt, gdt * torch.sigmoid(c.pre))
            gdelta[..., s:e] = gdt.reshape(b, d, T)
            if gbias is not None:
                gbias += gdt.sum((0, 3))
            del gh, gh_dAh

        return (
            gu.to(u.dtype),
            gdelta.to(delta.dtype),
            gA.reshape(d, N).to(A.dtype),
            gB.to(B.dtype),
            gC.to(C.dtype),
            None if D is None else gD.reshape(d).to(D.dtype),
            None if z is None else gz.to(z.dtype),
            None if delta_bias is None else gbias.reshape(d).to(delta_bias.dtype),
            None,
            None,
            None,
        )


def selective_scan_torch(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                         return_last_state=False, chunk_size=DEFAULT_CHUNK_SIZE):  # fmt: skip
    """Chunked PyTorch selective scan; B, C must already be (batch, groups, N, L).

    Shapes as in :func:`serpent_arch.ops.selective_scan`; ``chunk_size`` (>= 1) is the number of
    steps processed at once (memory grows linearly with it, the scan depth with its log2).
    Returns ``out`` (batch, dim, L) in u's dtype, plus ``last_state`` (batch, dim, N) in the
    compute dtype (not differentiable) if ``return_last_state``.
    """
    if int(chunk_size) < 1:
        raise ValueError(f"selective_scan: chunk_size must be >= 1, got {chunk_size}")
    return TorchSelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                      bool(return_last_state), int(chunk_size))  # fmt: skip
