"""Contrast and colour: how a trained x4 SR network's gain over bicubic changes when the photos
lose contrast or colour.

    python -m study contrast --experiment experiments/NAME [--experiment ...]
        [--photos datasets/sample/val/HR] [--contrasts 1,0.5,0.25] [--key params_ema] [--tile N [--tile-overlap M]]
        [--per-photo]

The restoration an SR network adds (HR - bicubic) scales with the local contrast: halve the
contrast of a photo and the ideal correction halves too. A network whose features are normalised
per token (LayerNorm) can lose that scaling where a CNN keeps it. For every experiment (its option
file and ``models/net_g_latest.pth``) this prints the Y gain over bicubic in dB, averaged over the
photos, at each contrast ``c`` (the photo becomes 0.5 + c * (photo - 0.5)) and for the grayscale
version of the photos (the mean of the channels) at full contrast. Float images, no rounding,
``scale`` pixels cropped at the border. The default photos are the sample's pick set, which chose
between networks; give ``--photos`` a folder no choice used for a held-out reading. ``--tile N``
restores in overlapping tiles of N x N LR pixels, as ``basicsr infer --tile`` does (how much the
network gains from context beyond a tile, e.g. beyond its training patch). ``--per-photo`` adds a
column per photo (its gain at full contrast, in colour): which photos a mean comes from.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from serpent_arch.forward_passes import tiled_forward


def gains(
    net: torch.nn.Module, photos: list[np.ndarray], scale: int, contrasts: list[float], tile: int = 0, overlap: int = 0
) -> dict[str, float]:
    """Mean Y gain over bicubic (dB) of ``net`` on ``photos`` (float RGB in [0, 1]) at each contrast,
    and on their grayscale versions (key ``gray``); whole, or in ``tile`` x ``tile`` LR tiles."""
    variants = {f"contrast {c:g}": (c, False) for c in contrasts} | {"gray": (1.0, True)}
    result = {}
    for name, (c, gray) in variants.items():
        values = []
        for photo in photos:
            gt = photo.mean(-1, keepdims=True).repeat(3, -1) if gray else photo
            values.append(photo_gain(net, (0.5 + c * (gt - 0.5)).astype(np.float32), scale, tile, overlap))
        result[name] = float(np.mean(values))
    return result


def restore_downscaled(
    net: torch.nn.Module, gt: np.ndarray, scale: int, tile: int = 0, overlap: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gt mod-cropped to ``scale``, its MATLAB-bicubic x``scale`` downscale, ``net``'s restoration of it): float RGB
    images (H, W, 3), whole or in ``tile`` x ``tile`` LR tiles."""
    from basicsr.utils.matlab_functions import imresize

    h, w = (s - s % scale for s in gt.shape[:2])
    gt = gt[:h, :w]
    lq = imresize(gt, 1 / scale).astype(np.float32)
    with torch.no_grad():
        x = torch.from_numpy(lq).permute(2, 0, 1)[None]
        out = tiled_forward(net, x, scale, tile=tile, overlap=overlap)[0].permute(1, 2, 0).numpy()
    return gt, lq, out


def photo_gain(net: torch.nn.Module, gt: np.ndarray, scale: int, tile: int = 0, overlap: int = 0) -> float:
    """Y gain over bicubic (dB) of ``net`` restoring ``gt`` (float RGB in [0, 1]) from its MATLAB-bicubic
    x``scale`` downscale (mod-cropped to ``scale``; ``scale`` pixels cropped at the border, no rounding)."""
    from basicsr.utils.color_util import rgb2ycbcr
    from basicsr.utils.matlab_functions import imresize

    def _y(img: np.ndarray) -> np.ndarray:  # BasicSR's Y of a float RGB image in [0, 1], without rounding
        return rgb2ycbcr(img.astype(np.float32), y_only=True)

    gt, lq, out = restore_downscaled(net, gt, scale, tile, overlap)
    crop = (slice(scale, -scale), slice(scale, -scale))
    mse_net, mse_bic = (((_y(np.clip(v, 0, 1)) - _y(gt))[crop] ** 2).mean() for v in (out, imresize(lq, scale)))
    return float(10 * np.log10(mse_bic / max(mse_net, 1e-20)))


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """--experiment (repeatable), --photos and --key: the trained runs and photos a photo benchmark reads."""
    parser.add_argument("--experiment", action="append", required=True,
                        help="experiments/NAME of a trained x4 SR run (option file + models/net_g_latest.pth)")
    parser.add_argument("--photos", default="datasets/sample/val/HR", help="folder of HR photos (PNG or JPEG)")
    parser.add_argument("--key", default="params_ema", help="weight key of the checkpoint")


