"""Write degraded LQ copies of a test set with the same pipeline DegradedImageDataset uses.

Each image is mod-cropped to the total scale and degraded with a generator seeded from
``(--seed, image key)``, where the key is the file stem: the output is identical on every run and
equal (up to 8-bit PNG rounding/clipping) to the LQ that DegradedImageDataset makes at validation
from the same GT folder or from an LMDB of it. Outputs are ``<stem>.png``, ready for BasicSR's
PairedImageDataset (``filename_tmpl: '{}'``). Example::

    python datasets/make_degraded.py datasets/benchmark/Set5/HR datasets/benchmark/Set5/LR_blur_x4 \\
        --scale 4 --degradation "[{type: blur, kernel_size: 21, sigma: 1.6}, {type: bicubic_down}]"
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from multiprocessing import Pool
from os import path as osp

import _checkout  # noqa: F401  (serpent_arch importable from a checkout; BasicSR fixes applied)
import cv2
import numpy as np
import torch
import yaml
from basicsr.data.transforms import mod_crop
from basicsr.utils import imfrombytes

from serpent_arch.data.degradations import build_degradations, deterministic_rng
from serpent_arch.data.storage import IMAGE_EXTENSIONS


def load_degradations(spec: str) -> list:
    """Steps from a YAML/JSON string or file: a list of steps, or a mapping with a ``degradations`` list."""
    source = "--degradation"
    if osp.isfile(spec):
        source = spec
        with open(spec) as f:
            spec = f.read()
    try:
        value = yaml.safe_load(spec)  # YAML is a superset of JSON
    except yaml.YAMLError as err:
        raise ValueError(f"{source}: not valid YAML/JSON: {err}") from err
    if isinstance(value, dict) and "degradations" in value:
        value = value["degradations"]
    if not isinstance(value, list):
        raise ValueError(
            f"{source}: expected a list of steps like [{{type: bicubic_down}}] (or a file holding one, or a "
            f"mapping with a 'degradations' list), got {type(value).__name__}"
        )
    return value


def degrade_one(path: str, key: str, out_dir: str, pipeline, seed: int) -> tuple[str, dict]:
    """Degrade one GT image file into ``out_dir/<key>.png``; returns a summary line and the log record."""
    with open(path, "rb") as f:
        img = imfrombytes(f.read())
    if img is None:
        raise ValueError(f"cannot decode image {path}")
    gt = mod_crop(img.astype(np.float32) / np.float32(255.0), pipeline.scale)
    lq, params = pipeline.apply(gt, deterministic_rng(seed, key))
    out = osp.join(out_dir, f"{key}.png")
    if not cv2.imwrite(out, np.clip(np.rint(lq * 255.0), 0, 255).astype(np.uint8)):
        raise OSError(f"cannot write {out}")
    line = f"{osp.basename(path)}: {gt.shape[0]}x{gt.shape[1]} -> {lq.shape[0]}x{lq.shape[1]} {out}"
    return line, {"image": osp.basename(path), "key": key, "seed": seed, "steps": params}


def _degrade_job(job: tuple) -> tuple[str, dict]:
    return degrade_one(*job)


def _report(results, log) -> None:
    for line, record in results:
        print(line)
        if log:
            log.write(json.dumps(record) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("input", help="folder of GT images (not searched recursively)")
    parser.add_argument(
        "output", help="folder for the LQ PNGs (created; existing files with the same names are replaced)"
    )
    parser.add_argument(
        "--degradation",
        required=True,
        help='steps as a YAML/JSON string, e.g. "[{type: noise, sigma: 25}]", or a .yml/.json file',
    )
    parser.add_argument("--scale", type=int, help="factor for bicubic_down steps without their own `scale`")
    parser.add_argument(
        "--seed", type=int, default=0, help="selects the fixed degradations, as the dataset's seed (0)"
    )
    parser.add_argument("--n-thread", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--log", help="optional JSON-lines file recording each image's sampled parameters")
    args = parser.parse_args(argv)

    if not osp.isdir(args.input):
        parser.error(f"input folder {args.input} does not exist")
    if osp.isdir(args.output) and osp.samefile(args.input, args.output):
        parser.error("output must differ from input (the GT would be overwritten)")
    if args.scale is not None and args.scale < 1:
        parser.error(f"--scale must be >= 1, got {args.scale}")
    if args.n_thread < 1:
        parser.error(f"--n-thread must be >= 1, got {args.n_thread}")
    if args.seed < 0:
        parser.error(f"--seed must be >= 0, got {args.seed}")
    try:
        pipeline = build_degradations(load_degradations(args.degradation), args.scale)
    except ValueError as err:
        parser.error(str(err))
    names = sorted(
        n for n in os.listdir(args.input) if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")
    )
    if not names:
        parser.error(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {args.input}")
    stems = [osp.splitext(n)[0] for n in names]
    if len(set(stems)) != len(stems):
        parser.error(f"{args.input} holds files differing only by extension; output names would clash")

    os.makedirs(args.output, exist_ok=True)
    jobs = [(osp.join(args.input, n), key, args.output, pipeline, args.seed) for n, key in zip(names, stems)]
    log = open(args.log, "w") if args.log else None
    try:
        if args.n_thread == 1:
            results = (degrade_one(*job) for job in jobs)
            _report(results, log)
        else:
            with Pool(args.n_thread, initializer=torch.set_num_threads, initargs=(1,)) as pool:
                _report(pool.imap(_degrade_job, jobs, chunksize=4), log)
    finally:
        if log:
            log.close()
    print(f"Wrote {len(names)} LQ images to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
