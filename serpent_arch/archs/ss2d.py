"""SS2D: the 2-D selective scan block at the heart of Serpent.

The feature map is unrolled into K sequences (cross-scan), each scanned by a selective state
space model with its own projections, and the K outputs are mapped back to their pixels and
summed (cross-merge). All K * D_in channels go through one call of the scan op.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from serpent_arch.ops import selective_scan
from serpent_arch.ops.cross_scan import cross_merge, cross_scan, cross_selective_scan_lowrank, fused_backend
from serpent_arch.ops.selective_scan import BACKENDS

SCAN_DIRECTIONS = (1, 2, 4)


class SS2D(nn.Module):
    """2-D selective scan. (B, H, W, C) -> (B, H, W, C).

    in_proj (C -> 2 * D_in) gives x and the gate z; x goes through a depthwise conv and SiLU,
    is cross-scanned into K sequences, each direction projects x to (dt, B, C) and its own
    dt_proj maps dt_rank -> D_in. One selective scan covers all K * D_in channels; B and C are
    grouped per direction. The merged output is normalised, gated by SiLU(z) and projected back.
    """

    def __init__(
        self,
        dim: int,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        d_conv: int = 3,
        dt_rank: int | str = "auto",
        scan_directions: int = 4,
        scan_backend: str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
    ):
        super().__init__()
        if scan_directions not in SCAN_DIRECTIONS:
            raise ValueError(f"SS2D: scan_directions must be 1, 2 or 4, got {scan_directions}.")
        if d_conv < 1 or d_conv % 2 == 0:
            raise ValueError(f"SS2D: d_conv must be a positive odd kernel size, got {d_conv}.")
        if scan_backend not in BACKENDS:  # else the first forward would fail
            raise ValueError(f"SS2D: scan_backend must be one of {', '.join(BACKENDS)}, got {scan_backend!r}.")
        self.d_inner = d_inner = int(ssm_ratio * dim)
        self.d_state = d_state
        self.dt_rank = dt_rank = math.ceil(dim / 16) if dt_rank == "auto" else int(dt_rank)
        self.directions = k = scan_directions
        self.scan_backend = scan_backend

        self.in_proj = nn.Linear(dim, 2 * d_inner, bias=False)
        self.conv2d = nn.Conv2d(d_inner, d_inner, d_conv, padding=d_conv // 2, groups=d_inner)

        # Per-direction projections, stored stacked so one einsum serves all K directions.
        bound = d_inner**-0.5
        self.x_proj_weight = nn.Parameter(torch.empty(k, dt_rank + 2 * d_state, d_inner).uniform_(-bound, bound))
        dt_bound = dt_rank**-0.5
        self.dt_proj_weight = nn.Parameter(torch.empty(k, d_inner, dt_rank).uniform_(-dt_bound, dt_bound))
        # Mamba's step-size init: dt log-uniform in [dt_min, dt_max], stored as softplus^-1(dt).
        dt = torch.exp(torch.rand(k, d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=dt_init_floor)
        self.dt_proj_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1..N) per channel, kept as log for positivity.
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(k * d_inner, 1)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(k * d_inner))

        self.out_norm = nn.LayerNorm(d_inner)
        self.out_proj = nn.Linear(d_inner, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        x, z = self.in_proj(x).chunk(2, dim=-1)
        fused = fused_backend(self.scan_backend, x)
        if fused is None:
            x = F.silu(self.conv2d(x.permute(0, 3, 1, 2).contiguous()))
            y = self._scan_unfused(x)
        else:
            # channels-last throughout: the depthwise conv runs on the (B, H, W, D) layout (2.4x faster
            # than on NCHW on the CPU), the fused kernel reads it and writes its output channels-last,
            # so the permute below is a view and LayerNorm copies nothing
            x = F.silu(self.conv2d(x.permute(0, 3, 1, 2)))
            y = self._scan_fused(x, fused)
        y = self.out_norm(y.permute(0, 2, 3, 1)) * F.silu(z)
        return self.out_proj(y)

    def scan(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D_in, H, W) -> (B, D_in, H, W): cross-scan, selective scan, cross-merge.

        Where the backend has a fused four-direction kernel (``cross_scan.FUSED_BACKENDS``), the
        projections are computed once per pixel of x and the kernel walks each direction by index;
        otherwise x is unrolled into K copies first. Both give the same output and gradients.
        """
        fused = fused_backend(self.scan_backend, x)
        return self._scan_unfused(x) if fused is None else self._scan_fused(x, fused)

    def _scan_unfused(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`scan` as K sequences: cross-scan, one selective scan of K * D_in channels, cross-merge."""
        b, d, h, w = x.shape
        k, n, r = self.directions, self.d_state, self.dt_rank
        xs = cross_scan(x, k)  # (B, K, D, L)
        # batched matmuls in the (B, K, rows, L) layout: no transposed copies of xs or of the
        # results (einsum("bkdl,kcd->bkcl") made bmm operands of shape (K, B*L, D))
        proj = torch.matmul(self.x_proj_weight, xs)  # (B, K, r + 2N, L)
        dts, bs, cs = torch.split(proj, [r, n, n], dim=2)
        dts = torch.matmul(self.dt_proj_weight, dts)  # (B, K, D, L)
        # the C kernel reads B and C through its own (time-major) copy: no .contiguous() first
        if x.device.type != "cpu":
            bs, cs = bs.contiguous(), cs.contiguous()
        y = selective_scan(
            xs.reshape(b, k * d, h * w),
            dts.reshape(b, k * d, h * w),
            -torch.exp(self.A_log.float()),
            bs,
            cs,
            D=self.D.float(),
            delta_bias=self.dt_proj_bias.reshape(-1).float(),
            delta_softplus=True,
            backend=self.scan_backend,
        )
        return cross_merge(y.view(b, k, d, h * w), h, w)

    def _scan_fused(self, x: torch.Tensor, backend: str) -> torch.Tensor:
        """:meth:`scan` with a fused kernel: projections per pixel, no copies per direction.

        The projections are computed on the pixels of x in one matrix product, laid out (B, L, K, .) as they
        come out; the kernel reads dt, B and C through the permuted views (their shapes are those of the
        contract, (B, K, ., L)). The step sizes are the low-rank product of dt and dt_proj, which the CPU
        kernel computes as it scans (other backends get the product). The output has x's memory format.
        """
        b, d, h, w = x.shape
        k, n, r = self.directions, self.d_state, self.dt_rank
        pixels = x.permute(0, 2, 3, 1).reshape(b, h * w, d)  # a view when x is channels-last
        proj = torch.matmul(pixels, self.x_proj_weight.reshape(k * (r + 2 * n), d).t())  # (B, L, K * (r + 2N))
        dts, bs, cs = (t.permute(0, 2, 3, 1) for t in torch.split(proj.view(b, h * w, k, r + 2 * n), [r, n, n], dim=3))
        return cross_selective_scan_lowrank(
            x,
            dts,
            self.dt_proj_weight,
            -torch.exp(self.A_log.float()),
            bs,
            cs,
            D=self.D.float(),
            delta_bias=self.dt_proj_bias.reshape(-1).float(),
            delta_softplus=True,
            backend=backend,
        )
