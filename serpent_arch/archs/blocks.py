"""The layers of a Serpent network: its block (SS2D + feed-forward), stages, and the
patch merging / expanding between scales (the SR upsamplers are in ``upsamplers.py``). Tokens are
channels-last, (B, H, W, C)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from serpent_arch.archs.ss2d import SS2D


def drop_path(x: torch.Tensor, prob: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop whole residual branches per sample, rescale the survivors."""
    if prob == 0.0 or not training:
        return x
    keep = 1.0 - prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class FeedForward(nn.Module):
    """Linear(C -> hidden) -> [depthwise k x k conv] -> GELU -> Linear(hidden -> C). (B, H, W, C) -> same.

    ``conv_kernel`` 0 is the token-wise MLP of the design. An odd ``conv_kernel`` adds a depthwise
    convolution over the hidden features (as Restormer's and Uformer's feed-forward networks do):
    the scan sees the whole image but mixes neighbouring pixels only through SS2D's own small
    convolution, and local texture is most of what super-resolution has to model.
    """

    def __init__(self, dim: int, hidden: int, conv_kernel: int = 0):
        super().__init__()
        if conv_kernel < 0 or (conv_kernel and conv_kernel % 2 == 0):
            raise ValueError(f"Serpent: ffn_conv must be 0 or a positive odd kernel size, got {conv_kernel}.")
        self.fc1 = nn.Linear(dim, hidden)
        pad = conv_kernel // 2
        self.dwconv = nn.Conv2d(hidden, hidden, conv_kernel, padding=pad, groups=hidden) if conv_kernel else None
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fc1(x)
        if self.dwconv is not None:
            x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(self.act(x))


class SerpentBlock(nn.Module):
    """Pre-norm residual block: x + SS2D(LN(x)), then x + FFN(LN(x)). (B, H, W, C) -> same."""

    def __init__(self, dim: int, drop_path_prob: float, mlp_ratio: float, ffn_conv: int = 0, **ss2d_kwargs):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.ss2d = SS2D(dim, **ss2d_kwargs)
        self.drop_path_prob = drop_path_prob
        self.has_ffn = mlp_ratio > 0
        if self.has_ffn:
            self.norm2 = nn.LayerNorm(dim)
            self.ffn = FeedForward(dim, int(dim * mlp_ratio), ffn_conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + drop_path(self.ss2d(self.norm1(x)), self.drop_path_prob, self.training)
        if self.has_ffn:
            x = x + drop_path(self.ffn(self.norm2(x)), self.drop_path_prob, self.training)
        return x


class PatchMerging(nn.Module):
    """2x2 neighbourhoods -> LayerNorm(4C) -> Linear(4C -> 2C). (B, H, W, C) -> (B, H/2, W/2, 2C).
    ``norm`` False leaves out the LayerNorm."""

    def __init__(self, dim: int, norm: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim) if norm else nn.Identity()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        x = x.view(b, h // 2, 2, w // 2, 2, c).permute(0, 1, 3, 4, 2, 5).reshape(b, h // 2, w // 2, 4 * c)
        return self.reduction(self.norm(x))


def pixel_shuffle_last(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Channels-last pixel shuffle: (B, H, W, C*f*f) -> (B, H*f, W*f, C)."""
    b, h, w, c = x.shape
    c_out = c // (factor * factor)
    x = x.view(b, h, w, factor, factor, c_out).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h * factor, w * factor, c_out)


class PatchExpanding(nn.Module):
    """Linear(C -> 2C), a 2x pixel shuffle, then LayerNorm (unless ``norm`` is False):
    (B, H, W, C) -> (B, 2H, 2W, C/2)."""

    def __init__(self, dim: int, norm: bool = True):
        super().__init__()
        self.expand = nn.Linear(dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(dim // 2) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(pixel_shuffle_last(self.expand(x), 2))


class Stage(nn.Module):
    """A run of Serpent blocks at one width; gradient checkpointing per block when asked."""

    def __init__(self, dim: int, depth: int, drop_path_probs: Sequence[float], use_checkpoint: bool, **kw):
        super().__init__()
        self.blocks = nn.ModuleList(SerpentBlock(dim, drop_path_probs[i], **kw) for i in range(depth))
        self.use_checkpoint = use_checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):  # under autocast: keep the residual stream float32
            x = x.float()
        for block in self.blocks:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return x
