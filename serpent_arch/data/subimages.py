"""Cutting large images into overlapping sub-images (BasicSR's DF2K preparation convention)."""

from __future__ import annotations

import numpy as np

__all__ = ["crop_positions", "extract_subimages"]


def crop_positions(length: int, crop_size: int, step: int, thresh_size: int = 0) -> list[int]:
    """Start offsets of crops of ``crop_size`` every ``step`` pixels along an axis of ``length``.

    A last crop flush with the end is added when the regular grid leaves more than
    ``thresh_size`` pixels uncovered, so no border strip wider than that is lost.
    An axis shorter than ``crop_size`` gives no crops.
    """
    if crop_size < 1 or step < 1:
        raise ValueError(f"crop_size and step must be >= 1, got crop_size={crop_size}, step={step}")
    if length < crop_size:
        return []
    starts = list(range(0, length - crop_size + 1, step))
    if length - (starts[-1] + crop_size) > thresh_size:
        starts.append(length - crop_size)
    return starts


def extract_subimages(img: np.ndarray, crop_size: int, step: int, thresh_size: int = 0) -> list[np.ndarray]:
    """Overlapping ``(crop_size, crop_size, ...)`` crops of an ``(H, W[, C])`` image, row-major order.

    The crops are copies, so they can be written or modified independently of ``img``.
    """
    h, w = img.shape[:2]
    return [
        np.ascontiguousarray(img[y : y + crop_size, x : x + crop_size, ...])
        for y in crop_positions(h, crop_size, step, thresh_size)
        for x in crop_positions(w, crop_size, step, thresh_size)
    ]
