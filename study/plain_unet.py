"""PlainUNet: a full-resolution U-Net of plain 3x3 convolutions, the CNN a user would try before Serpent for
full-resolution restoration; written for the study's deblurring comparison (issue 34), not part of the product.

Four levels of widths 16, 32, 64, 128 (the last one the bottleneck); each level two 3x3 convolutions with
ReLU, 2x2 stride-2 convolutions down, 2x2 stride-2 transposed convolutions up, skips joined by concatenation
and a 1x1 convolution, and a global residual (the network predicts the correction of its input). Sizes that are
not multiples of 8 are padded by reflection and cropped back. Importing this module registers it in BasicSR's
ARCH_REGISTRY (``type: PlainUNet``); the study imports it wherever it builds networks, and its ``basicsr``
subprocesses run through ``python -m study.basicsr_cli``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn


def _block(channels: int, convs: int) -> nn.Sequential:
    layers = []
    for _ in range(convs):
        layers += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class PlainUNet(nn.Module):
    def __init__(self, in_ch: int = 3, out_ch: int = 3, widths=(16, 32, 64, 128), convs: int = 2):
        super().__init__()
        widths = [int(w) for w in widths]
        self.multiple = 2 ** (len(widths) - 1)
        self.head = nn.Conv2d(in_ch, widths[0], 3, padding=1)
        self.encoders = nn.ModuleList(_block(w, convs) for w in widths[:-1])
        self.downs = nn.ModuleList(nn.Conv2d(a, b, 2, stride=2) for a, b in zip(widths, widths[1:]))
        self.bottleneck = _block(widths[-1], convs)
        self.ups = nn.ModuleList(nn.ConvTranspose2d(b, a, 2, stride=2) for a, b in zip(widths, widths[1:]))
        self.fuses = nn.ModuleList(nn.Conv2d(2 * w, w, 1) for w in widths[:-1])
        self.decoders = nn.ModuleList(_block(w, convs) for w in widths[:-1])
        self.tail = nn.Conv2d(widths[0], out_ch, 3, padding=1)
        self.in_ch, self.out_ch = in_ch, out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = self.multiple
        ph, pw = -h % m, -w % m
        inp = F.pad(x, (0, pw, 0, ph), mode="reflect") if ph or pw else x
        f = self.head(inp)
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            f = encoder(f)
            skips.append(f)
            f = down(f)
        f = self.bottleneck(f)
        for i in reversed(range(len(skips))):
            f = self.decoders[i](self.fuses[i](torch.cat([self.ups[i](f), skips[i]], dim=1)))
        out = self.tail(f)
        if self.in_ch == self.out_ch:
            out = out + inp
        return out[..., :h, :w]


if "PlainUNet" not in ARCH_REGISTRY:
    ARCH_REGISTRY.register(PlainUNet)
