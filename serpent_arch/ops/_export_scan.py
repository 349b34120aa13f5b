"""The ``onnx`` backend: the selective scan written for graph export (``basicsr export``), any device.

An exported graph must run at sequence lengths it was not traced with, at a cost linear in the
length, in standard ONNX operators. The ``torch`` backend's Python loop over chunks would be
unrolled by tracing to the traced length, so here the loop over chunks is ``torch``'s ``scan``
higher-order op, which ``torch.onnx.export`` turns into one ONNX ``Scan`` node whose trip count is
read from the input's shape at run time:

* the sequence is padded at its end to a multiple of ``chunk_size`` steps (a causal scan: the
  padding never reaches the real steps, and its outputs are cut off);
* the chunks are scanned in order with the state (batch, dim, N) carried from one to the next;
* inside a chunk, ``h_t = dA_t h_{t-1} + dBu_t`` is solved by a Hillis-Steele scan of fixed depth
  log2(chunk_size), written with slices, pads, multiplies and adds (no in-place writes, which a
  traced graph cannot hold).

Export traces it with weights that do not require gradients (``requires_grad_(False)``): otherwise
``torch.onnx`` runs the scan op through its autograd form, which fails on the symbolic batch size.

Work is O(L log2(chunk_size)) and memory O(batch * dim * chunk_size * N) for the chunk's states, as
in the ``torch`` backend, whose numerics it shares (it multiplies and adds the same factors as the
sequential recurrence: no ``exp(-cumsum)`` rescaling that could overflow). It computes in float32
(float64 inputs stay float64) and has no hand-written backward: it is meant for inference and export
(``torch.autograd`` still differentiates it in eager mode).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch._higher_order_ops.scan import scan

from .reference import compute_dtype

# Steps per chunk: each chunk is one iteration of the ONNX Scan; a longer chunk means fewer iterations (less
# per-iteration overhead in the runtime) and a deeper in-chunk scan (log2 of it). Power of two. ONNX Runtime
# 1.32 on 2 cores, one Serpent-sized scan (dim 192, N 16, L 4096): 316, 321, 424 ms at 8, 16, 32 steps.
DEFAULT_CHUNK_SIZE = 16


def _shift(x: torch.Tensor, offset: int, fill: float) -> torch.Tensor:
    """``x`` moved ``offset`` steps later along dim -2, the first ``offset`` steps filled with ``fill``."""
    return F.pad(x[..., :-offset, :], (0, 0, offset, 0), value=fill)


def _chunk_scan(dA: torch.Tensor, dBu: torch.Tensor, T: int) -> torch.Tensor:
    """Inclusive scan of h_t = dA_t h_{t-1} + dBu_t along dim -2 (length ``T``, static), h_{-1} = 0."""
    offset = 1
    while offset < T:
        dBu = dBu + dA * _shift(dBu, offset, 0.0)
        if 2 * offset < T:  # the last round's products would never be read
            dA = dA * _shift(dA, offset, 1.0)
        offset *= 2
    return dBu


def selective_scan_export(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                          return_last_state=False, chunk_size=DEFAULT_CHUNK_SIZE):  # fmt: skip
    """Selective scan as a loop over chunks (see the module docstring); B, C are (batch, groups, N, L).

    Shapes as in :func:`serpent_arch.ops.selective_scan`. Returns ``out`` (batch, dim, L) in u's
    dtype, plus ``last_state`` (batch, dim, N) in the compute dtype if ``return_last_state``.
    """
    T = int(chunk_size)
    if T < 1 or T & (T - 1):
        raise ValueError(f"selective_scan: the onnx backend's chunk_size must be a power of two, got {chunk_size}")
    cdt = compute_dtype(u, delta, A, B, C)
    b, d, L = u.shape
    g, N = B.shape[1], A.shape[1]
    dpg = d // g
    pad = (-L) % T
    chunks = (L + pad) // T

    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    u_c = u.to(cdt)

    def by_chunk(x: torch.Tensor) -> torch.Tensor:  # (b, d, L) -> (chunks, b, g, dpg, T)
        return F.pad(x, (0, pad)).reshape(b, g, dpg, chunks, T).permute(3, 0, 1, 2, 4)

    def bc_by_chunk(x: torch.Tensor) -> torch.Tensor:  # (b, g, N, L) -> (chunks, b, g, 1, T, N)
        return F.pad(x.to(cdt), (0, pad)).reshape(b, g, N, chunks, T).permute(3, 0, 1, 4, 2).unsqueeze(3)

    A4 = A.to(cdt).reshape(g, dpg, 1, N)

    def step(h, xs):
        dt_k, dtu_k, B_k, C_k = xs
        dA = torch.exp(dt_k.unsqueeze(-1) * A4)  # (b, g, dpg, T, N)
        dBu = dtu_k.unsqueeze(-1) * B_k
        # the carried state enters at the chunk's first step: dBu_0 += dA_0 h
        dBu = dBu + F.pad(dA[..., :1, :] * h.unsqueeze(-2), (0, 0, 0, T - 1))
        hs = _chunk_scan(dA, dBu, T)
        y = (hs * C_k).sum(-1)  # (b, g, dpg, T)
        return hs[..., -1, :].clone(), y

    h0 = u_c.new_zeros(b, g, dpg, N)
    h, ys = scan(step, h0, (by_chunk(dt), by_chunk(dt * u_c), bc_by_chunk(B), bc_by_chunk(C)))
    y = ys.permute(1, 2, 3, 0, 4).reshape(b, d, chunks * T)[..., :L]
    if D is not None:
        y = y + D.to(cdt)[:, None] * u_c
    if z is not None:
        y = y * F.silu(z.to(cdt))
    out = y.to(u.dtype)
    return (out, h.reshape(b, d, N)) if return_last_state else out
