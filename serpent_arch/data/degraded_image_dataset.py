"""``DegradedImageDataset``: GT images from a folder or LMDB, LQ images made on the fly."""

from __future__ import annotations

import logging
import os
from os import path as osp

import numpy as np
import torch
from basicsr.data.data_util import paths_from_folder
from basicsr.data.transforms import mod_crop
from basicsr.utils import FileClient, bgr2ycbcr, imfrombytes, img2tensor
from basicsr.utils.registry import DATASET_REGISTRY
from torch.utils import data
from torchvision.transforms.functional import normalize

from serpent_arch.data.degradations import build_degradations, deterministic_rng
from serpent_arch.data.photometric import PhotometricAugment
from serpent_arch.data.sample import prepare_sample_set, sample_root_for
from serpent_arch.data.storage import is_image_file, lmdb_entries, lmdb_problems

__all__ = ["DegradedImageDataset"]

logger = logging.getLogger("basicsr")

_AUTO_PREPARE = ("sample",)


def _key_of(relative_name: str) -> str:
    """Image key: path relative to the dataroot, without extension, ``/``-separated.

    For a flat folder this is the file stem, the same key that an LMDB made from that folder uses,
    so a validation set gives the same LQ images from either backend.
    """
    return osp.splitext(relative_name)[0].replace(os.sep, "/")


def _lmdb_keys(lmdb_root: str) -> list[str]:
    meta = osp.join(lmdb_root, "meta_info.txt")
    if not osp.isfile(meta):
        raise FileNotFoundError(
            f"dataroot_gt: LMDB {lmdb_root} has no meta_info.txt listing its keys; make the LMDB with "
            "datasets/make_lmdb.py (basicsr.utils.lmdb_util.make_lmdb_from_imgs writes it)"
        )
    if not osp.isfile(osp.join(lmdb_root, "data.mdb")):
        raise FileNotFoundError(f"dataroot_gt: {lmdb_root} is not an LMDB (no data.mdb)")
    damage = lmdb_problems(lmdb_root, check_keys=False)  # a truncated file would crash the first read
    if damage:
        raise ValueError(f"dataroot_gt: {damage[0]}")
    return [entry.key for entry in lmdb_entries(lmdb_root)]


# One LMDB environment per database file and process, shared by all datasets: lmdb refuses to open
# an environment twice in one process ("already open in this process"), which two datasets on one
# LMDB (train and val, a pickled copy) would otherwise do. A forked DataLoader worker inherits the
# parent's environment and cannot reopen it either, so it reuses the inherited one (read-only).
_LMDB_CLIENTS: dict[tuple, FileClient] = {}


def _lmdb_client(db_path: str, backend_opt: dict) -> FileClient:
    """The process's FileClient for the LMDB ``db_path`` (client key ``gt``), opened on first use."""
    data_file = os.stat(osp.join(db_path, "data.mdb"))
    # the inode tells a re-created LMDB at the same path from the one already open
    key = (osp.realpath(db_path), data_file.st_dev, data_file.st_ino)
    client = _LMDB_CLIENTS.get(key)
    if client is None:
        opts = {k: v for k, v in backend_opt.items() if k not in ("type", "db_paths", "client_keys")}
        client = FileClient("lmdb", db_paths=[db_path], client_keys=["gt"], **opts)
        _LMDB_CLIENTS[key] = client
    return client


