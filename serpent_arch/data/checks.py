"""Checks of a dataset's files before training or testing starts.

A mistake in the data otherwise shows up after minutes of set-up, deep inside a DataLoader
worker, or not at all (BasicSR crops a too-large GT to the LQ size without a word, and a
truncated LMDB kills the process with SIGBUS on the first read). These checks read image headers
and LMDB metadata only, so they take seconds even for large sets, and they name the file or key.
"""

from __future__ import annotations

import os
import struct

import cv2

from serpent_arch.data.degraded_image_dataset import DegradedImageDataset
from serpent_arch.data.storage import listing, lmdb_entries, lmdb_problems

__all__ = ["image_hw", "dataset_problems"]



def _png_hw(head: bytes) -> tuple[int, int] | None:
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return height, width
    return None


def _jpeg_hw(f) -> tuple[int, int] | None:
    f.seek(2)
    while True:
        marker = f.read(2)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        while marker[1] == 0xFF:  # fill bytes
            marker = marker[1:] + f.read(1)
        kind = marker[1]
        if kind in (0xD8, 0x01) or 0xD0 <= kind <= 0xD7:  # markers without a length
            continue
        length_bytes = f.read(2)
        if len(length_bytes) < 2:
            return None
        length = struct.unpack(">H", length_bytes)[0]
        if 0xC0 <= kind <= 0xCF and kind not in (0xC4, 0xC8, 0xCC):  # start of frame
            frame = f.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return height, width
        f.seek(length - 2, os.SEEK_CUR)


def image_hw(path: str) -> tuple[int, int] | None:
    """(height, width) of an image file from its header (PNG, JPEG; others are decoded), or None
    when the file cannot be read as an image."""
    try:
        with open(path, "rb") as f:
            head = f.read(24)
            hw = _png_hw(head)
            if hw is None and head[:2] == b"\xff\xd8":
                hw = _jpeg_hw(f)
    except OSError:
        return None
    if hw is not None:
        return hw
    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    return None if img is None else tuple(img.shape[:2])


def _sizes(paths: list[str], lmdb_dir: str | None) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """(height, width) per path (or LMDB key), and the paths that are not readable images."""
    if lmdb_dir is not None:
        shapes = {e.key: e.hw for e in lmdb_entries(lmdb_dir) if e.hw is not None}
        return {p: shapes[p] for p in paths if p in shapes}, [p for p in paths if p not in shapes]
    sizes, unreadable = {}, []
    for p in paths:
        hw = image_hw(p)
        if hw is None:
            unreadable.append(p)
        else:
            sizes[p] = hw
    return sizes, unreadable


def dataset_problems(where: str, dataset, is_train: bool) -> list[str]:
    """Problems of a constructed dataset's files; ``where`` names it in messages.

    Knows ``DegradedImageDataset`` (GT images at least ``gt_size`` for training, ``scale`` for
    validation) and BasicSR's ``PairedImageDataset`` (every GT is ``scale`` times its LQ; both at
    least the patch size for training). Other datasets are not checked.
    """
    opt = dataset.opt
    lmdb = (opt.get("io_backend") or {}).get("type") == "lmdb"
    if isinstance(dataset, DegradedImageDataset):
        if lmdb:
            problems = [f"{where}: {p}" for p in lmdb_problems(dataset.gt_folder)]
            if problems:
                return problems
        paths = [key if lmdb else path for key, path in dataset.items]
        sizes, unreadable = _sizes(paths, dataset.gt_folder if lmdb else None)
        minimum = dataset.gt_size if dataset.is_train else dataset.scale
        small = [f"{p} ({h}x{w})" for p, (h, w) in sizes.items() if min(h, w) < minimum]
        problems = []
        if unreadable and not dataset.skip_bad_samples:
            problems.append(
                f"{where}: {len(unreadable)} GT file(s) are not readable images: {listing(unreadable)} "
                "(remove them, or set skip_bad_samples: true for a training set)"
            )
        if small and not dataset.skip_bad_samples:
            what = f"gt_size {minimum}" if dataset.is_train else f"scale {minimum}"
            problems.append(f"{where}: {len(small)} GT image(s) are smaller than {what}: {listing(small)}")
        return problems
    if type(dataset).__name__ == "PairedImageDataset":
        return _paired_problems(where, dataset, is_train and opt.get("phase") == "train", lmdb)
    return []


def _paired_problems(where: str, dataset, train: bool, lmdb: bool) -> list[str]:
    opt, scale = dataset.opt, int(dataset.opt["scale"])
    if lmdb:
        folders = (opt["dataroot_gt"], opt["dataroot_lq"])
        problems = [f"{where}: {p}" for folder in folders for p in lmdb_problems(folder)]
        if problems:
            return problems
    gt_paths = [pair["gt_path"] for pair in dataset.paths]
    lq_paths = [pair["lq_path"] for pair in dataset.paths]
    gt_sizes, gt_bad = _sizes(gt_paths, opt["dataroot_gt"] if lmdb else None)
    lq_sizes, lq_bad = _sizes(lq_paths, opt["dataroot_lq"] if lmdb else None)
    problems = []
    if gt_bad or lq_bad:
        problems.append(f"{where}: not readable images: {listing(gt_bad + lq_bad)}")
    mismatched, small = [], []
    for gt, lq in zip(gt_paths, lq_paths, strict=True):
        if gt not in gt_sizes or lq not in lq_sizes:
            continue
        (gh, gw), (lh, lw) = gt_sizes[gt], lq_sizes[lq]
        # training crops need GT = scale x LQ exactly; testing crops the GT to scale x LQ, which is
        # only right when the GT was mod-cropped by less than `scale` pixels
        ok = (gh, gw) == (lh * scale, lw * scale) if train else (gh // scale, gw // scale) == (lh, lw)
        if not ok:
            mismatched.append(f"{gt} {gh}x{gw} vs {lq} {lh}x{lw}")
        elif train and min(lh * scale, lw * scale) < opt.get("gt_size", 0):
            small.append(f"{gt} ({gh}x{gw})")
    if mismatched:
        problems.append(
            f"{where}: {len(mismatched)} GT/LQ pair(s) do not match scale {scale} (GT must be {scale}x the LQ"
            f"{'' if train else ', up to the mod-crop remainder'}): {listing(mismatched)}"
        )
    if small:
        problems.append(f"{where}: {len(small)} image(s) smaller than gt_size {opt['gt_size']}: {listing(small)}")
    return problems