def load_photos(parser: argparse.ArgumentParser, folder: str) -> tuple[list[Path], list[np.ndarray]]:
    """The PNG and JPEG photos of ``folder`` as float RGB in [0, 1], sorted by name; a parser error names
    the folder or the file when there are none or one cannot be read."""
    import cv2

    if not Path(folder).is_dir():
        parser.error(f"--photos {folder}: not a folder")
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not files:
        parser.error(f"--photos {folder}: no PNG or JPEG photos there")
    photos = []
    for path in files:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            parser.error(f"--photos: {path} could not be read as an image")
        photos.append(image[..., ::-1].astype(np.float32) / 255.0)
    return files, photos


def load_network(parser: argparse.ArgumentParser, exp: Path, key: str) -> tuple[torch.nn.Module, int]:
    """The network of a trained run (its option file and ``models/net_g_latest.pth``, weights ``key``) in eval
    mode, and its scale; a parser error names the folder or the key when they are missing."""
    from basicsr.archs import build_network

    import serpent_arch  # noqa: F401  (registers Serpent)
    from serpent_arch.options import load_yaml
    from study.serpent_candidates import removed_options

    options = sorted(exp.glob("*.yml"))
    weights = exp / "models" / "net_g_latest.pth"
    if not options or not weights.is_file():
        parser.error(f"--experiment {exp}: expected an option file (*.yml) and models/net_g_latest.pth there")
    opt = load_yaml(options[0])
    removed = removed_options(opt["network_g"])
    if removed:
        parser.error(f"--experiment {exp}: its network_g uses {', '.join(removed)}, which Serpent no longer has")
    net = build_network(dict(opt["network_g"]))
    checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
    if key not in checkpoint:
        parser.error(f"--key {key}: {weights} holds {', '.join(checkpoint)}")
    net.load_state_dict(checkpoint[key])
    return net.eval(), int(opt.get("scale", 4))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study contrast", description=__doc__.split("\n")[0]
    )
    add_run_arguments(parser)
    parser.add_argument("--contrasts", default="1,0.5,0.25", help="comma-separated contrast factors")
    parser.add_argument("--tile", type=int, default=0, help="restore in tiles of N x N LR pixels (0: whole)")
    parser.add_argument("--tile-overlap", type=int, default=None, help="tile overlap in LR pixels (default N / 4)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--per-photo", action="store_true",
                        help="also a column per photo: its gain at full contrast, in colour")
    args = parser.parse_args(argv)
    overlap = args.tile // 4 if args.tile_overlap is None else args.tile_overlap
    if args.tile < 0 or (args.tile and not 0 <= overlap < args.tile):
        parser.error(f"--tile {args.tile} --tile-overlap {overlap}: expected tile >= 0 and 0 <= overlap < tile")
    if args.threads:
        torch.set_num_threads(args.threads)

    try:
        contrasts = [float(c) for c in args.contrasts.split(",")]
    except ValueError:
        parser.error(f"--contrasts {args.contrasts!r}: expected comma-separated numbers such as 1,0.5,0.25")
    files, photos = load_photos(parser, args.photos)
    rows = []
    for exp in map(Path, args.experiment):
        net, scale = load_network(parser, exp, args.key)
        result = gains(net, photos, scale, contrasts, args.tile, overlap)
        if args.per_photo:
            for path, photo in zip(files, photos):
                result[f"{path.stem} (c 1)"] = photo_gain(net, photo, scale, args.tile, overlap)
        rows.append((exp.name, result))
    names = list(rows[0][1])
    from serpent_arch.measure import machine

    tiles = f"in {args.tile}x{args.tile} LR tiles overlapping by {overlap}" if args.tile else "whole photos"
    print(f"Y gain over bicubic (dB), mean of {len(files)} photos in {args.photos} ({tiles}), weights {args.key}; "
          f"run on {machine.describe()}\n")
    print("| experiment | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for exp, result in rows:
        print(f"| {exp} | " + " | ".join(f"{result[n]:+.3f}" for n in names) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
