"""A small built-in train/val set made from images bundled with scikit-image and matplotlib.

No download: every source image ships inside an installed package. The layout (see
``datasets/README.md``)::

    ROOT/
      train.lmdb/                 GT sub-images (192x192, step 96) of the 7 training images
      val.lmdb/                   GT of the 3 validation images, whole, mod-cropped to a multiple of 12
      val/HR/*.png                the same validation GT as PNG files
      val/LR_bicubic/X{2,3,4}/    MATLAB-bicubic LR of val/HR, same file names (BasicSR layout)
      report/HR/*.png             4 more held-out photos (grayscale, stored as 3 equal channels),
                                  mod-cropped to 12: the report set of the budget benchmark, never
                                  used to train or to choose anything
      .complete                   marker, written last

Training and validation images are different photographs (the two stereo_motorcycle views show
the same scene, so both stay on the training side). A set made before the report photos existed
gets them added on its next use.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import shutil
import uuid
from os import path as osp

import cv2
import numpy as np

from serpent_arch.data.subimages import extract_subimages

__all__ = [
    "MARKER",
    "TRAIN_SOURCES",
    "REPORT_SOURCES",
    "VAL_SOURCES",
    "is_prepared",
    "prepare_sample_set",
    "sample_paths",
    "sample_root_for",
]

logger = logging.getLogger("basicsr")

TRAIN_SOURCES = (
    "astronaut",
    "rocket",
    "motorcycle_left",
    "motorcycle_right",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
)
VAL_SOURCES = ("chelsea", "coffee", "grace_hopper")
# The only other natural photographs that ship inside scikit-image's wheel (grayscale).
REPORT_SOURCES = ("camera", "coins", "moon", "grass")

MARKER = ".complete"
FORMAT_VERSION = 1
CROP_SIZE = 192
# step = CROP_SIZE - 96: every 96x96 window of a source image (the quick start's gt_size) lies
# inside at least one sub-image, so cutting loses no training patch position.
CROP_STEP = 96
# Sub-images this flat (std of 8-bit values) are the black corners of the retina photograph and
# teach nothing.
FLAT_STD = 2.0
# Validation GT is mod-cropped to lcm(2, 3, 4) so the x2, x3 and x4 LR sets all fit it exactly.
VAL_MOD = 12
DEFAULT_LR_SCALES = (2, 3, 4)
PNG_LEVEL = 1

_OUTPUTS = ("train.lmdb", "val.lmdb", "val/HR", "report/HR")


def _train_images() -> list[tuple[str, np.ndarray]]:
    """(name, BGR uint8 (H, W, 3)) of the training sources, in :data:`TRAIN_SOURCES` order."""
    from skimage import data

    left, right, _disparity = data.stereo_motorcycle()
    rgb = {
        "astronaut": data.astronaut(),
        "rocket": data.rocket(),
        "motorcycle_left": left,
        "motorcycle_right": right,
        "hubble_deep_field": data.hubble_deep_field(),
        "immunohistochemistry": data.immunohistochemistry(),
        "retina": data.retina(),
    }
    return [(name, cv2.cvtColor(rgb[name], cv2.COLOR_RGB2BGR)) for name in TRAIN_SOURCES]


def _grace_hopper_path() -> str:
    try:
        import matplotlib
    except ImportError as err:
        raise ImportError(
            "The sample validation set needs matplotlib's bundled grace_hopper.jpg: pip install matplotlib"
        ) from err
    return osp.join(matplotlib.get_data_path(), "sample_data", "grace_hopper.jpg")


def _val_images() -> list[tuple[str, np.ndarray]]:
    """(name, BGR uint8 (H, W, 3)) of the validation sources, in :data:`VAL_SOURCES` order."""
    from skimage import data

    path = _grace_hopper_path()
    hopper = cv2.imread(path, cv2.IMREAD_COLOR)
    if hopper is None:
        raise FileNotFoundError(f"cannot read matplotlib's sample image {path}")
    return [
        ("chelsea", cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR)),
        ("coffee", cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)),
        ("grace_hopper", hopper),
    ]


def _report_images() -> list[tuple[str, np.ndarray]]:
    """(name, BGR uint8 (H, W, 3)) of the report photos, in :data:`REPORT_SOURCES` order."""
    from skimage import data

    return [(name, cv2.cvtColor(getattr(data, name)(), cv2.COLOR_GRAY2BGR)) for name in REPORT_SOURCES]


def _write_hr_folder(folder: str, images: list[tuple[str, np.ndarray]]) -> tuple[list[str], int]:
    """Write ``images`` mod-cropped to :data:`VAL_MOD` as PNGs; returns (file names, raw bytes)."""
    names, raw = [], 0
    for source, img in images:
        h, w = img.shape[:2]
        img = img[: h - h % VAL_MOD, : w - w % VAL_MOD]
        _write_png(osp.join(folder, f"{source}.png"), img)
        names.append(f"{source}.png")
        raw += img.nbytes
    return names, raw


def sample_paths(root: str = "datasets/sample", scale: int = 4) -> dict[str, str]:
    """Paths of the sample set's parts under ``root`` (whether or not they exist yet)."""
    return {
        "root": root,
        "train_lmdb": osp.join(root, "train.lmdb"),
        "val_lmdb": osp.join(root, "val.lmdb"),
        "val_hr": osp.join(root, "val", "HR"),
        "val_lr": osp.join(root, "val", "LR_bicubic", f"X{scale}"),
        "report_hr": osp.join(root, "report", "HR"),
    }


