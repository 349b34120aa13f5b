"""Pack a folder of images into an LMDB that BasicSR datasets read with ``io_backend: {type: lmdb}``.

Keys are the file stems (``0001_s001.png`` -> ``0001_s001``); ``meta_info.txt`` lists them.
Images are stored PNG-encoded (lossless). Example::

    python datasets/make_lmdb.py datasets/DF2K/HR_sub datasets/DF2K/HR_sub.lmdb --n-thread 8
"""

from __future__ import annotations

import argparse
import os
import sys
from os import path as osp

import _checkout  # noqa: F401  (serpent_arch importable from a checkout; BasicSR fixes applied)
from basicsr.data.data_util import paths_from_folder
from basicsr.utils.lmdb_util import make_lmdb_from_imgs

from serpent_arch.data.storage import IMAGE_EXTENSIONS


def list_images(folder: str) -> list[str]:
    """Sorted file names of the images directly inside ``folder`` (hidden files skipped)."""
    return sorted(
        osp.basename(p)
        for p in paths_from_folder(folder)
        if p.lower().endswith(IMAGE_EXTENSIONS) and not osp.basename(p).startswith(".")
    )


def estimate_map_size(folder: str, names: list[str]) -> int:
    """LMDB map size from the images' raw pixel bytes (read from file headers, no decoding).

    BasicSR's default (first image's PNG size x count x 10) is too small when later images are
    larger; raw bytes bound the PNG sizes, and Linux does not preallocate the map.
    """
    from PIL import Image

    total = 0
    for name in names:
        with Image.open(osp.join(folder, name)) as im:
            bytes_per_pixel = max(1, len(im.getbands())) * (2 if im.mode.startswith("I;16") else 1)
            total += im.width * im.height * bytes_per_pixel
    return 2 * total + (64 << 20)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="folder of images (not searched recursively)")
    parser.add_argument("output", help="LMDB folder to create; must end with .lmdb and not exist yet")
    parser.add_argument("--compress-level", type=int, default=1, help="PNG compression 0-9 (default 1: fast)")
    parser.add_argument(
        "--n-thread",
        type=int,
        default=1,
        help="processes reading images (default 1); more than 1 holds every encoded image in memory "
        "until writing (BasicSR's multiprocessing_read), so use it only for sets that fit in RAM",
    )
    args = parser.parse_args(argv)

    if not osp.isdir(args.input):
        parser.error(f"input folder {args.input} does not exist")
    if not args.output.rstrip("/").endswith(".lmdb"):
        parser.error(f"output {args.output} must end with .lmdb (BasicSR recognizes LMDBs by that suffix)")
    output = args.output.rstrip("/")
    if osp.exists(output):
        parser.error(f"output {output} already exists; remove it first")
    if not 0 <= args.compress_level <= 9:
        parser.error(f"--compress-level must be in 0..9, got {args.compress_level}")
    if args.n_thread < 1:
        parser.error(f"--n-thread must be >= 1, got {args.n_thread}")

    names = list_images(args.input)
    if not names:
        parser.error(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {args.input}")
    keys = [osp.splitext(n)[0] for n in names]
    seen: dict[str, str] = {}
    for name, key in zip(names, keys):
        if key in seen:
            parser.error(f"{seen[key]} and {name} in {args.input} would both get the LMDB key {key!r}")
        if not key.isascii():
            parser.error(f"{name} in {args.input}: LMDB keys must be ASCII; rename the file")
        seen[key] = name

    os.makedirs(osp.dirname(osp.abspath(output)), exist_ok=True)
    make_lmdb_from_imgs(
        args.input,
        output,
        names,
        keys,
        compress_level=args.compress_level,
        multiprocessing_read=args.n_thread > 1,
        n_thread=args.n_thread,
        map_size=estimate_map_size(args.input, names),
    )
    print(f"Wrote {len(names)} images to {output} (keys listed in {osp.join(output, 'meta_info.txt')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
