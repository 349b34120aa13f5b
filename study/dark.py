"""Dark, smooth images: brightness offset and patch-grid artefacts of a trained x4 SR network.

    python -m study dark --opt OPTIONS.yml --weights NET.pth [--weights ...] [--keys params,params_ema]

A user found a tiny Serpent losing to bicubic by 3 dB on a smooth lake-at-dusk photo, with an
error made of a brightness offset and a faint regular grid. This script measures exactly those
on a synthetic scene of that kind (a dusk sky gradient, soft dark shapes, a faint reflection,
8-bit levels 4 to 60, no training photo involved): for each checkpoint and weight key, the Y PSNR
of the network and of bicubic, the mean error (the offset, in 8-bit levels) and the RMS of the
error's average pattern over positions modulo ``--period`` pixels (the grid, in 8-bit levels;
bicubic's value is the noise floor).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch


def dusk_scene(size: int = 384, seed: int = 0) -> np.ndarray:
    """A smooth dark RGB scene, float32 (size, size, 3) in [0, 1]."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    sky = 0.06 + 0.17 * (1 - y) ** 2  # brighter towards the top
    img = np.stack([sky * 1.15, sky * 0.9, sky * 0.8], axis=-1)
    for _ in range(6):  # soft dark hills / trees
        cy, cx, r = rng.uniform(0.45, 0.9), rng.uniform(0, 1), rng.uniform(0.08, 0.25)
        blob = np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - 0.6 * blob)
    lake = (y > 0.7)[..., None]
    ripples = 1 + 0.08 * np.sin(2 * np.pi * (y * 60 + 0.3 * np.sin(2 * np.pi * x * 5)))[..., None]
    img = np.where(lake, img[::-1] * 0.7 * ripples, img)  # a faint rippled reflection
    from scipy.ndimage import gaussian_filter

    img = np.stack([gaussian_filter(img[..., c], 1.0) for c in range(3)], axis=-1)
    img = img + rng.normal(0, 1.0 / 255, img.shape)
    return np.clip(np.round(img * 255) / 255, 0, 1).astype(np.float32)


def _y(img: np.ndarray) -> np.ndarray:
    """RGB float [0, 1] -> Y in 8-bit levels (BasicSR's ycbcr, 16..235)."""
    return 16.0 + img @ np.array([65.481, 128.553, 24.966], dtype=np.float32)


def error_stats(out: np.ndarray, gt: np.ndarray, period: int, border: int) -> dict[str, float]:
    """Y PSNR, mean error (offset) and RMS of the period-averaged error (grid), 8-bit levels."""
    err = (_y(np.clip(np.round(out * 255) / 255, 0, 1)) - _y(gt))[border:-border, border:-border]
    mse = float((err**2).mean())
    h, w = (s - s % period for s in err.shape)
    cells = err[:h, :w].reshape(h // period, period, w // period, period).mean(axis=(0, 2))
    return {
        "psnr": 10 * np.log10(255.0**2 / max(mse, 1e-12)),
        "offset": float(err.mean()),
        "grid": float(np.sqrt(((cells - cells.mean()) ** 2).mean())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study dark", description=__doc__.split("\n")[0])
    parser.add_argument("--opt", action="append", required=True, help="option file (network_g); one per --weights")
    parser.add_argument("--weights", action="append", required=True, help="checkpoint .pth")
    parser.add_argument("--keys", default="params,params_ema", help="weight keys to evaluate")
    parser.add_argument("--period", type=int, default=4, help="grid period in output pixels")
    parser.add_argument("--size", type=int, default=384)
    args = parser.parse_args(argv)
    if len(args.opt) not in (1, len(args.weights)):
        parser.error("give one --opt for all --weights, or one per --weights")

    from basicsr.archs import build_network
    from basicsr.utils.matlab_functions import imresize

    import serpent_arch  # noqa: F401
    from serpent_arch.options import load_yaml

    gt = dusk_scene(args.size)
    print("| weights | key | Y PSNR | bicubic Y PSNR | offset (8-bit) | grid RMS (8-bit) |")
    print("|---|---|---:|---:|---:|---:|")
    for i, weights in enumerate(args.weights):
        opt = load_yaml(args.opt[i if len(args.opt) > 1 else 0])
        scale = int(opt.get("scale", 4))
        lq = np.clip(np.round(imresize(gt, 1 / scale) * 255) / 255, 0, 1).astype(np.float32)
        bic = imresize(lq, scale)
        base = error_stats(bic, gt, args.period, scale)
        checkpoint = torch.load(weights, map_location="cpu", weights_only=True)
        for key in args.keys.split(","):
            if key not in checkpoint:
                continue
            net = build_network(dict(opt["network_g"]))
            net.load_state_dict(checkpoint[key])
            net.eval()
            with torch.no_grad():
                out = net(torch.from_numpy(lq).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
            s = error_stats(out, gt, args.period, scale)
            print(
                f"| {weights} | {key} | {s['psnr']:.2f} | {base['psnr']:.2f} | {s['offset']:+.2f} "
                f"(bicubic {base['offset']:+.2f}) | {s['grid']:.3f} (bicubic {base['grid']:.3f}) |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
