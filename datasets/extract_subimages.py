"""Cut large images into overlapping sub-images (BasicSR's DF2K convention) to speed up training IO.

Reading a 2K PNG to take one 192x192 patch wastes most of the decode; sub-images of 480x480 every
240 pixels keep every patch position available while decoding ~10x less. A last row/column of
crops flush with the border is added when the regular grid leaves more than ``--thresh-size``
pixels uncovered. Output names: ``{stem}_s{001..}.png`` (row-major). Examples::

    python datasets/extract_subimages.py datasets/DF2K/HR datasets/DF2K/HR_sub --n-thread 8
    # matching LR sub-images (x4: every size / 4); DIV2K's 0001x4.png -> 0001_s001.png like the HR
    python datasets/extract_subimages.py datasets/DF2K/LR_bicubic/X4 datasets/DF2K/LR_bicubic/X4_sub \\
        --crop-size 120 --step 60 --strip-suffix x4 --n-thread 8
"""

from __future__ import annotations

import argparse
import os
import sys
from multiprocessing import Pool
from os import path as osp

import _checkout  # noqa: F401  (serpent_arch importable from a checkout; BasicSR fixes applied)
import cv2

from serpent_arch.data.storage import IMAGE_EXTENSIONS
from serpent_arch.data.subimages import extract_subimages


def process_image(
    path: str, output: str, crop_size: int, step: int, thresh_size: int, level: int, strip_suffix: str = ""
) -> str:
    """Write the sub-images of one image; returns a one-line summary."""
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)  # unchanged: keep 16-bit and grayscale images as they are
    if img is None:
        raise ValueError(f"cannot read image {path}")
    stem = osp.splitext(osp.basename(path))[0]
    if strip_suffix and stem.endswith(strip_suffix):
        stem = stem[: -len(strip_suffix)]
    crops = extract_subimages(img, crop_size, step, thresh_size)
    for i, crop in enumerate(crops, start=1):
        out = osp.join(output, f"{stem}_s{i:03d}.png")
        if not cv2.imwrite(out, crop, [cv2.IMWRITE_PNG_COMPRESSION, level]):
            raise OSError(f"cannot write {out}")
    h, w = img.shape[:2]
    note = "" if crops else f" (smaller than --crop-size {crop_size}: skipped)"
    return f"{osp.basename(path)}: {h}x{w} -> {len(crops)} sub-images{note}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="folder of images (not searched recursively)")
    parser.add_argument("output", help="folder for the sub-images; created, must be empty if it exists")
    parser.add_argument("--crop-size", type=int, default=480, help="sub-image size in pixels (default 480)")
    parser.add_argument("--step", type=int, default=240, help="stride between sub-images (default 240)")
    parser.add_argument(
        "--thresh-size",
        type=int,
        default=0,
        help="border strip left uncovered before adding a flush crop (0)",
    )
    parser.add_argument("--compress-level", type=int, default=3, help="PNG compression 0-9 (default 3)")
    parser.add_argument("--n-thread", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument(
        "--strip-suffix", default="", help="remove this ending from file stems, e.g. x4 for DIV2K LR names"
    )
    args = parser.parse_args(argv)

    if not osp.isdir(args.input):
        parser.error(f"input folder {args.input} does not exist")
    if args.crop_size < 1 or args.step < 1:
        parser.error(f"--crop-size and --step must be >= 1, got {args.crop_size} and {args.step}")
    if args.thresh_size < 0:
        parser.error(f"--thresh-size must be >= 0, got {args.thresh_size}")
    if not 0 <= args.compress_level <= 9:
        parser.error(f"--compress-level must be in 0..9, got {args.compress_level}")
    if args.n_thread < 1:
        parser.error(f"--n-thread must be >= 1, got {args.n_thread}")
    if osp.isdir(args.output) and os.listdir(args.output):
        parser.error(f"output folder {args.output} is not empty; remove it or choose another")
    paths = sorted(
        osp.join(args.input, n)
        for n in os.listdir(args.input)
        if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
    )
    if not paths:
        parser.error(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {args.input}")
    os.makedirs(args.output, exist_ok=True)

    stems = [osp.splitext(osp.basename(p))[0] for p in paths]
    if args.strip_suffix:
        stems = [s[: -len(args.strip_suffix)] if s.endswith(args.strip_suffix) else s for s in stems]
    if len(set(stems)) != len(stems):
        parser.error(f"{args.input} holds images with the same name stem; sub-image names would clash")
    jobs = [
        (p, args.output, args.crop_size, args.step, args.thresh_size, args.compress_level, args.strip_suffix)
        for p in paths
    ]
    if args.n_thread == 1:
        for job in jobs:
            print(process_image(*job))
    else:
        with Pool(args.n_thread) as pool:
            for line in pool.starmap(process_image, jobs):
                print(line)
    print(f"Wrote {sum(1 for _ in os.scandir(args.output))} sub-images to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
