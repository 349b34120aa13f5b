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

    ``dense`` makes the first layer a dense k x k convolution C -> hidden instead (Conv -> GELU ->
    Linear, the convolutional channel mixer of lightweight SR networks such as SAFMN): every hidden
    feature then mixes all channels of the neighbourhood, as a CNN's 3x3 convolutions do.

    ``squeeze`` > 0 closes the FFN with channel attention (RCAN's, as in MambaIR's block): the output's
    channels are scaled by sigmoid(Linear(ReLU(Linear(mean over the image)))), C -> C / squeeze -> C.
    """

    def __init__(self, dim: int, hidden: int, conv_kernel: int = 0, dense: bool = False, squeeze: int = 0):
        super().__init__()
        if isinstance(squeeze, bool) or not isinstance(squeeze, int) or squeeze < 0:
            raise ValueError(f"Serpent: channel_attention must be 0 or a positive squeeze factor, got {squeeze!r}.")
        if conv_kernel < 0 or (conv_kernel and conv_kernel % 2 == 0):
            raise ValueError(f"Serpent: ffn_conv must be 0 or a positive odd kernel size, got {conv_kernel}.")
        if dense and not conv_kernel:
            raise ValueError("Serpent: ffn_dense needs ffn_conv (the kernel size of the dense convolution), got 0.")
        pad = conv_kernel // 2
        # fc1 (Linear) or dense_conv makes the hidden features; dwconv mixes them spatially.
        self.fc1 = None if dense else nn.Linear(dim, hidden)
        self.dense_conv = nn.Conv2d(dim, hidden, conv_kernel, padding=pad) if dense else None
        self.dwconv = (
            nn.Conv2d(hidden, hidden, conv_kernel, padding=pad, groups=hidden) if conv_kernel and not dense else None
        )
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.attention = ChannelAttention(dim, squeeze) if squeeze else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dense_conv is not None:
            x = self.dense_conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        else:
            x = self.fc1(x)
        if self.dwconv is not None:
            x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        x = self.fc2(self.act(x))
        return x if self.attention is None else self.attention(x)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation over channels-last tokens: x * sigmoid(up(ReLU(down(mean_HW(x))))).
    (B, H, W, C) -> same; the bottleneck has max(1, C // squeeze) channels."""

    def __init__(self, dim: int, squeeze: int):
        super().__init__()
        inner = max(1, dim // squeeze)
        self.down = nn.Linear(dim, inner)
        self.up = nn.Linear(inner, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.sigmoid(self.up(torch.relu(self.down(x.mean(dim=(1, 2), keepdim=True)))))
        return x * weights


class Affine(nn.Module):
    """Per-channel scale and shift of channels-last tokens, without normalising them (ResMLP's Affine):
    what a block reads when ``block_norm`` is off. (..., C) -> same."""

    def __init__(self, dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.weight + self.bias


class SerpentBlock(nn.Module):
    """Pre-norm residual block: x + SS2D(LN(x)), then x + FFN(LN(x)). (B, H, W, C) -> same.

    ``norm`` False replaces both LayerNorms with a per-channel :class:`Affine`: the branches read the
    token at its own amplitude, as a CNN's residual blocks do (EDSR left normalisation out of SR networks).
    ``skip_scale`` multiplies the residual stream by a learned per-channel scale (initialised to 1) before
    each update is added, s * x + SS2D(LN(x)), as MambaIR's residual state-space block does.

    ``rescale`` multiplies each update by the standard deviation its LayerNorm divided out of the
    token (over the channels, with the norm's eps): x + std(x) * SS2D(LN(x)). LN(x) does not change
    when x is multiplied by c > 0, so the block becomes 1-homogeneous, block(c x) = c block(x): a
    token at a quarter of the contrast gets a quarter of the update, where the plain pre-norm block
    gives every token the same size of update whatever its amplitude.
    """

    def __init__(
        self,
        dim: int,
        drop_path_prob: float,
        mlp_ratio: float,
        ffn_conv: int = 0,
        ffn_dense: bool = False,
        channel_attention: int = 0,
        rescale: bool = False,
        norm: bool = True,
        skip_scale: bool = False,
        **ss2d_kwargs,
    ):
        super().__init__()
        if rescale and not norm:
            raise ValueError(
                "Serpent: block_rescale rescales by what the blocks' LayerNorm divides out; "
                "block_norm false removes it."
            )
        self.rescale = rescale
        make_norm = nn.LayerNorm if norm else Affine
        self.norm1 = make_norm(dim)
        self.skip1 = nn.Parameter(torch.ones(dim)) if skip_scale else None
        self.ss2d = SS2D(dim, **ss2d_kwargs)
        self.drop_path_prob = drop_path_prob
        self.has_ffn = mlp_ratio > 0
        if channel_attention and not self.has_ffn:
            raise ValueError("Serpent: channel_attention closes the feed-forward networks, which mlp_ratio 0 removes.")
        if self.has_ffn:
            self.norm2 = make_norm(dim)
            self.skip2 = nn.Parameter(torch.ones(dim)) if skip_scale else None
            self.ffn = FeedForward(dim, int(dim * mlp_ratio), ffn_conv, ffn_dense, channel_attention)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self._residual(x, self.norm1, self.ss2d, self.skip1)
        if self.has_ffn:
            x = self._residual(x, self.norm2, self.ffn, self.skip2)
        return x

    def _residual(self, x: torch.Tensor, norm: nn.Module, branch: nn.Module, skip: torch.Tensor | None):
        update = branch(norm(x))
        if self.rescale:
            update = update * torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps)
        update = drop_path(update, self.drop_path_prob, self.training)
        return (x if skip is None else x * skip) + update


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
    """A run of Serpent blocks at one width, optionally closed by a residual dense 3x3 convolution
    (``conv``, as SwinIR closes each residual group); gradient checkpointing per block when asked."""

    def __init__(
        self, dim: int, depth: int, drop_path_probs: Sequence[float], use_checkpoint: bool, conv: bool = False, **kw
    ):
        super().__init__()
        self.blocks = nn.ModuleList(SerpentBlock(dim, drop_path_probs[i], **kw) for i in range(depth))
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1) if conv else None
        self.use_checkpoint = use_checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.float16, torch.bfloat16):  # under autocast: keep the residual stream float32
            x = x.float()
        for block in self.blocks:
            if self.use_checkpoint and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        if self.conv is not None:
            x = x + self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return x
