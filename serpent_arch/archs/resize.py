"""Integer-factor image enlargement for Serpent's global residual: PyTorch's bicubic, or MATLAB's.

``F.interpolate(mode="bicubic")`` uses the cubic convolution kernel with a = -0.75. MATLAB's ``imresize``,
with which SR benchmarks make their LR images and against which SR papers report "bicubic", uses
a = -0.5 (Keys' kernel, the only cubic of its family that reproduces quadratics) and symmetric borders.
On smooth areas and gradients the two differ by about one 8-bit level: a = -0.75 overshoots curvature and
leaves a pattern fixed to the upscaling grid on ramps, which a network built on top of it must learn to
cancel (``study/README.md``, "Edges and smooth areas"). :func:`matlab_bicubic_upscale` is MATLAB's kernel as
two separable convolutions, one per axis, each giving every output phase from a 5-tap window.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

RESIZE_KERNELS = ("torch", "matlab")


def _keys(t: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    """The cubic convolution kernel at distances ``t``."""
    t = t.abs()
    near = (a + 2) * t**3 - (a + 3) * t**2 + 1
    far = a * t**3 - 5 * a * t**2 + 8 * a * t - 4 * a
    return torch.where(t <= 1, near, torch.where(t < 2, far, torch.zeros_like(t)))


def phase_taps(scale: int) -> torch.Tensor:
    """(scale, 5) float64 weights: output pixel ``scale * i + p`` = sum over k of ``taps[p, k] * x[i - 2 + k]``
    (pixel centres aligned as ``align_corners=False`` and MATLAB align them)."""
    p = torch.arange(scale, dtype=torch.float64)[:, None]
    position = (p + 0.5) / scale - 0.5  # the output pixel's centre, in input pixels from x[i]
    k = torch.arange(-2, 3, dtype=torch.float64)[None, :]
    taps = _keys(position - k)
    return taps / taps.sum(dim=1, keepdim=True)


def _symmetric_indices(size, device) -> torch.Tensor:
    """Source rows of a symmetric (edge-repeating) padding by 2 on each side of an axis of ``size``; an axis of
    one pixel repeats it."""
    idx = torch.arange(-2, size + 2, device=device)
    idx = torch.where(idx < 0, -idx - 1, torch.where(idx >= size, 2 * size - 1 - idx, idx))
    return idx.clamp(0, size - 1)


def _upscale_axis(x: torch.Tensor, taps: torch.Tensor, dim: int) -> torch.Tensor:
    """Enlarge (N, C, H, W) along ``dim`` (2 or 3) by ``len(taps)``."""
    n, c, h, w = x.shape
    scale = taps.shape[0]
    size = x.shape[dim]
    x = x.index_select(dim, _symmetric_indices(size, x.device))
    weight = taps.to(x.dtype).repeat(c, 1)  # (C * scale, 5): each channel gives its own scale phases
    if dim == 2:
        out = F.conv2d(x, weight[:, None, :, None], groups=c)  # (N, C * scale, H, W)
        return out.view(n, c, scale, h, w).permute(0, 1, 3, 2, 4).reshape(n, c, h * scale, w)
    out = F.conv2d(x, weight[:, None, None, :], groups=c)  # (N, C * scale, H, W)
    return out.view(n, c, scale, h, w).permute(0, 1, 3, 4, 2).reshape(n, c, h, w * scale)


def matlab_bicubic_upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, C, H * scale, W * scale) with MATLAB ``imresize``'s bicubic kernel and borders (an
    enlargement needs no antialiasing): equal to BasicSR's ``imresize(img, scale)`` up to float rounding."""
    taps = phase_taps(scale).to(x.device)
    return _upscale_axis(_upscale_axis(x, taps, 2), taps, 3)


def upscale(x: torch.Tensor, scale: int, kernel: str) -> torch.Tensor:
    """Enlarge (N, C, H, W) by ``scale`` with ``kernel`` (one of :data:`RESIZE_KERNELS`). PyTorch's bicubic
    needs two pixels per side: a smaller image is enlarged by nearest neighbour."""
    if kernel == "matlab":
        return matlab_bicubic_upscale(x, scale)
    if x.shape[-2] > 1 and x.shape[-1] > 1:
        return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return F.interpolate(x, scale_factor=scale, mode="nearest")
