"""Per-image gain of the quick-start model over bicubic upsampling on the held-out sample photos.

    basicsr train -opt options/serpent_sr.yml && basicsr test -opt options/serpent_sr_test.yml
    python -m serpent_arch.benchmark quickstart

Reads the images ``basicsr test`` saved for the paired test set, the HR and LR PNGs of the sample
set, and prints Y-channel PSNR / SSIM (border ``scale`` cropped, BasicSR's metric functions) of the
restored image and of the LR image bicubically upsampled (torch, as in the validation baseline).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

import serpent_arch  # noqa: F401  (basicsr needs its compatibility fixes before it is imported)


def _bicubic(lr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    t = torch.from_numpy(lr).permute(2, 0, 1)[None].float() / 255.0
    up = F.interpolate(t, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    return (up[0].permute(1, 2, 0).numpy() * 255.0).round().astype(np.uint8)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m serpent_arch.benchmark quickstart", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sample", default="datasets/sample", help="sample set root")
    parser.add_argument("--results", default="results/serpent_sr_x4_sample_test/visualization/sample_val_paired")
    parser.add_argument("--scale", type=int, default=4)
    args = parser.parse_args(argv)

    from basicsr.metrics import calculate_psnr, calculate_ssim

    hr_dir = Path(args.sample) / "val" / "HR"
    lr_dir = Path(args.sample) / "val" / "LR_bicubic" / f"X{args.scale}"
    results = sorted(Path(args.results).glob("*.png"))
    if not results:
        raise SystemExit(f"no restored images in {args.results}: run `basicsr test -opt options/serpent_sr_test.yml`")
    print("| held-out photo | size | bicubic PSNR / SSIM | network PSNR / SSIM | PSNR gain |")
    print("|---|---|---|---|---|")
    gains = []
    for restored_path in results:
        name = restored_path.stem.rsplit("_serpent", 1)[0]
        gt = cv2.imread(str(hr_dir / f"{name}.png"))
        lr = cv2.imread(str(lr_dir / f"{name}.png"))
        restored = cv2.imread(str(restored_path))
        if gt is None or lr is None or restored is None:
            raise SystemExit(f"{name}: missing HR ({hr_dir}), LR ({lr_dir}) or restored ({restored_path}) image")
        bicubic = _bicubic(lr, gt.shape[:2])
        b_psnr = calculate_psnr(bicubic, gt, args.scale, test_y_channel=True)
        b_ssim = calculate_ssim(bicubic, gt, args.scale, test_y_channel=True)
        n_psnr = calculate_psnr(restored, gt, args.scale, test_y_channel=True)
        n_ssim = calculate_ssim(restored, gt, args.scale, test_y_channel=True)
        gains.append(n_psnr - b_psnr)
        print(
            f"| {name} | {gt.shape[1]}x{gt.shape[0]} | {b_psnr:.2f} dB / {b_ssim:.3f} | "
            f"{n_psnr:.2f} dB / {n_ssim:.3f} | {n_psnr - b_psnr:+.2f} dB |"
        )
    print(f"\nmean PSNR gain {np.mean(gains):+.2f} dB; smallest {min(gains):+.2f} dB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
