"""Serpent's one padding rule: reflect where the image is large enough, replicate where it is not.

Reflect cannot pad an axis by as much as its size; a tiny image is padded by replicating its edge
instead. In eager mode the choice is a Python branch on the shape; while a graph is being exported
(``torch.compiler.is_exporting()``, ``basicsr export``) it is made inside the graph, from index
arithmetic, so one graph pads every input size as eager mode does (a branch on the shape would be
fixed to the size the graph was traced with).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_reflect_or_replicate(x: torch.Tensor, top, bottom, left, right) -> torch.Tensor:
    """Pad the last two dims of ``x`` (N, C, H, W): reflect when every pad is smaller than the size of its
    axis, else replicate (all four sides the same mode)."""
    if torch.compiler.is_exporting():
        return _pad_by_gather(x, top, bottom, left, right)
    h, w = x.shape[-2:]
    if not (top or bottom or left or right):
        return x
    mode = "reflect" if max(top, bottom) < h and max(left, right) < w else "replicate"
    return F.pad(x, (left, right, top, bottom), mode=mode)


def _reflect_and_replicate(size, before, total, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Source indices along one axis of length ``size`` for an output of ``total`` positions starting
    ``before`` positions before the first pixel: by reflection (negative where reflect cannot reach)
    and by replication."""
    idx = torch.arange(total, device=device) - before
    last = size - 1
    reflect = last - (last - idx.abs()).abs()
    return reflect, idx.clamp(0, last)


def _pad_by_gather(x: torch.Tensor, top, bottom, left, right) -> torch.Tensor:
    """:func:`pad_reflect_or_replicate` as index gathers whose mode is chosen in the graph."""
    h, w = x.shape[-2:]
    rows_reflect, rows_replicate = _reflect_and_replicate(h, top, h + top + bottom, x.device)
    cols_reflect, cols_replicate = _reflect_and_replicate(w, left, w + left + right, x.device)
    reflect_fits = torch.logical_and(rows_reflect.min() >= 0, cols_reflect.min() >= 0)
    rows = torch.where(reflect_fits, rows_reflect, rows_replicate)
    cols = torch.where(reflect_fits, cols_reflect, cols_replicate)
    return x.index_select(-2, rows).index_select(-1, cols)