def is_prepared(root: str) -> bool:
    """True when ``root`` holds a finished sample set (its marker file is written last)."""
    return osp.isfile(osp.join(root, MARKER))


def sample_root_for(dataroot: str) -> str:
    """The sample-set root holding ``dataroot``: ``datasets/sample/train.lmdb`` -> ``datasets/sample``.

    Raises:
        ValueError: ``dataroot`` is not one of the sample set's parts.
    """
    norm = osp.normpath(dataroot).replace(os.sep, "/")
    for part in _OUTPUTS:
        if norm == part or norm.endswith("/" + part):
            return norm[: -len(part)].rstrip("/") or "."
    match = re.search(r"(^|/)val/LR_bicubic/X\d+$", norm)
    if match:
        return norm[: match.start()] or "."
    raise ValueError(
        f"auto_prepare: sample: dataroot {dataroot!r} is not part of the sample set; expected a path "
        "ending in train.lmdb, val.lmdb, val/HR or val/LR_bicubic/X<scale>"
    )


def _write_png(path: str, img: np.ndarray) -> None:
    if not cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL]):
        raise OSError(f"cannot write {path}")


def _make_lmdb(folder: str, lmdb_path: str, names: list[str], raw_bytes: int) -> None:
    """LMDB of the PNGs ``names`` in ``folder`` (keys = stems) via BasicSR's make_lmdb_from_imgs."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    chatter = io.StringIO()
    # make_lmdb_from_imgs prints progress (stdout) and a tqdm bar (stderr); keep training logs clean.
    with contextlib.redirect_stdout(chatter), contextlib.redirect_stderr(chatter):
        make_lmdb_from_imgs(
            folder,
            lmdb_path,
            names,
            [osp.splitext(n)[0] for n in names],
            compress_level=PNG_LEVEL,
            # Its own estimate (first image x count x 10) overflows when later images are larger;
            # raw pixel bytes bound PNG sizes, and Linux does not preallocate the map.
            map_size=2 * raw_bytes + (16 << 20),
        )
    logger.debug(chatter.getvalue())


def _bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """MATLAB-style bicubic downscale of a BGR uint8 image, rounded to uint8 like benchmark LR sets."""
    from basicsr.utils.matlab_functions import imresize

    lr = imresize(hr.astype(np.float32) / 255.0, 1.0 / scale)
    return np.clip(np.rint(lr * 255.0), 0, 255).astype(np.uint8)


def _write_lr_set(hr_dir: str, out_dir: str, scale: int) -> None:
    for name in sorted(os.listdir(hr_dir)):
        hr = cv2.imread(osp.join(hr_dir, name), cv2.IMREAD_COLOR)
        # A scale that does not divide 12 (e.g. 8) needs its own mod-crop; BasicSR's
        # PairedImageDataset crops the GT to LR size x scale at validation.
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        _write_png(osp.join(out_dir, name), _bicubic_lr(hr, scale))


def _build(tmp: str, scales: list[int]) -> dict:
    """Write a complete sample set into the empty folder ``tmp``; returns the marker's contents."""
    crops_dir = osp.join(tmp, "_train_crops")
    os.makedirs(crops_dir)
    names, raw = [], 0
    for source, img in _train_images():
        kept = [c for c in extract_subimages(img, CROP_SIZE, CROP_STEP) if c.std() >= FLAT_STD]
        for i, crop in enumerate(kept, start=1):
            name = f"{source}_s{i:03d}.png"
            _write_png(osp.join(crops_dir, name), crop)
            names.append(name)
            raw += crop.nbytes
    _make_lmdb(crops_dir, osp.join(tmp, "train.lmdb"), names, raw)
    shutil.rmtree(crops_dir)

    hr_dir = osp.join(tmp, "val", "HR")
    os.makedirs(hr_dir)
    val_names, raw = _write_hr_folder(hr_dir, _val_images())
    os.makedirs(osp.join(tmp, "report", "HR"))
    _write_hr_folder(osp.join(tmp, "report", "HR"), _report_images())
    _make_lmdb(hr_dir, osp.join(tmp, "val.lmdb"), val_names, raw)
    for scale in scales:
        lr_dir = osp.join(tmp, "val", "LR_bicubic", f"X{scale}")
        os.makedirs(lr_dir)
        _write_lr_set(hr_dir, lr_dir, scale)
    return {
        "version": FORMAT_VERSION,
        "train": {
            "sources": list(TRAIN_SOURCES),
            "sub_images": len(names),
            "crop": CROP_SIZE,
            "step": CROP_STEP,
        },
        "val": {"sources": list(VAL_SOURCES), "mod_crop": VAL_MOD, "lr_scales": scales},
        "report": {"sources": list(REPORT_SOURCES), "mod_crop": VAL_MOD},
    }


