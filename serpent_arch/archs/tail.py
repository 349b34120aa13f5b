"""Serpent's full-resolution tail in row bands, for inference on large images.

After the decoder, the tail unembeds the tokens to a full-resolution feature map (``embed_dim`` channels), adds
the shallow features of the image, runs the upsampler (SR) and the last conv. At 2048x2048 with ``embed_dim`` 64
one such map is 1 GiB, and the whole-image tail holds several at once: they were most of the peak memory of
large-image inference. The tail is local (each output row depends on a few feature rows), so without autograd
it can run band by band: each band of feature rows is computed with ``HALO`` rows of context on either side,
its kept rows written into the output image, and nothing larger than a band is ever held.

Every kept row is computed from the same inputs as on the whole image, with zero padding only where the whole
image has it (its top and bottom), so the result is the same function; the tests compare the two.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from serpent_arch.archs.blocks import pixel_shuffle_last

# Elements (batch x rows x columns x channels) of the largest feature map of one band: 64 MiB in float32.
BAND_ELEMENTS = 1 << 24
# Feature rows of context on each side of a band. The tail's receptive field reaches less than 2 feature rows:
# one for the upsampler's first conv, 1/2 + 1/4 + ... for each 2x step's conv, 1/upscale for the last conv.
HALO = 4


_whole = [0]  # > 0 inside ``whole()``


@contextlib.contextmanager
def whole():
    """Run every tail on the whole image inside this block (FLOP counting: the network's own operations,
    without the bands' overlapping context rows)."""
    _whole[0] += 1
    try:
        yield
    finally:
        _whole[0] -= 1


def _tracing() -> bool:
    """Inside torch.compile, torch.export (the ONNX exporter) or a JIT trace: shapes must stay symbolic."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)
    return torch.compiler.is_compiling() or exporting() or torch.jit.is_tracing()


def output_ratio(net: nn.Module) -> int:
    """Output rows per feature row: the upscale, or 1 when the input was enlarged before the network."""
    return 1 if isinstance(net.upsample, nn.Identity) else net.upscale


def band_rows(net: nn.Module, tokens: torch.Tensor, w: int) -> int:
    """Feature rows per band (a multiple of the patch size) so that no feature map of a band passes
    ``BAND_ELEMENTS``."""
    p, ratio = net.patch_size, output_ratio(net)
    channels = max(net.unembed.out_features // (p * p), net.conv_last.in_channels)
    per_row = tokens.shape[0] * w * ratio * ratio * channels
    return max(p, BAND_ELEMENTS // max(per_row, 1) // p * p)


def use_bands(net: nn.Module, tokens: torch.Tensor, h: int, w: int) -> bool:
    """Whether the tail of this forward runs in bands: without autograd, outside tracing and :func:`whole`, and
    only when the image needs more than one band."""
    return not torch.is_grad_enabled() and not _whole[0] and not _tracing() and band_rows(net, tokens, w) < h


def banded(net: nn.Module, tokens: torch.Tensor, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The tail of ``net`` (a :class:`~serpent_arch.archs.serpent_arch.Serpent`) band by band: the decoder's
    ``tokens`` (N, H / patch, W / patch, C) and the padded image ``x`` (N, C_in, H, W), of which the first ``h``
    rows and ``w`` columns are the image -> the last conv's output (N, C_out, h * ratio, w * ratio)."""
    p, ratio, height = net.patch_size, output_ratio(net), x.shape[-2]
    rows = band_rows(net, tokens, w)
    out = None
    for r0 in range(0, h, rows):
        r1 = min(h, r0 + rows)
        a, b = max(0, r0 - HALO * p), min(h, r1 + HALO * p)  # the band's feature rows with their context
        feat = pixel_shuffle_last(net.unembed(tokens[:, a // p : -(-b // p)]), p).permute(0, 3, 1, 2)
        # The shallow 3x3 conv over image rows a-1 .. b: zero rows only outside the (padded) image.
        xs = F.pad(x[:, :, max(0, a - 1) : min(height, b + 1)], (0, 0, int(a == 0), int(b + 1 > height)))
        shallow = F.conv2d(xs, net.shallow.weight, net.shallow.bias, padding=(0, 1))
        band = net.conv_last(net.upsample(feat[:, :, : b - a, :w] + shallow[..., :w]))
        if out is None:
            out = band.new_empty(band.shape[0], band.shape[1], h * ratio, w * ratio)
        out[:, :, r0 * ratio : r1 * ratio] = band[:, :, (r0 - a) * ratio : (r1 - a) * ratio]
    return out
