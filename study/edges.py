"""Edges and smooth ramps: where a trained x4 SR network gains or loses against bicubic, on images made here.

    python -m study edges --experiment experiments/NAME [--experiment ...] [--key params_ema] [--size 128]
        [--contrasts 0.1,0.3,0.6,0.9] [--out FILE.md]

On natural photos Serpent lost most to MSRResNet on sharp, high-contrast curved edges and on smooth
gradients (study/README.md, "Colour report set"). This command measures both directly, on synthetic
images no network trained on and no choice used:

- ``straight``: a straight step edge through the centre at 0, 15, 30, 45, 60 and 75 degrees;
- ``curved``: disks of radius 1/8, 1/4 and 3/8 of the side (the edge bends at every scale);
- ``ramp``: linear gradients across the image at the same angles (8-bit steps, nothing sharp);
- ``smooth``: a sum of two low-frequency cosines (a smooth field, like sky or sea).

Every edge is drawn at ``contrast`` c (the two sides at 0.5 -/+ c/2), in gray and in colour (each channel's
contrast scaled by a fixed colour), anti-aliased by 8x8 supersampling, and every image is rounded to 8 bits,
as photos are. The ramp and smooth images span c too. The network restores each from its MATLAB-bicubic x4
downscale (float, no rounding; as ``study contrast`` and ``study spectrum``); the table gives the mean Y
gain over bicubic (dB, ``scale`` pixels of border cropped) per family and contrast, one row per experiment.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np

SUPERSAMPLE = 8
ANGLES = (0, 15, 30, 45, 60, 75)
RADII = (1 / 8, 1 / 4, 3 / 8)
COLOUR = np.array([1.0, 0.55, 0.25], dtype=np.float64)  # a warm colour: the channels' share of the contrast
FAMILIES = ("straight", "curved", "ramp", "smooth")


def _coordinates(size: int, supersample: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample positions in units of the image side, centred on 0: (y, x), each (size*s, size*s)."""
    n = size * supersample
    axis = (np.arange(n) + 0.5) / n - 0.5
    return np.meshgrid(axis, axis, indexing="ij")


def _area_down(field: np.ndarray, factor: int) -> np.ndarray:
    """Mean of every ``factor`` x ``factor`` block: the supersampled drawing at the image's pixels."""
    n = field.shape[0] // factor
    return field.reshape(n, factor, n, factor).mean(axis=(1, 3))


def masks(size: int) -> dict[str, list[np.ndarray]]:
    """Per family, the drawings in [0, 1] (side ``size``): 0 on one side of the edge, 1 on the other, or the
    smooth field's value; anti-aliased, before contrast and colour."""
    y, x = _coordinates(size, SUPERSAMPLE)
    straight = [
        _area_down((x * math.cos(math.radians(a)) + y * math.sin(math.radians(a)) > 0).astype(np.float64), SUPERSAMPLE)
        for a in ANGLES
    ]
    curved = [_area_down((np.hypot(x, y) < r).astype(np.float64), SUPERSAMPLE) for r in RADII]
    y, x = _coordinates(size, 1)
    ramp = [x * math.cos(math.radians(a)) + y * math.sin(math.radians(a)) for a in ANGLES]
    ramp = [(r - r.min()) / (r.max() - r.min()) for r in ramp]
    smooth = 0.5 + 0.25 * np.cos(2 * math.pi * (1.3 * x + 0.4 * y)) + 0.25 * np.cos(2 * math.pi * (0.7 * y - 0.9 * x))
    return {"straight": straight, "curved": curved, "ramp": ramp, "smooth": [smooth]}


def images(size: int, contrast: float) -> dict[str, list[np.ndarray]]:
    """Per family, float RGB images (size, size, 3) in [0, 1] at ``contrast``: each drawing in gray and in
    colour, rounded to 8 bits."""
    result = {}
    for family, drawings in masks(size).items():
        made = []
        for drawing in drawings:
            for tint in (np.ones(3), COLOUR):
                image = 0.5 + contrast * (drawing[..., None] - 0.5) * tint
                made.append((np.round(np.clip(image, 0, 1) * 255) / 255).astype(np.float32))
        result[family] = made
    return result


def gains(net, scale: int, size: int, contrasts: list[float]) -> dict[str, float]:
    """``family c`` -> mean Y gain over bicubic (dB) of ``net`` on that family's images at contrast c."""
    from study.contrast import photo_gain

    result = {}
    for c in contrasts:
        for family, made in images(size, c).items():
            result[f"{family} {c:g}"] = float(np.mean([photo_gain(net, image, scale) for image in made]))
    return result


def table(rows: list[tuple[str, dict[str, float]]]) -> str:
    """Markdown: one row per experiment, one column per family and contrast."""
    names = list(rows[0][1])
    lines = ["| experiment | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {name} | " + " | ".join(f"{result[n]:+.2f}" for n in names) + " |" for name, result in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from study.contrast import add_run_arguments, load_network

    parser = argparse.ArgumentParser(prog="python -m study edges", description=__doc__.split("\n")[0])
    add_run_arguments(parser)
    parser.add_argument("--size", type=int, default=128, help="side of the HR images (multiple of the scale)")
    parser.add_argument("--contrasts", default="0.1,0.3,0.6,0.9", help="comma-separated contrasts in (0, 1]")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", type=Path, default=None, help="also write the table (with its command) here")
    args = parser.parse_args(argv)
    try:
        contrasts = [float(c) for c in args.contrasts.split(",")]
    except ValueError:
        parser.error(f"--contrasts {args.contrasts!r}: expected comma-separated numbers such as 0.1,0.9")
    if not all(0 < c <= 1 for c in contrasts):
        parser.error(f"--contrasts {args.contrasts!r}: each in (0, 1]")
    if args.size < 32:
        parser.error(f"--size {args.size}: at least 32")
    import torch

    from serpent_arch.measure import machine

    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for exp in map(Path, args.experiment):
        net, scale = load_network(parser, exp, args.key)
        rows.append((exp.name, gains(net, scale, args.size - args.size % scale, contrasts)))
    counts = {family: len(made) for family, made in images(args.size, 1.0).items()}
    text = (
        f"Y gain over bicubic (dB) on synthetic {args.size}x{args.size} images, mean per family and contrast "
        f"({', '.join(f'{f}: {n} images' for f, n in counts.items())}), weights {args.key}; "
        f"run on {machine.describe()}\n\n{table(rows)}\n"
    )
    report(text, args.out, "edges", args.experiment, f"--size {args.size} --contrasts {args.contrasts}")
    return 0


def report(text: str, out: Path | None, command: str, experiments: list[str], options: str) -> None:
    """Print ``text``; with ``out``, also write it there followed by the ``python -m study COMMAND`` line that
    made it (the experiments, then ``options``)."""
    print(text)
    if out:
        line = f"python -m study {command} " + " ".join(f"--experiment {e}" for e in experiments)
        out.write_text(f"{text}\n`{line} {options}`\n")


if __name__ == "__main__":
    raise SystemExit(main())
