"""Test-time forward passes: whole-image, tiled (for images of any size) and the x8 self-ensemble;
shared by validation, `basicsr test` and `basicsr infer`."""

from __future__ import annotations

import torch
from torch import nn


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile, stride))
    return starts + [size - tile]


def _blend_window(length: int, margin: int, fade_start: bool, fade_end: bool, device, dtype) -> torch.Tensor:
    """1-D tile weights: 0 on the outer ``margin`` pixels of an inner tile edge, then a linear ramp
    to 1 over the next ``margin`` pixels. Edges on the image border keep full weight.

    With ``margin = overlap / 4`` (output pixels) two neighbouring windows sum to > 0 everywhere,
    and a network whose receptive field is within ``margin`` gives exactly the whole-image result.
    """
    pos = torch.arange(length, device=device, dtype=dtype)
    window = torch.ones(length, device=device, dtype=dtype)
    if margin > 0:
        ramp = ((pos + 1 - margin) / margin).clamp(0, 1)
        if fade_start:
            window = torch.minimum(window, ramp)
        if fade_end:
            window = torch.minimum(window, ramp.flip(0))
    return window


@torch.no_grad()
def tiled_forward(net: nn.Module, x: torch.Tensor, scale: int = 1, tile: int | None = None, overlap: int = 32):
    """Run ``net`` on (N, C, H, W) whole, or on overlapping tiles when ``tile`` is set.

    Tiles are ``tile`` x ``tile`` input pixels overlapping their neighbours by at least
    ``overlap`` pixels; their outputs (``scale`` times larger) are blended with weights that drop
    the outer quarter of each overlap and ramp over the next quarter, so tile edges, where the
    network sees the least context, never reach the result. Returns (N, C_out, H * scale, W * scale).
    """
    h, w = x.shape[-2:]
    if tile is None or tile <= 0 or (h <= tile and w <= tile):
        return net(x)
    if not 0 <= overlap < tile:
        raise ValueError(f"tile_overlap must be in [0, tile={tile}), got {overlap}.")
    stride = tile - overlap
    tile_h, tile_w = min(tile, h), min(tile, w)
    margin = overlap * scale // 4
    out = weight = None
    for top in _tile_starts(h, tile_h, stride):
        for left in _tile_starts(w, tile_w, stride):
            patch_out = net(x[..., top : top + tile_h, left : left + tile_w])
            if patch_out.shape[-2:] != (tile_h * scale, tile_w * scale):
                raise ValueError(
                    f"tiled inference: a {tile_h}x{tile_w} tile gave a {tuple(patch_out.shape[-2:])} output, "
                    f"expected {scale}x larger; check the option 'scale' against the network's upscale."
                )
            if out is None:
                out = x.new_zeros(x.shape[0], patch_out.shape[1], h * scale, w * scale, dtype=patch_out.dtype)
                weight = x.new_zeros(1, 1, h * scale, w * scale, dtype=patch_out.dtype)
            win_h = _blend_window(tile_h * scale, margin, top > 0, top + tile_h < h, x.device, patch_out.dtype)
            win_w = _blend_window(tile_w * scale, margin, left > 0, left + tile_w < w, x.device, patch_out.dtype)
            window = win_h[:, None] * win_w[None, :]
            rows = slice(top * scale, (top + tile_h) * scale)
            cols = slice(left * scale, (left + tile_w) * scale)
            out[..., rows, cols] += patch_out * window
            weight[..., rows, cols] += window
    return out / weight


def _dihedral(x: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th of the 8 flips/rotations of the last two dims (k in 0..7)."""
    if k >= 4:
        x = x.flip(-1)
    return torch.rot90(x, k % 4, dims=(-2, -1))


def _dihedral_inverse(x: torch.Tensor, k: int) -> torch.Tensor:
    x = torch.rot90(x, -(k % 4), dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


@torch.no_grad()
def self_ensemble_forward(forward, x: torch.Tensor) -> torch.Tensor:
    """Geometric self-ensemble ("+" in papers): the mean of ``forward`` over the 8 flips and
    rotations of ``x`` (N, C, H, W), each output transformed back. ``forward`` maps a tensor to
    its restored tensor (for example a ``tiled_forward`` partial)."""
    out = None
    for k in range(8):
        y = _dihedral_inverse(forward(_dihedral(x, k)), k)
        out = y if out is None else out + y
    return out / 8
