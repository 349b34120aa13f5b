"""Where a trained x4 SR network's error on smooth images lies: offset, frequency, border, output grid.

    python -m study edges_breakdown --experiment experiments/NAME [--experiment ...] [--key params_ema]
        [--size 256] [--contrast 0.9] [--out FILE.md]

``python -m study edges`` shows Serpent losing to bicubic on smooth fields and ramps. This command splits that
loss, on the same synthetic images (gray versions; a flat gray image besides), into what would point at a cause:

- ``correction rms``: the root mean square of what the network adds to bicubic (Y, in [0, 1] units);
- ``error below / above Nyquist``: the network's squared Y error split at the LR image's Nyquist frequency
  (1 / (2 x scale) cycles per output pixel), each as a multiple of bicubic's in the same band: detail the LR
  image cannot hold (above) against a wrong smooth shape (below);
- ``interior / bicubic``: the mean squared error more than 1/8 of the side from every border, over bicubic's
  there: 1 when the loss is at the borders only;
- ``grid rms``: the rms over the scale x scale output phases of the correction's mean at each phase, a pattern
  fixed to the upscaling grid (an upsampler's trace).

A first row, ``torch bicubic (no network)``, measures PyTorch's bicubic enlargement (``F.interpolate``, a = -0.75:
Serpent's global residual with ``resize_kernel: torch``) the same way, against MATLAB's bicubic as the baseline.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

FAMILIES = ("flat", "smooth", "ramp")


def _y(img: np.ndarray) -> np.ndarray:
    from basicsr.utils.color_util import rgb2ycbcr

    return rgb2ycbcr(img.astype(np.float32), y_only=True).astype(np.float64)


def breakdown(gt: np.ndarray, bicubic: np.ndarray, out: np.ndarray, scale: int) -> dict[str, float]:
    """The measures above for one image: float RGB ``gt``, ``bicubic`` and network ``out``, the same size."""
    gt, bicubic, out = _y(gt), _y(bicubic), _y(np.clip(out, 0, 1))
    b = scale
    err, err_b = (out - gt)[b:-b, b:-b], (bicubic - gt)[b:-b, b:-b]
    fy, fx = (np.fft.fftfreq(n) for n in err.shape)
    above = np.hypot(*np.meshgrid(fy, fx, indexing="ij")) > 0.5 / scale
    power, power_b = np.abs(np.fft.fft2(err)) ** 2, np.abs(np.fft.fft2(err_b)) ** 2
    h, w = gt.shape
    m = max(h, w) // 8
    inner = (slice(m, h - m), slice(m, w - m))
    correction = out - bicubic
    phases = correction[: h - h % scale, : w - w % scale].reshape(h // scale, scale, w // scale, scale).mean((0, 2))
    ratio = lambda a, c: float(a / c) if c > 0 else float("nan")  # noqa: E731
    return {
        "correction rms": float(np.sqrt((correction**2).mean())),
        "error below Nyquist": ratio(power[~above].sum(), power_b[~above].sum()),
        "error above Nyquist": ratio(power[above].sum(), power_b[above].sum()),
        "interior / bicubic": ratio(((out - gt)[inner] ** 2).mean(), ((bicubic - gt)[inner] ** 2).mean()),
        "grid rms": float(np.sqrt(((phases - phases.mean()) ** 2).mean())),
    }


def family_images(size: int, contrast: float) -> dict[str, list[np.ndarray]]:
    """Gray float RGB images per family: a flat 0.5 gray, and ``study edges``' smooth field and ramps."""
    from study.edges import images

    made = images(size, contrast)
    gray = {family: made[family][0::2] for family in ("smooth", "ramp")}  # every drawing's gray version
    return {"flat": [np.full((size, size, 3), 0.5, np.float32)], **gray}


class TorchBicubic:
    """PyTorch's bicubic enlargement as a "network": what Serpent's global residual adds before its correction."""

    def __init__(self, scale: int):
        self.scale = scale

    def __call__(self, x):
        from serpent_arch.archs.resize import upscale

        return upscale(x, self.scale, "torch")


def measure(net, scale: int, size: int, contrast: float) -> dict[str, dict[str, float]]:
    """Family -> the mean of each measure over the family's images."""
    from basicsr.utils.matlab_functions import imresize

    from study.contrast import restore_downscaled

    result = {}
    for family, made in family_images(size, contrast).items():
        rows = []
        for image in made:
            gt, lq, out = restore_downscaled(net, image, scale)
            rows.append(breakdown(gt, imresize(lq, scale), out, scale))
        result[family] = {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
    return result


def table(rows: list[tuple[str, dict[str, dict[str, float]]]]) -> str:
    names = list(next(iter(rows[0][1].values())))
    lines = ["| experiment | image | " + " | ".join(names) + " |", "|---|---|" + "---:|" * len(names)]
    for exp, result in rows:
        for family, values in result.items():
            cells = [f"{values[n]:.2e}" if "rms" in n else f"{values[n]:.2f}" for n in names]
            lines.append(f"| {exp} | {family} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from study.contrast import add_run_arguments, load_network
    from study.edges import report

    parser = argparse.ArgumentParser(prog="python -m study edges_breakdown", description=__doc__.split("\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--size", type=int, default=256, help="side of the HR images (multiple of the scale)")
    parser.add_argument("--contrast", type=float, default=0.9, help="contrast of the smooth field and ramps, (0, 1]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (with its command) here")
    args = parser.parse_args(argv)
    if not 0 < args.contrast <= 1:
        parser.error(f"--contrast {args.contrast}: expected a number in (0, 1]")
    if args.size < 64:
        parser.error(f"--size {args.size}: at least 64")
    import torch

    from serpent_arch.measure import machine

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = [("torch bicubic (no network)", measure(TorchBicubic(4), 4, args.size - args.size % 4, args.contrast))]
    for exp in map(Path, args.experiment):
        net, scale = load_network(parser, exp, args.key)
        rows.append((exp.name, measure(net, scale, args.size - args.size % scale, args.contrast)))
    text = (
        f"Error breakdown on synthetic {args.size}x{args.size} gray images (flat 0.5; smooth field and 6 ramps at "
        f"contrast {args.contrast:g}), weights {args.key}; run on {machine.describe()}\n\n{table(rows)}\n"
    )
    report(text, args.out, "edges_breakdown", args.experiment, f"--size {args.size} --contrast {args.contrast:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
