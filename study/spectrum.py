"""Where in frequency a trained x4 SR network's error sits, photo by photo.

    python -m study spectrum --experiment experiments/NAME [--experiment ...]
        [--photos datasets/sample/val/HR] [--key params_ema] [--bands 0,0.0625,0.125,0.1875,0.25,0.5]

Each photo is restored from its MATLAB-bicubic x``scale`` downscale (float, no rounding; ``scale``
pixels cropped at the border, as in ``python -m study contrast``). In the 2-D spectrum of the Y channel
(8-bit levels), split into rings of radial frequency (cycles per output pixel; the LR image's
Nyquist frequency is 0.5 / scale, 0.125 for x4), two numbers per ring:

- the error: the mean squared Y error the ring contributes (the rings add up to the photo's MSE),
  so two networks' rings show where one loses to the other;
- corr: the correlation of the detail the network adds (output - bicubic) with the true detail
  (photo - bicubic) in the ring; 1 is the right detail, 0 none of it (bicubic itself).

The last ring's upper edge (0.5 by default) is extended to the spectrum's corners.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from study.contrast import add_run_arguments, load_network, load_photos, restore_downscaled

DEFAULT_BANDS = "0,0.0625,0.125,0.1875,0.25,0.5"


def band_errors(net: torch.nn.Module, gt: np.ndarray, scale: int, edges: list[float]) -> list[tuple[float, float]]:
    """(error, corr) per ring ``[edges[i], edges[i + 1])`` of radial frequency for ``net`` restoring ``gt``
    (float RGB in [0, 1]) from its MATLAB-bicubic downscale: the ring's share of the Y MSE (8-bit levels
    squared) and the correlation of the restored detail with the true detail there (NaN where either is 0)."""
    from basicsr.utils.color_util import rgb2ycbcr
    from basicsr.utils.matlab_functions import imresize

    def _y(img: np.ndarray) -> np.ndarray:  # BasicSR's Y of a float RGB image, in 8-bit levels, without rounding
        return rgb2ycbcr(np.clip(img, 0, 1).astype(np.float32), y_only=True).astype(np.float64) * 255.0

    gt, lq, out = restore_downscaled(net, gt, scale)
    crop = (slice(scale, -scale), slice(scale, -scale))
    y_gt, y_out, y_bic = (_y(v)[crop] for v in (gt, out, imresize(lq, scale)))
    n = y_gt.size
    spectrum = {name: np.fft.fft2(v) for name, v in (("error", y_out - y_gt), ("added", y_out - y_bic),
                                                      ("true", y_gt - y_bic))}
    fy, fx = np.fft.fftfreq(y_gt.shape[0])[:, None], np.fft.fftfreq(y_gt.shape[1])[None, :]
    radius = np.hypot(fy, fx)
    rows = []
    for i, (low, high) in enumerate(zip(edges[:-1], edges[1:])):
        ring = (radius >= low) & ((radius < high) | (i == len(edges) - 2))
        error = float((np.abs(spectrum["error"][ring]) ** 2).sum() / n**2)
        added, true = spectrum["added"][ring], spectrum["true"][ring]
        norm = np.sqrt((np.abs(added) ** 2).sum() * (np.abs(true) ** 2).sum())
        corr = float(np.real(added * np.conj(true)).sum() / norm) if norm > 0 else float("nan")
        rows.append((error, corr))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study spectrum", description=__doc__.split("\n")[0]
    )
    add_run_arguments(parser)
    parser.add_argument("--bands", default=DEFAULT_BANDS,
                        help="comma-separated ring edges in cycles per output pixel, increasing from 0")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    args = parser.parse_args(argv)
    try:
        edges = [float(e) for e in args.bands.split(",")]
    except ValueError:
        edges = []
    if len(edges) < 2 or edges[0] != 0 or any(b <= a for a, b in zip(edges, edges[1:])):
        parser.error(f"--bands {args.bands!r}: expected increasing ring edges starting at 0, such as {DEFAULT_BANDS}")
    if args.threads:
        torch.set_num_threads(args.threads)
    files, photos = load_photos(parser, args.photos)
    from serpent_arch.measure import machine

    names = [f"[{a:g}, {b:g})" for a, b in zip(edges[:-1], edges[1:])]
    print(f"Y error (8-bit levels squared) and correlation of the restored detail with the true detail, per ring of "
          f"radial frequency (cycles per output pixel), photos in {args.photos}, weights {args.key}; "
          f"run on {machine.describe()}\n")
    print("| experiment | photo | MSE | " + " | ".join(names) + " |")
    print("|---|---|---:|" + "---:|" * len(names))
    for exp in map(Path, args.experiment):
        net, scale = load_network(parser, exp, args.key)
        for path, photo in zip(files, photos):
            rows = band_errors(net, photo, scale, edges)
            cells = [f"{error:.2f} ({corr:.3f})" for error, corr in rows]
            print(f"| {exp.name} | {path.stem} | {sum(e for e, _ in rows):.2f} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
