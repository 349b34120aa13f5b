"""The comparison image of `basicsr infer --compare`: captioned panels side by side."""

from __future__ import annotations

import cv2
import numpy as np

from serpent_arch.infer.images import quantize

COMPARE_GAP = 4  # white pixels between the panels of a comparison image


def _display(img: np.ndarray) -> np.ndarray:
    """A [0, 1] float image (gray, BGR or BGRA) as 8-bit BGR; alpha composited over white."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        alpha = img[..., 3:]
        img = img[..., :3] * alpha + (1 - alpha)
    return quantize(img, np.uint8)


def _caption_strip(lines: list[str], width: int, height: int, line_height: int, font_scale: float) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        scale = font_scale
        while scale > 0.3 and cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 8:
            scale -= 0.05  # shrink a caption that does not fit its panel
        baseline_y = (i + 1) * line_height - line_height // 4
        cv2.putText(strip, line, (4, baseline_y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def comparison_image(panels: list[tuple[np.ndarray, list[str]]]) -> np.ndarray:
    """Panels of equal size side by side, each under its caption lines, COMPARE_GAP white pixels
    apart. Each panel is a [0, 1] float (H, W[, C]) image. Returns (caption + H, n * W + gaps, 3) uint8."""
    height, width = panels[0][0].shape[:2]
    font_scale = float(np.clip(width / 500, 0.4, 0.8))
    line_height = int(round(30 * font_scale)) + 4
    caption_height = line_height * max(len(lines) for _, lines in panels) + 4
    columns = []
    for i, (img, lines) in enumerate(panels):
        if i:
            columns.append(np.full((caption_height + height, COMPARE_GAP, 3), 255, np.uint8))
        caption = _caption_strip(lines, width, caption_height, line_height, font_scale)
        columns.append(np.vstack([caption, _display(img)]))
    return np.hstack(columns)
