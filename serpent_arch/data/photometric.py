"""Photometric augmentation of training patches: gray and lower-contrast versions of colour photos.

A training set of colour photos at their own contrast never shows a network a gray image or a faint
texture; ``gray_prob`` and ``contrast_prob`` (options of
:class:`~serpent_arch.data.degraded_image_dataset.DegradedImageDataset`) change a patch, with its
context, before it is degraded, so the GT and the LQ show the same changed scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# BT.601 luma of a BGR image (the order images are read in)
_LUMA_BGR = np.array([0.114, 0.587, 0.299], dtype=np.float32)


@dataclass(frozen=True)
class PhotometricAugment:
    """With ``gray_prob`` the region becomes its luma in every channel; with ``contrast_prob`` it is scaled
    around its mean colour by a factor drawn uniformly from ``contrast_range`` (0 < low <= high <= 1, so the
    values stay in [0, 1]). Both off draws nothing from the generator: the other draws are unchanged."""

    gray_prob: float = 0.0
    contrast_prob: float = 0.0
    contrast_range: tuple[float, float] = (0.25, 1.0)

    @classmethod
    def from_options(cls, opt: dict, is_train: bool, color: str | None) -> PhotometricAugment:
        probs = []
        for key in ("gray_prob", "contrast_prob"):
            value = opt.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ValueError(f"{key}: expected a probability in [0, 1], got {value!r}")
            if value and not is_train:
                raise ValueError(f"{key}: only for training sets (a validation or test set is not augmented)")
            probs.append(float(value))
        if probs[0] and color == "y":
            raise ValueError("gray_prob: the images are read as one channel (color: y) already")
        low_high = opt.get("contrast_range", [0.25, 1.0])
        numbers = isinstance(low_high, (list, tuple)) and len(low_high) == 2
        numbers = numbers and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in low_high)
        if not numbers or not 0 < low_high[0] <= low_high[1] <= 1:
            raise ValueError(f"contrast_range: expected [low, high] with 0 < low <= high <= 1, got {low_high!r}")
        return cls(probs[0], probs[1], (float(low_high[0]), float(low_high[1])))

    def __call__(self, region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(H, W, C) BGR float32 in [0, 1] -> the same, changed or not (``region`` itself when both are off)."""
        if not (self.gray_prob or self.contrast_prob):
            return region
        if self.gray_prob and rng.random() < self.gray_prob:
            if region.shape[2] != 3:
                raise ValueError(f"gray_prob: expected a 3-channel (BGR) image, got {region.shape[2]} channels")
            region = np.repeat((region @ _LUMA_BGR)[..., None], 3, axis=2)
        if self.contrast_prob and rng.random() < self.contrast_prob:
            factor = np.float32(rng.uniform(*self.contrast_range))
            mean = region.mean(axis=(0, 1), keepdims=True)
            region = mean + factor * (region - mean)
        return np.ascontiguousarray(region, dtype=np.float32)
