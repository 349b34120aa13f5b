"""Build the built-in sample set (no download) that the quick start trains and validates on.

Training with ``auto_prepare: sample`` does this automatically; this script is for doing it ahead
of time. It takes a few seconds and does nothing when the set is already complete. Example::

    python datasets/prepare_sample.py --root datasets/sample --scale 4
"""

from __future__ import annotations

import argparse
import logging
import sys

import _checkout  # noqa: F401  (serpent_arch importable from a checkout; BasicSR fixes applied)

from serpent_arch.data.sample import is_prepared, prepare_sample_set


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--root", default="datasets/sample", help="destination folder (default datasets/sample)"
    )
    parser.add_argument(
        "--scale",
        type=int,
        default=4,
        help="also make val/LR_bicubic/X<scale> (X2, X3, X4 always made; default 4)",
    )
    args = parser.parse_args(argv)
    if args.scale < 1:
        parser.error(f"--scale must be >= 1, got {args.scale}")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    existed = is_prepared(args.root)
    paths = prepare_sample_set(args.root, scale=args.scale)
    print(("Already complete: " if existed else "Prepared: ") + args.root)
    for name, path in paths.items():
        print(f"  {name:10s} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
