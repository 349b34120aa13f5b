"""Images for `basicsr infer`: listing inputs, reading them as stored, quantising, bicubic enlargement."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from serpent_arch.data.storage import IMAGE_EXTENSIONS
from serpent_arch.infer.errors import ImageError, InferError


def list_images(path: str) -> list[Path]:
    """A file as given, or the image files of a folder (by extension, not recursive, sorted)."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InferError(f"input {path!r} does not exist.")
    images = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise InferError(f"input folder {path!r} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return images


def read_image(path: Path) -> np.ndarray:
    """The image as stored: (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA; uint8 or uint16."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ImageError(f"cannot be read: {err.strerror or err}") from err
    if data.size == 0:
        raise ImageError("is empty (0 bytes)")
    # A JPEG has no alpha to keep, so it is decoded with flags that also apply its EXIF orientation
    # (IMREAD_UNCHANGED ignores it): a phone photo comes out the way viewers show it.
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if is_jpeg else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is None:
        raise ImageError("cannot be decoded as an image (corrupt, truncated, or not an image file)")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"has {img.dtype} pixels; only 8- and 16-bit images are supported")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise ImageError(f"has {img.shape[2]} channels; expected 1 (gray), 3 (colour) or 4 (colour + alpha)")
    return img


def max_value(img: np.ndarray) -> float:
    return 65535.0 if img.dtype == np.uint16 else 255.0


def quantize(img: np.ndarray, dtype) -> np.ndarray:
    """[0, 1] float -> uint8 / uint16, rounded."""
    return np.rint(np.clip(img, 0, 1) * (65535.0 if dtype == np.uint16 else 255.0)).astype(dtype)


def bicubic_upscale(img: np.ndarray, scale: int) -> np.ndarray:
    """(H, W[, C]) float in [0, 1] -> (sH, sW[, C]), with torch's bicubic (the network's and the
    validation baseline's resize), clipped."""
    if scale == 1:
        return img
    x = torch.from_numpy(np.ascontiguousarray(img if img.ndim == 3 else img[..., None])).permute(2, 0, 1)[None]
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    y = y[0].permute(1, 2, 0).numpy()
    return y if img.ndim == 3 else y[..., 0]
