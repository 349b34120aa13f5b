"""The plain reference of the selective scan, the ground truth every backend is tested against, and the
scan's compute-dtype rule (the contract is in ``selective_scan.py``). It imports no backend: the dispatcher
and every backend import it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def compute_dtype(u, delta, A, B, C) -> torch.dtype:
    """The dtype the recurrence runs in for these inputs."""
    return torch.float64 if any(t.dtype == torch.float64 for t in (u, delta, A, B, C)) else torch.float32


def selective_scan_ref(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):  # fmt: skip
    """Reference: the recurrence stepped one time step at a time, differentiated by autograd.

    Shapes as in :func:`selective_scan` (inputs are not validated here). Memory per step is
    O(batch*dim*N); under autograd every step's state is kept, i.e. O(batch*dim*L*N). Unlike the
    fast backends, ``last_state`` is differentiable here.
    """
    cdt = compute_dtype(u, delta, A, B, C)
    batch, dim, L = u.shape
    B4 = B if B.ndim == 4 else B.unsqueeze(1)
    C4 = C if C.ndim == 4 else C.unsqueeze(1)
    g, N = B4.shape[1], A.shape[1]
    # channels kept as (groups, dim // groups) so B_t, C_t broadcast over a group without copies
    shape4 = (batch, g, dim // g, 1)

    dt = delta.to(cdt)
    if delta_bias is not None:
        dt = dt + delta_bias.to(cdt)[:, None]
    if delta_softplus:
        dt = F.softplus(dt)
    u_c, B_c, C_c = u.to(cdt), B4.to(cdt), C4.to(cdt)
    A_c = A.to(cdt).reshape(g, dim // g, N)

    h = u_c.new_zeros(batch, g, dim // g, N)
    ys = []
    for t in range(L):
        dt_t = dt[:, :, t].reshape(shape4)
        h = torch.exp(dt_t * A_c) * h + dt_t * u_c[:, :, t].reshape(shape4) * B_c[:, :, None, :, t]
        ys.append((h * C_c[:, :, None, :, t]).sum(-1).reshape(batch, dim))
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.to(cdt)[:, None] * u_c
    if z is not None:
        y = y * F.silu(z.to(cdt))
    out = y.to(u.dtype)
    return (out, h.reshape(batch, dim, N)) if return_last_state else out
