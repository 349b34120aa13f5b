"""The local contrast normalisation of Serpent's input (``contrast_norm``): every pixel's neighbourhood mean and
contrast, so the network can read the detail without the region's brightness, colour cast and contrast."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from serpent_arch.archs.padding import pad_reflect_or_replicate

# Floor of the local standard deviation of ``contrast_norm`` (images in [0, 1]): flat areas are amplified
# at most 1 / CONTRAST_EPS times, so quantisation steps and sensor noise are not blown up to full contrast.
CONTRAST_EPS = 0.01


def local_contrast(x: torch.Tensor, window: int, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Local mean (per channel) and local contrast of (N, C, H, W) over ``window`` x ``window`` neighbourhoods:
    returns ``mean`` (N, C, H, W) and ``std`` (N, 1, H, W), the standard deviation pooled over the channels,
    floored smoothly by ``eps`` (sqrt(var + eps**2)). Borders are reflected (replicated on tiny images)."""
    x = x.float()
    mean = local_mean(x, window)
    var = (local_mean(x * x, window) - mean * mean).mean(dim=1, keepdim=True).clamp_min(0)
    return mean, torch.sqrt(var + eps * eps)


def local_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean of every ``window`` x ``window`` neighbourhood of (N, C, H, W), per channel, in float32; borders
    reflected (replicated on tiny images)."""
    pad = window // 2
    return F.avg_pool2d(pad_reflect_or_replicate(x.float(), pad, pad, pad, pad), window, stride=1)