def _make_temp_dir(parent: str, name: str) -> str:
    """A new uniquely named folder in ``parent``.

    Not tempfile.mkdtemp: its 0700 mode would survive the rename and hide the data set from other
    users; os.mkdir honours the umask like any other folder.
    """
    while True:
        path = osp.join(parent, f".{name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            os.mkdir(path)
            return path
        except FileExistsError:
            continue


def _add_folder(target: str, write) -> None:
    """Create ``target`` atomically: ``write(tmp)`` fills a temporary sibling, which is renamed into
    place (a concurrent process that finished first wins; its folder is kept)."""
    os.makedirs(osp.dirname(target), exist_ok=True)
    tmp = _make_temp_dir(osp.dirname(target), osp.basename(target))
    try:
        write(tmp)
        try:
            os.rename(tmp, target)
        except OSError:
            if not osp.isdir(target):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _add_lr_scale(root: str, scale: int) -> None:
    """Add ``val/LR_bicubic/X{scale}`` to a finished set."""
    target = osp.join(root, "val", "LR_bicubic", f"X{scale}")
    if osp.isdir(target):
        return
    logger.info(f"Sample set {root}: adding bicubic LR for x{scale} in {target}")
    _add_folder(target, lambda tmp: _write_lr_set(osp.join(root, "val", "HR"), tmp, scale))


def _add_report_set(root: str) -> None:
    """Add ``report/HR`` to a set made before it existed."""
    target = osp.join(root, "report", "HR")
    if osp.isdir(target):
        return
    logger.info(f"Sample set {root}: adding the report photos in {target}")
    _add_folder(target, lambda tmp: _write_hr_folder(tmp, _report_images()))


def prepare_sample_set(root: str = "datasets/sample", scale: int = 4) -> dict[str, str]:
    """Create the built-in sample set under ``root`` unless it is already complete.

    The set is built in a temporary folder next to ``root`` and renamed into place in one step, so
    an interrupted run leaves no half-written ``root`` and concurrent processes (e.g. DDP ranks) are
    safe: the first rename wins, the others discard their copy and use the winner's.
    Takes a few seconds.

    Args:
        root: destination folder.
        scale: the SR factor in use; ``val/LR_bicubic/X{scale}`` is made in addition to X2, X3, X4.

    Returns:
        dict with ``root``, ``train_lmdb``, ``val_lmdb``, ``val_hr`` and ``val_lr`` (for ``scale``).

    Raises:
        FileExistsError: ``root`` exists, is not empty and holds no finished sample set.
    """
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"prepare_sample_set: scale must be an integer >= 1, got {scale!r}")
    paths = sample_paths(root, scale)
    if is_prepared(root):
        _add_lr_scale(root, scale)
        _add_report_set(root)
        return paths
    if osp.exists(root) and (not osp.isdir(root) or os.listdir(root)):
        if is_prepared(root):  # another process finished between the two checks
            _add_lr_scale(root, scale)
            _add_report_set(root)
            return paths
        raise FileExistsError(
            f"Sample set folder {root} exists but is not a finished sample set (no {MARKER} marker); "
            "remove it or pick another root."
        )
    parent = osp.dirname(osp.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = _make_temp_dir(parent, osp.basename(osp.abspath(root)))
    logger.info(
        f"Preparing the built-in sample set in {root} (from images bundled with scikit-image/matplotlib)"
    )
    try:
        scales = sorted({*DEFAULT_LR_SCALES, scale})
        info = _build(tmp, scales)
        with open(osp.join(tmp, MARKER), "w") as f:  # last: its presence means "complete"
            json.dump(info, f, indent=1)
        try:
            os.rename(tmp, root)  # atomic; also replaces an empty ``root`` folder
        except OSError:
            if not is_prepared(root):
                raise
            logger.info(f"Sample set {root} was finished by another process; using it")
        else:
            logger.info(
                f"Sample set ready: {info['train']['sub_images']} training sub-images in "
                f"{paths['train_lmdb']}, {len(VAL_SOURCES)} validation images in {paths['val_lmdb']} "
                f"and {paths['val_hr']}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    _add_lr_scale(root, scale)
    return paths
