"""One image through `basicsr infer`: read, restore, write, score against its ground truth (Y-PSNR
beside the bicubic baseline) and the comparison image."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from serpent_arch.infer.compare import comparison_image
from serpent_arch.infer.errors import ImageError, note
from serpent_arch.infer.images import bicubic_upscale, list_images, max_value, quantize, read_image
from serpent_arch.infer.restorer import Restorer


def psnr_y(img: np.ndarray, ref: np.ndarray, crop_border: int) -> float:
    """Y-channel PSNR (BT.601, BasicSR's ``calculate_psnr``) of two (H, W) gray or (H, W, 3) BGR
    images in [0, 1], ``crop_border`` pixels cropped at each edge."""
    from basicsr.metrics.psnr_ssim import calculate_psnr

    return float(calculate_psnr(img * 255.0, ref * 255.0, crop_border, input_order="HWC", test_y_channel=True))


def ground_truths(gt: str | None, images: list[Path], single_input: bool) -> dict[str, Path]:
    """Ground-truth file for each input stem (a single file given for a single input pairs with it)."""
    if gt is None:
        return {}
    gt_files = list_images(gt)
    if single_input and Path(gt).is_file():
        return {images[0].stem: gt_files[0]}
    return {path.stem: path for path in gt_files}


def _matching_gt(gt_path: Path, out_shape: tuple[int, ...], scale: int) -> np.ndarray:
    """The ground truth in [0, 1] (colour channels only), cropped to the output size when it is at
    most ``scale - 1`` pixels larger (an HR image whose size is not a multiple of the scale)."""
    gt = read_image(gt_path)
    gt = gt.astype(np.float32) / max_value(gt)
    if gt.ndim == 3:
        gt = gt[..., :3]
    (h, w), (gt_h, gt_w) = out_shape[:2], gt.shape[:2]
    if not (h <= gt_h < h + scale and w <= gt_w < w + scale):
        raise ImageError(f"ground truth {gt_path} is {gt_w}x{gt_h} but the output is {w}x{h}")
    return gt[:h, :w]


@dataclass
class ImageResult:
    seconds: float
    psnr: float | None = None
    baseline_psnr: float | None = None


def process_image(path: Path, args, restorer: Restorer, out_path: Path, gt_path: Path | None) -> ImageResult:
    """Read, restore and write one image (and its comparison); raise ImageError on bad input."""
    start = time.perf_counter()
    stored = read_image(path)
    img = stored.astype(np.float32) / max_value(stored)
    restored = restorer.restore(img)
    written = quantize(restored, stored.dtype)
    if not cv2.imwrite(str(out_path), written):
        raise ImageError(f"could not write {out_path}")
    seconds = time.perf_counter() - start
    result = ImageResult(seconds)

    scale = restorer.loaded.scale
    gt = None
    if gt_path is not None:
        try:
            gt = _matching_gt(gt_path, restored.shape, scale)
        except ImageError as err:  # the restoration itself succeeded: a note, not a failure
            note(path, f"not compared: {err}")
    if gt is not None and gt.ndim == restored.ndim:
        # PSNR of the image as written (quantized), like BasicSR's validation, beside the bicubic baseline
        as_written = written.astype(np.float32) / max_value(written)
        result.psnr = psnr_y(_without_alpha(as_written), gt, crop_border=scale)
        baseline = quantize(bicubic_upscale(_without_alpha(img), scale), stored.dtype)
        result.baseline_psnr = psnr_y(baseline.astype(np.float32) / max_value(baseline), gt, crop_border=scale)
    elif gt is not None:
        note(path, f"not compared: ground truth {gt_path} and the output differ in channels (gray vs colour)")
        gt = None

    if args.compare:
        out_h, out_w = restored.shape[:2]
        enlarged = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
        name = restorer.loaded.net_type
        panels = [
            (enlarged, [f"input (nearest x{scale})" if scale > 1 else "input"]),
            (restored, [name] + ([] if result.psnr is None else [_psnr_caption(result, scale)])),
        ]
        if gt is not None:
            panels.append((gt, ["ground truth"]))
        compare_path = out_path.parent / "compare" / out_path.name
        if not cv2.imwrite(str(compare_path), comparison_image(panels)):
            raise ImageError(f"could not write {compare_path}")
    return result


def _without_alpha(img: np.ndarray) -> np.ndarray:
    """(H, W) gray or (H, W, 3) BGR as it is; (H, W, 4) BGRA -> its (H, W, 3) BGR."""
    return img[..., :3] if img.ndim == 3 else img


def _psnr_caption(result: ImageResult, scale: int) -> str:
    baseline = "bicubic" if scale > 1 else "input"
    return f"Y-PSNR {result.psnr:.2f} dB ({baseline} {result.baseline_psnr:.2f})"
