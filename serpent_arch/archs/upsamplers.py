"""Serpent's SR upsamplers: from features at the input size to features at the output size.
(B, C, H, W) -> (B, C, sH, sW), NCHW like the convolutions they are made of."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _fold(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """The 3 taps (w0, w1, w2) of ``weight`` along ``dim`` -> the 4 taps of a stride-2 transposed convolution.

    Along one axis, a 3-tap convolution (zero padding 1) of the nearest x2 upsampled signal gives output
    pixel 2i + p from input pixels {i-1, i} (p = 0: taps w0 | w1 + w2) or {i, i+1} (p = 1: w0 + w1 | w2).
    A stride-2 transposed convolution with padding 1 gives output 2i + p from input r through its tap
    2i + p + 1 - 2r, so its taps 0..3 are w2, w1 + w2, w0 + w1, w0.
    """
    w0, w1, w2 = weight.unbind(dim)
    return torch.stack([w2, w1 + w2, w0 + w1, w0], dim)


def nearest_x2_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(nearest x2 upsample of x)`` as one stride-2 transposed convolution of ``x``.

    The same function (the 3x3 taps summed into 4x4 ones; it differs only by rounding), without the
    upsampled image: per output pixel 4 multiply-adds per input channel instead of 9. ``conv`` must be a
    3x3, stride 1, padding 1, zero-padded, ungrouped convolution. (B, C, H, W) -> (B, C_out, 2H, 2W).
    """
    kernel = _fold(_fold(conv.weight, 2), 3).transpose(0, 1)  # (C_in, C_out, 4, 4)
    return F.conv_transpose2d(x, kernel, conv.bias, stride=2, padding=1)


class PixelShuffleUpsampler(nn.Sequential):
    """conv + PixelShuffle steps for scale 2^n or 3: (B, C, H, W) -> (B, C, sH, sW)."""

    def __init__(self, scale: int, channels: int):
        layers: list[nn.Module] = []
        if scale & (scale - 1) == 0:
            for _ in range(int(math.log2(scale))):
                layers += [nn.Conv2d(channels, 4 * channels, 3, 1, 1), nn.PixelShuffle(2)]
        elif scale == 3:
            layers += [nn.Conv2d(channels, 9 * channels, 3, 1, 1), nn.PixelShuffle(3)]
        else:
            raise ValueError(f"Serpent: upsampler 'pixelshuffle' supports upscale 2^n or 3, got {scale}.")
        super().__init__(*layers)


class NearestConvUpsampler(nn.Sequential):
    """Nearest-neighbour x2 + conv + LeakyReLU steps for scale 2^n (one x3 step for scale 3), then a conv +
    LeakyReLU at the output size (SwinIR's ``nearest+conv``, ESRGAN's upsampler): unlike conv + PixelShuffle,
    every step is non-linear and the last one works on the full-resolution grid.
    (B, C, H, W) -> (B, C, sH, sW).

    ``fused`` (default) runs every nearest x2 + conv as one transposed convolution
    (:func:`nearest_x2_conv`): the same function and weights, less arithmetic. False runs the layers as
    listed, the reference the fused path is tested against. A x3 step always runs as listed.
    """

    def __init__(self, scale: int, channels: int, fused: bool = True):
        if scale == 3:
            factors = [3]
        elif scale >= 2 and scale & (scale - 1) == 0:
            factors = [2] * int(math.log2(scale))
        else:
            raise ValueError(f"Serpent: upsampler 'nearest+conv' supports upscale 2^n or 3, got {scale}.")
        layers: list[nn.Module] = []
        for f in factors:
            layers += [nn.Upsample(scale_factor=f, mode="nearest"), nn.Conv2d(channels, channels, 3, 1, 1)]
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        super().__init__(*layers)
        self.fused = bool(fused)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return super().forward(x)
        layers = iter(self)
        for layer in layers:
            if isinstance(layer, nn.Upsample) and layer.scale_factor == 2:
                x = nearest_x2_conv(x, next(layers))
            else:
                x = layer(x)
        return x