@DATASET_REGISTRY.register()
class DegradedImageDataset(data.Dataset):
    """GT images whose LQ counterparts are made on the fly by a degradation pipeline.

    Args:
        opt (dict): BasicSR dataset options:

            dataroot_gt (str): folder of GT images, or an LMDB folder ``*.lmdb`` with meta_info.txt.
            io_backend (dict): ``{type: disk}`` (default) or ``{type: lmdb}``.
            meta_info_file (str, optional, disk only): lines ``name ...``; names relative to dataroot_gt.
            scale (int): SR factor (BasicSR copies the top-level ``scale``); must equal the product of
                the ``bicubic_down`` factors (1 for same-size restoration such as deblurring).
            degradations (list[dict]): steps for :func:`~serpent_arch.data.degradations.build_degradations`.
            phase (str): ``train`` crops/augments with fresh randomness; other phases mod-crop the GT
                and degrade it with a generator seeded from ``(seed, image key)``.
            gt_size (int, train): GT patch size, divisible by ``scale``.
            use_hflip, use_rot (bool, train): BasicSR's flip / rotation augmentation (default false).
            gray_prob (float, train): probability that a patch (with its context) is made gray before it is
                degraded: its luma (BT.601 weights) in every channel. Default 0.
            contrast_prob (float, train): probability that a patch is scaled around its mean colour by a
                factor drawn uniformly from ``contrast_range`` before it is degraded. Default 0.
            contrast_range (list[float], train): ``[low, high]`` with 0 < low <= high <= 1; default
                ``[0.25, 1.0]``. Lower contrast keeps the values inside [0, 1].
            seed (int): default 0; selects the fixed validation degradations.
            center_crop (int, val/test, optional): evaluate the central ``center_crop`` x
                ``center_crop`` GT pixels only (less where the image is smaller, rounded down to a
                multiple of ``scale``); the whole image is degraded first, so the crop's input is
                that of the whole photo. Cuts the evaluation cost of slow networks.
            skip_bad_samples (bool, train): an unreadable or missing image is replaced by the next
                one, with a warning naming it; the trainer reports the count at the end of the epoch
                (default false: the error stops training).
            color (str, optional): ``y`` for the Y channel only (one channel, BasicSR's ``bgr2ycbcr``).
            mean, std (list[float], optional): normalization of both LQ and GT, as in BasicSR.
            auto_prepare (str, optional): ``sample`` builds the built-in sample set when dataroot_gt
                does not exist (see :func:`~serpent_arch.data.sample.prepare_sample_set`).

    Each item is a dict with ``lq`` (float32 ``(C, H / scale, W / scale)``), ``gt`` (float32
    ``(C, H, W)``), both RGB, and ``lq_path`` = ``gt_path`` (file path, or LMDB key); with
    ``skip_bad_samples``, also ``bad_samples_skipped`` (int64 scalar tensor).

    In training under ``basicsr train`` the sampler passes a :class:`~serpent_arch.training.SampleId`
    instead of an index, and every random choice of the item (crop, degradation, flips) is drawn
    from ``(seed, manual_seed, epoch, position in the epoch, index)``: the same whichever worker
    makes it, so a resumed run sees exactly the data of an uninterrupted one.
    """

    uses_sample_ids = True
    _MAX_BAD_IN_A_ROW = 20

    def __init__(self, opt: dict):
        super().__init__()
        self.opt = opt
        self.phase = self._require("phase", "'train', 'val' or 'test' (BasicSR sets it)")
        self.is_train = self.phase == "train"
        self.scale = self._require("scale", "an integer >= 1 (BasicSR copies the top-level scale)")
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"scale: expected an integer >= 1, got {self.scale!r}")
        if "degradations" not in opt:
            raise ValueError(
                "degradations: option missing; expected a list of steps, e.g. [{type: bicubic_down}]"
            )
        self.pipeline = build_degradations(opt["degradations"], self.scale)
        if self.pipeline.scale != self.scale:
            raise ValueError(
                f"degradations: the steps downscale by {self.pipeline.scale} in total (product of "
                f"bicubic_down scales) but scale is {self.scale}; the LQ must be exactly `scale` times "
                "smaller than the GT"
            )
        self.seed = opt.get("seed", 0)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed: expected an integer >= 0, got {self.seed!r}")
        self.color = opt.get("color")
        if self.color not in (None, "y", "rgb"):
            raise ValueError(f"color: expected 'y' (Y channel only) or no value, got {self.color!r}")
        self.mean, self.std = opt.get("mean"), opt.get("std")
        self.center_crop = opt.get("center_crop")
        if self.center_crop is not None and (
            isinstance(self.center_crop, bool) or not isinstance(self.center_crop, int) or self.center_crop < 1
        ):
            raise ValueError(f"center_crop: expected a positive integer or no value, got {self.center_crop!r}")

        if self.is_train:
            self.gt_size = self._require("gt_size", f"the GT patch size, a multiple of scale ({self.scale})")
            if isinstance(self.gt_size, bool) or not isinstance(self.gt_size, int) or self.gt_size < 1:
                raise ValueError(f"gt_size: expected a positive integer, got {self.gt_size!r}")
            if self.gt_size % self.scale:
                raise ValueError(f"gt_size: {self.gt_size} is not divisible by scale {self.scale}")
            self.use_hflip = bool(opt.get("use_hflip", False))
            self.use_rot = bool(opt.get("use_rot", False))
        self.photometric = PhotometricAugment.from_options(self.opt, self.is_train, self.color)

        self.gt_folder = osp.expanduser(str(self._require("dataroot_gt", "a folder of GT images or an LMDB")))
        self._auto_prepare()
        self.io_backend_opt = dict(opt.get("io_backend") or {"type": "disk"})
        backend = self.io_backend_opt.get("type")
        if backend not in ("disk", "lmdb"):
            raise ValueError(f"io_backend.type: expected 'disk' or 'lmdb', got {backend!r}")
        if not osp.isdir(self.gt_folder):
            raise FileNotFoundError(f"dataroot_gt: folder {self.gt_folder} does not exist")
        is_lmdb_dir = self.gt_folder.rstrip("/\\").endswith(".lmdb")
        if backend == "lmdb":
            if not is_lmdb_dir:
                raise ValueError(
                    f"dataroot_gt: io_backend lmdb needs an LMDB folder named *.lmdb, got {self.gt_folder}"
                )
            keys = _lmdb_keys(self.gt_folder)
            self.io_backend_opt["db_paths"] = [self.gt_folder]
            self.io_backend_opt["client_keys"] = ["gt"]
            self.items = [(key, key) for key in keys]
        else:
            if is_lmdb_dir:
                raise ValueError(f"dataroot_gt: {self.gt_folder} is an LMDB; set io_backend: {{type: lmdb}}")
            self.items = self._disk_items()
        if not self.items:
            raise ValueError(f"dataroot_gt: no images found in {self.gt_folder}")
        self.skip_bad_samples = bool(opt.get("skip_bad_samples", False))
        if self.skip_bad_samples and not self.is_train:
            raise ValueError(
                "skip_bad_samples: only for training sets; a validation or test set must be complete "
                "(metrics over a changed set are not comparable)"
            )
        self.file_client = None
        # Training draws: mixed into each item's seed so that repeated visits of the same index in
        # one process (num_workers=0, persistent workers) get new degradations.
        self._draws = 0

    def _require(self, key: str, expected: str):
        if key not in self.opt or self.opt[key] is None:
            raise ValueError(f"{key}: option missing; expected {expected}")
        return self.opt[key]

    def _auto_prepare(self) -> None:
        mode = self.opt.get("auto_prepare")
        if not mode:
            return
        if mode not in _AUTO_PREPARE:
            raise ValueError(
                f"auto_prepare: expected one of {', '.join(_AUTO_PREPARE)} or no value, got {mode!r}"
            )
        if osp.exists(self.gt_folder):
            return
        root = sample_root_for(self.gt_folder)
        logger.info(
            f"dataroot_gt {self.gt_folder} does not exist; auto_prepare: sample builds it under {root}"
        )
        prepare_sample_set(root, scale=self.scale)
        if not osp.exists(self.gt_folder):
            raise FileNotFoundError(
                f"auto_prepare: prepared the sample set in {root}, but {self.gt_folder} is not in it"
            )

    def _disk_items(self) -> list[tuple[str, str]]:
        """(key, path) of every GT image, from meta_info_file or by listing dataroot_gt."""
        meta = self.opt.get("meta_info_file")
        if meta:
            if not osp.isfile(meta):
                raise FileNotFoundError(f"meta_info_file: {meta} does not exist")
            with open(meta) as f:
                names = [line.split()[0] for line in f if line.strip()]
            return [(_key_of(n), osp.join(self.gt_folder, n)) for n in names]
        paths = sorted(
            p
            for p in paths_from_folder(self.gt_folder)
            if is_image_file(p)
        )
        return [(_key_of(osp.relpath(p, self.gt_folder)), p) for p in paths]

    def __getstate__(self):
        # LMDB environments cannot be pickled (spawned DataLoader workers, DDP); the receiving
        # process opens its own on first use.
        state = self.__dict__.copy()
        state["file_client"] = None
        return state

    def _load(self, key: str, path: str) -> np.ndarray:
        """Float32 BGR ``(H, W, 3)`` GT image in [0, 1]."""
        if self.file_client is None:
            if self.io_backend_opt["type"] == "lmdb":
                self.file_client = _lmdb_client(self.gt_folder, self.io_backend_opt)
            else:
                backend = dict(self.io_backend_opt)
                self.file_client = FileClient(backend.pop("type"), **backend)
        try:
            content = self.file_client.get(path, "gt")
        except FileNotFoundError as err:
            raise FileNotFoundError(
                f"GT image {path} does not exist (listed for dataroot_gt {self.gt_folder})"
            ) from err
        if content is None:  # the LMDB backend returns None for a missing key
            raise LookupError(
                f"LMDB key {key!r} not found in {self.gt_folder} (it is listed in its meta_info.txt)"
            )
        img = imfrombytes(content)  # not float32=True: it would fail on None before we can name the file
        if img is None:
            raise ValueError(
                f"cannot decode GT image {path} (in {self.gt_folder}): not a readable image file"
            )
        return img.astype(np.float32) / np.float32(255.0)

    def _train_rng(self, index: int, sample_id=None) -> np.random.Generator:
        """A new generator for one training draw.

        With a sample id (``basicsr train``): a function of where the item is in the training run.
        Without one (a plain DataLoader), torch.initial_seed() differs per DataLoader worker and per
        epoch (and follows BasicSR's manual seed in the main process); the index and the draw
        counter separate items.
        """
        if sample_id is not None:
            entropy = [self.seed, sample_id.seed, sample_id.epoch, sample_id.position, index]
            return np.random.default_rng(np.random.SeedSequence(entropy))
        self._draws += 1
        entropy = [self.seed, torch.initial_seed() % (1 << 64), index, self._draws]
        return np.random.default_rng(np.random.SeedSequence(entropy))

    def _train_pair(
        self, img: np.ndarray, rng: np.random.Generator, path: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Random GT patch and its degraded LQ; the patch is degraded with surrounding context.

        Cropping first and degrading the bare patch would make its borders reflected padding for
        blur and bicubic; with up to ``context_margin`` pixels of real image around it, the LQ patch
        matches a crop of a fully degraded image, like validation/test inputs.
        """
        s, size = self.scale, self.gt_size
        h, w = img.shape[:2]
        if h < size or w < size:
            raise ValueError(
                f"GT image {path} is {h}x{w}, smaller than gt_size {size}; remove it or lower gt_size"
            )
        top = int(rng.integers(0, h - size + 1))
        left = int(rng.integers(0, w - size + 1))
        margin = self.pipeline.context_margin
        # context extends by multiples of s so the LQ grid lines up with the GT patch
        ctx_top = top - min(margin, top) // s * s
        ctx_left = left - min(margin, left) // s * s
        ctx_bottom = top + size + min(margin, h - top - size) // s * s
        ctx_right = left + size + min(margin, w - left - size) // s * s
        region = self.photometric(img[ctx_top:ctx_bottom, ctx_left:ctx_right], rng)
        lq = self.pipeline(region, rng)
        y, x = (top - ctx_top) // s, (left - ctx_left) // s
        lq = np.ascontiguousarray(lq[y : y + size // s, x : x + size // s])
        gt_top, gt_left = top - ctx_top, left - ctx_left
        gt = np.ascontiguousarray(region[gt_top : gt_top + size, gt_left : gt_left + size])
        # Flips/rotations after degrading keep GT and LQ aligned; the degradations are isotropic,
        # so this matches degrading the flipped patch. Drawn from `rng` (BasicSR's augment uses
        # Python's `random`, whose state in a DataLoader worker a resumed run cannot restore).
        hflip, vflip, transpose = (bool(flag) for flag in rng.random(3) < 0.5)
        pair = [gt, lq]
        if self.use_hflip and hflip:
            pair = [img[:, ::-1] for img in pair]
        if self.use_rot and vflip:
            pair = [img[::-1] for img in pair]
        if self.use_rot and transpose:
            pair = [img.transpose(1, 0, 2) for img in pair]
        gt, lq = (np.ascontiguousarray(img) for img in pair)
        return gt, lq

    def _center_pair(self, gt: np.ndarray, lq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The central ``center_crop`` square of GT (H, W, C) and the matching part of LQ."""
        s = self.scale
        h, w = lq.shape[:2]
        size = min(self.center_crop // s, h, w)
        top, left = (h - size) // 2, (w - size) // 2
        lq = lq[top : top + size, left : left + size]
        gt = gt[top * s : (top + size) * s, left * s : (left + size) * s]
        return np.ascontiguousarray(gt), np.ascontiguousarray(lq)

    def __getitem__(self, index) -> dict:
        sample_id = index if isinstance(index, tuple) else None
        index = int(sample_id.index) if sample_id is not None else index
        if not self.skip_bad_samples:
            return self._item(index, sample_id)
        for skipped in range(self._MAX_BAD_IN_A_ROW):
            position = (index + skipped) % len(self.items)
            try:
                item = self._item(position, sample_id)
            except (OSError, LookupError, ValueError) as err:
                logger.warning(f"skip_bad_samples: skipping {self.items[position][1]}: {err}")
                continue
            item["bad_samples_skipped"] = torch.tensor(skipped)
            return item
        raise RuntimeError(
            f"skip_bad_samples: {self._MAX_BAD_IN_A_ROW} bad samples in a row from index {index} in "
            f"{self.gt_folder}; the dataset looks broken (see the warnings above)"
        )

    def _item(self, index: int, sample_id) -> dict:
        key, path = self.items[index]
        img = self._load(key, path)
        if self.color == "y":
            # Degrade the Y image itself so the noise/JPEG statistics are those of a 1-channel input.
            img = bgr2ycbcr(img, y_only=True)[..., None]
        if self.is_train:
            img_gt, img_lq = self._train_pair(img, self._train_rng(index, sample_id), path)
        else:
            img_gt = mod_crop(img, self.scale)
            if img_gt.shape[0] == 0 or img_gt.shape[1] == 0:
                raise ValueError(
                    f"GT image {path} ({img.shape[0]}x{img.shape[1]}) is smaller than scale {self.scale}"
                )
            img_lq = self.pipeline(img_gt, deterministic_rng(self.seed, key))
            if self.center_crop:
                img_gt, img_lq = self._center_pair(img_gt, img_lq)
        img_gt, img_lq = img2tensor([img_gt, img_lq], bgr2rgb=True, float32=True)
        if self.mean is not None or self.std is not None:
            normalize(img_lq, self.mean, self.std, inplace=True)
            normalize(img_gt, self.mean, self.std, inplace=True)
        return {"lq": img_lq, "gt": img_gt, "lq_path": path, "gt_path": path}

    def __len__(self) -> int:
        return len(self.items)
