"""Serpent's SR upsamplers: from features at the input size to features at the output size.
(B, C, H, W) -> (B, C, sH, sW), NCHW like the convolutions they are made of."""

from __future__ import annotations

import math

from torch import nn


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
    """Nearest-neighbour x2 + conv + LeakyReLU steps for scale 2^n, then a conv + LeakyReLU at the
    output size (SwinIR's ``nearest+conv``, ESRGAN's upsampler): unlike conv + PixelShuffle, every
    step is non-linear and the last one works on the full-resolution grid. (B, C, H, W) -> (B, C, sH, sW)."""

    def __init__(self, scale: int, channels: int):
        if scale < 2 or scale & (scale - 1):
            raise ValueError(f"Serpent: upsampler 'nearest+conv' supports upscale 2^n, got {scale}.")
        layers: list[nn.Module] = []
        for _ in range(int(math.log2(scale))):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(channels, channels, 3, 1, 1)]
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        super().__init__(*layers)


class PixelShuffleConvUpsampler(nn.Sequential):
    """Per factor step a conv C -> f*f*C, PixelShuffle and LeakyReLU, then a conv + LeakyReLU at the output
    size (SRResNet's upsampler, MSRResNet's in BasicSR): non-linear steps as with ``nearest+conv``, one conv
    at the output size instead of two, f*f times wider convs before each shuffle. Scale 2^n or 3.
    (B, C, H, W) -> (B, C, sH, sW)."""

    def __init__(self, scale: int, channels: int):
        if scale & (scale - 1) == 0 and scale >= 2:
            factors = [2] * int(math.log2(scale))
        elif scale == 3:
            factors = [3]
        else:
            raise ValueError(f"Serpent: upsampler 'pixelshuffle+conv' supports upscale 2^n or 3, got {scale}.")
        layers: list[nn.Module] = []
        for f in factors:
            layers += [nn.Conv2d(channels, f * f * channels, 3, 1, 1), nn.PixelShuffle(f)]
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        layers += [nn.Conv2d(channels, channels, 3, 1, 1), nn.LeakyReLU(0.2, inplace=True)]
        super().__init__(*layers)
