"""Tests of the data side: degradations, DegradedImageDataset, the sample set and datasets/ scripts."""

from __future__ import annotations

import os
import pickle
import shutil
import threading
from os import path as osp

import serpent_arch  # noqa: F401  (must precede basicsr: applies the compatibility fixes)

# isort: split
import cv2
import numpy as np
import pytest
import torch
from basicsr.data.paired_image_dataset import PairedImageDataset
from basicsr.utils.lmdb_util import make_lmdb_from_imgs
from basicsr.utils.registry import DATASET_REGISTRY
from e2e_util import dataset_script

from serpent_arch.data import sample as sample_mod
from serpent_arch.data.degradations import build_degradations, deterministic_rng
from serpent_arch.data.degraded_image_dataset import DegradedImageDataset
from serpent_arch.data.sample import MARKER, VAL_SOURCES, prepare_sample_set, sample_root_for

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
FULL = [
    {"type": "blur", "kernel_size": 9, "sigma": [0.5, 2.0]},
    {"type": "bicubic_down"},
    {"type": "noise", "sigma": [5, 15]},
    {"type": "jpeg", "quality": [40, 90]},
]




def _textured(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Float32 BGR (h, w, 3) image in [0, 1] with both smooth and sharp structure."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    smooth = 0.5 + 0.25 * np.sin(x / 7.0)[..., None] * np.cos(y / 5.0)[..., None]
    return np.clip(smooth + 0.2 * rng.random((h, w, 3), dtype=np.float32), 0, 1).astype(np.float32)


def _write_images(folder, sizes: dict[str, tuple[int, int]], ext: str = ".png") -> None:
    os.makedirs(folder, exist_ok=True)
    for i, (name, (h, w)) in enumerate(sizes.items()):
        img = (_textured(h, w, seed=i) * 255).round().astype(np.uint8)
        assert cv2.imwrite(osp.join(folder, name + ext), img)


def _opt(root, phase: str = "val", **kw) -> dict:
    opt = {
        "name": "t",
        "type": "DegradedImageDataset",
        "dataroot_gt": str(root),
        "io_backend": {"type": "disk"},
        "scale": 4,
        "phase": phase,
        "degradations": FULL,
    }
    if phase == "train":
        opt.update(gt_size=32, use_hflip=True, use_rot=True)
    opt.update(kw)
    return opt


@pytest.fixture
def gt_folder(tmp_path):
    folder = tmp_path / "gt"
    _write_images(folder, {"a": (50, 61), "b": (64, 64), "c": (41, 70)})
    return folder


@pytest.fixture
def gt_lmdb(tmp_path, gt_folder):
    lmdb_path = str(tmp_path / "gt.lmdb")
    names = sorted(os.listdir(gt_folder))
    make_lmdb_from_imgs(str(gt_folder), lmdb_path, names, [osp.splitext(n)[0] for n in names])
    return lmdb_path


@pytest.fixture(scope="session")
def sample_root(tmp_path_factory):
    """The sample set, built once through the dataset's ``auto_prepare: sample`` option."""
    root = tmp_path_factory.mktemp("prep") / "sample"
    ds = DegradedImageDataset(
        {
            "name": "sample_val",
            "dataroot_gt": str(root / "val.lmdb"),
            "io_backend": {"type": "lmdb"},
            "auto_prepare": "sample",
            "scale": 4,
            "phase": "val",
            "degradations": [{"type": "bicubic_down"}],
        }
    )
    assert len(ds) == len(VAL_SOURCES)
    return root


# ---------------------------------------------------------------- degradations


def test_blur_reduces_high_frequencies():
    img = _textured(64, 64)
    out = build_degradations([{"type": "blur", "kernel_size": 21, "sigma": 2.0}])(
        img, np.random.default_rng(0)
    )
    assert out.shape == img.shape and out.dtype == np.float32
    energy = [np.abs(cv2.Laplacian(im, cv2.CV_32F)).mean() for im in (img, out)]
    assert energy[1] < 0.2 * energy[0]
    # sigma 0 is the identity, not OpenCV's "derive sigma from the size"
    same = build_degradations([{"type": "blur", "kernel_size": 5, "sigma": 0}])(img, np.random.default_rng(0))
    np.testing.assert_allclose(same, img, atol=1e-6)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_down_shape(scale):
    img = _textured(12 * 5, 12 * 4)
    out = build_degradations([{"type": "bicubic_down"}], scale)(img, np.random.default_rng(0))
    assert out.shape == (60 // scale, 48 // scale, 3) and out.dtype == np.float32
    own = build_degradations([{"type": "bicubic_down", "scale": 2}], scale)
    assert own.scale == 2 and own(img, np.random.default_rng(0)).shape == (30, 24, 3)
    gray = build_degradations([{"type": "bicubic_down"}], scale)(img[..., :1], np.random.default_rng(0))
    assert gray.shape == (60 // scale, 48 // scale, 1)


def test_bicubic_down_needs_divisible_size():
    with pytest.raises(ValueError, match=r"degradations\[0\] \(bicubic_down\): image size 50x48 .* scale 4"):
        build_degradations([{"type": "bicubic_down"}], 4)(_textured(50, 48), np.random.default_rng(0))


def test_noise_std_matches_sigma_without_clipping():
    flat = np.zeros((256, 256, 3), np.float32)  # 0: unclipped noise must go negative
    out = build_degradations([{"type": "noise", "sigma": 25}])(flat, np.random.default_rng(0))
    assert abs(out.std() - 25 / 255) < 0.01 * 25 / 255
    assert abs(out.mean()) < 1e-3 and out.min() < 0
    clipped = build_degradations([{"type": "noise", "sigma": 25, "clip": True}])(
        flat, np.random.default_rng(0)
    )
    assert clipped.min() == 0 and clipped.max() <= 1


def test_jpeg_changes_image_and_quantizes():
    img = _textured(48, 48)
    out = build_degradations([{"type": "jpeg", "quality": 20}])(img, np.random.default_rng(0))
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.abs(out - img).mean() > 1e-3
    np.testing.assert_allclose(out * 255, np.round(out * 255), atol=1e-3)
    gray = build_degradations([{"type": "jpeg", "quality": 50}])(img[..., :1], np.random.default_rng(0))
    assert gray.shape == (48, 48, 1)


def test_pipeline_order_params_and_ranges():
    pipe = build_degradations(FULL, 4)
    assert pipe.scale == 4 and len(pipe) == 4
    lq, params = pipe.apply(_textured(64, 48), np.random.default_rng(1))
    assert lq.shape == (16, 12, 3)
    assert [p["type"] for p in params] == ["blur", "bicubic_down", "noise", "jpeg"]
    assert (
        0.5 <= params[0]["sigma"] <= 2.0
        and 5 <= params[2]["sigma"] <= 15
        and 40 <= params[3]["quality"] <= 90
    )
    assert isinstance(params[3]["quality"], int)
    pipe(_textured(64, 48), np.random.default_rng(1))
    assert pipe.last_params == params  # same generator state -> same draws
    assert build_degradations([]).scale == 1


def test_same_seed_same_output_different_keys_differ():
    pipe, img = build_degradations(FULL, 4), _textured(64, 64)
    a = pipe(img, deterministic_rng(0, "0001"))
    assert np.array_equal(a, pipe(img, deterministic_rng(0, "0001")))
    assert not np.array_equal(a, pipe(img, deterministic_rng(0, "0002")))
    assert not np.array_equal(a, pipe(img, deterministic_rng(1, "0001")))


@pytest.mark.parametrize(
    "steps, message",
    [
        (
            [{"type": "sharpen"}],
            r"degradations\[0\]: unknown type 'sharpen'; expected one of blur, bicubic_down",
        ),
        ([{"sigma": 2}], r"degradations\[0\]: missing key 'type'"),
        ([{"type": "bicubic_down"}, {"type": "noise"}], r"degradations\[1\] \(noise\): missing key 'sigma'"),
        ([{"type": "noise", "sigma": 5, "sigmaa": 3}], r"degradations\[0\] \(noise\): unknown key 'sigmaa'"),
        (
            [{"type": "bicubic_down"}, {"type": "noise", "sigma": -5}],
            r"degradations\[1\] \(noise\): sigma must be >= 0, got -5",
        ),
        ([{"type": "blur", "sigma": [-1, 2]}], r"degradations\[0\] \(blur\): sigma must be >= 0, got -1"),
        (
            [{"type": "blur", "sigma": 1, "kernel_size": 20}],
            r"degradations\[0\] \(blur\): kernel_size must be an odd integer >= 1, got 20",
        ),
        (
            [{"type": "blur", "sigma": 1, "kernel_size": 0}],
            r"degradations\[0\] \(blur\): kernel_size must be an odd integer >= 1, got 0",
        ),
        ([{"type": "jpeg", "quality": 0}], r"degradations\[0\] \(jpeg\): quality must be in 1..100, got 0"),
        (
            [{"type": "jpeg", "quality": [50, 101]}],
            r"degradations\[0\] \(jpeg\): quality must be in 1..100, got 101",
        ),
        (
            [{"type": "jpeg", "quality": [90, 30]}],
            r"degradations\[0\] \(jpeg\): quality range must be \[min, max\] with min <= max",
        ),
        (
            [{"type": "noise", "sigma": [20, 10]}],
            r"degradations\[0\] \(noise\): sigma range must be \[min, max\]",
        ),
        (
            [{"type": "noise", "sigma": "25"}],
            r"degradations\[0\] \(noise\): sigma must be a number or \[min, max\]",
        ),
        (
            [{"type": "noise", "sigma": 5, "clip": "yes"}],
            r"degradations\[0\] \(noise\): clip must be true or false",
        ),
        (
            [{"type": "bicubic_down", "scale": 0}],
            r"degradations\[0\] \(bicubic_down\): scale must be an integer >= 1, got 0",
        ),
        ([["blur"]], r"degradations\[0\]: expected a mapping"),
    ],
)
def test_invalid_steps_name_step_and_key(steps, message):
    with pytest.raises(ValueError, match=message):
        build_degradations(steps, 4)


def test_bicubic_down_without_any_scale():
    with pytest.raises(ValueError, match=r"degradations\[0\] \(bicubic_down\): no scale"):
        build_degradations([{"type": "bicubic_down"}])
    with pytest.raises(ValueError, match=r"degradations: expected a list"):
        build_degradations({"type": "blur"}, 4)


# ---------------------------------------------------------------- dataset


def test_registered():
    assert DATASET_REGISTRY.get("DegradedImageDataset") is DegradedImageDataset


def test_val_from_folder_is_deterministic_and_mod_cropped(gt_folder):
    ds = DegradedImageDataset(_opt(gt_folder))
    assert len(ds) == 3
    item = ds[0]
    assert item["gt"].shape == (3, 48, 60) and item["lq"].shape == (3, 12, 15)  # a.png is 50x61
    assert item["gt"].dtype == torch.float32 and item["lq_path"] == item["gt_path"] == str(
        gt_folder / "a.png"
    )
    again = DegradedImageDataset(_opt(gt_folder))[0]
    assert torch.equal(item["lq"], again["lq"])
    assert not torch.equal(item["lq"], DegradedImageDataset(_opt(gt_folder, seed=1))[0]["lq"])
    # RGB like BasicSR: channel 0 of the tensor is the file's last (red) channel
    bgr = cv2.imread(str(gt_folder / "a.png")).astype(np.float32) / 255
    np.testing.assert_allclose(item["gt"][0].numpy(), bgr[:48, :60, 2], atol=1e-6)


@pytest.mark.parametrize("size", [16, 1000])
def test_center_crop_is_the_middle_of_the_whole_image_pair(gt_folder, size):
    whole = DegradedImageDataset(_opt(gt_folder))[0]  # GT 48x60, LQ 12x15
    item = DegradedImageDataset(_opt(gt_folder, center_crop=size))[0]
    side = min(size // 4, 12)
    top, left = (12 - side) // 2, (15 - side) // 2
    torch.testing.assert_close(item["lq"], whole["lq"][:, top : top + side, left : left + side])
    torch.testing.assert_close(item["gt"], whole["gt"][:, 4 * top : 4 * (top + side), 4 * left : 4 * (left + side)])
    with pytest.raises(ValueError, match="center_crop: expected a positive integer"):
        DegradedImageDataset(_opt(gt_folder, center_crop=0))


def test_lmdb_matches_folder(gt_folder, gt_lmdb):
    from_lmdb = DegradedImageDataset(_opt(gt_lmdb, io_backend={"type": "lmdb"}))
    from_disk = DegradedImageDataset(_opt(gt_folder))
    assert [from_lmdb[i]["lq_path"] for i in range(3)] == ["a", "b", "c"]
    for i in range(3):  # key = stem in both backends -> the same fixed degradation
        assert torch.equal(from_lmdb[i]["lq"], from_disk[i]["lq"])
        assert torch.equal(from_lmdb[i]["gt"], from_disk[i]["gt"])
    # the LMDB environment is opened lazily per process and is not pickled (spawned workers, DDP)
    clone = pickle.loads(pickle.dumps(from_lmdb))
    assert clone.file_client is None and torch.equal(clone[2]["lq"], from_lmdb[2]["lq"])


def test_meta_info_file(tmp_path, gt_folder):
    meta = tmp_path / "meta.txt"
    meta.write_text("c.png (41,70,3) 1\nb.png (64,64,3) 1\n")
    ds = DegradedImageDataset(_opt(gt_folder, meta_info_file=str(meta)))
    assert [osp.basename(ds[i]["gt_path"]) for i in range(len(ds))] == ["c.png", "b.png"]


@pytest.mark.parametrize("scale, gt_size", [(4, 32), (2, 32), (3, 36), (1, 24)])
def test_train_crop_sizes(gt_folder, scale, gt_size):
    steps = [{"type": "blur", "sigma": 1.0}] + ([{"type": "bicubic_down"}] if scale > 1 else [])
    ds = DegradedImageDataset(_opt(gt_folder, "train", scale=scale, gt_size=gt_size, degradations=steps))
    for i in range(len(ds)):
        item = ds[i]
        assert item["gt"].shape == (3, gt_size, gt_size)
        assert item["lq"].shape == (3, gt_size // scale, gt_size // scale)


class _FixedCrop:
    """Stands in for the training generator: fixed crop corner, no other randomness needed."""

    def __init__(self, top: int, left: int):
        self.values = [top, left]

    def integers(self, low, high):
        return self.values.pop(0)

    def random(self, size):
        return np.ones(size)  # no flips


@pytest.mark.parametrize("top, left", [(20, 12), (0, 32), (4, 0)])
def test_train_patch_is_degraded_with_context(gt_folder, top, left):
    """A training LQ patch equals the same crop of the degraded whole image, not a reflect-padded patch."""
    steps = [{"type": "blur", "kernel_size": 5, "sigma": 1.0}, {"type": "bicubic_down"}]
    ds = DegradedImageDataset(
        _opt(gt_folder, "train", gt_size=32, degradations=steps, use_hflip=False, use_rot=False)
    )
    img = cv2.imread(str(gt_folder / "b.png")).astype(np.float32) / 255  # 64x64
    full = ds.pipeline(img, np.random.default_rng(0))
    gt, lq = ds._train_pair(img, _FixedCrop(top, left), "b.png")
    np.testing.assert_array_equal(gt, img[top : top + 32, left : left + 32])
    np.testing.assert_allclose(lq, full[top // 4 : top // 4 + 8, left // 4 : left // 4 + 8], atol=1e-5)


def test_train_rng_differs_across_calls(gt_folder):
    steps = [{"type": "bicubic_down"}, {"type": "noise", "sigma": 10}]
    ds = DegradedImageDataset(_opt(gt_folder, "train", degradations=steps, use_hflip=False, use_rot=False))
    first, second = ds[0], ds[0]
    assert not torch.equal(first["lq"], second["lq"])


def test_train_in_dataloader_workers(gt_folder):
    ds = DegradedImageDataset(_opt(gt_folder, "train"))
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2)
    batch = next(iter(loader))
    assert batch["lq"].shape == (3, 3, 8, 8) and batch["gt"].shape == (3, 3, 32, 32)


def test_color_y_and_normalize(gt_folder):
    item = DegradedImageDataset(_opt(gt_folder, color="y", mean=[0.5], std=[0.5]))[1]
    assert item["gt"].shape == (1, 64, 64) and item["lq"].shape == (1, 16, 16)
    assert item["gt"].min() < 0  # normalized to roughly [-1, 1]


def test_train_image_smaller_than_gt_size(gt_folder):
    ds = DegradedImageDataset(_opt(gt_folder, "train", gt_size=48))
    with pytest.raises(ValueError, match=r"c\.png is 41x70, smaller than gt_size 48"):
        [ds[i] for i in range(len(ds))]


def test_unreadable_image_names_the_file(gt_folder):
    (gt_folder / "broken.png").write_bytes(b"not a png")
    ds = DegradedImageDataset(_opt(gt_folder))
    index = [osp.basename(p) for _, p in ds.items].index("broken.png")
    with pytest.raises(ValueError, match=r"cannot decode GT image .*broken\.png"):
        ds[index]


def test_lmdb_without_meta_info(gt_lmdb):
    os.remove(osp.join(gt_lmdb, "meta_info.txt"))
    with pytest.raises(FileNotFoundError, match=r"dataroot_gt: LMDB .*gt\.lmdb has no meta_info\.txt"):
        DegradedImageDataset(_opt(gt_lmdb, io_backend={"type": "lmdb"}))


def test_lmdb_key_not_found(gt_lmdb):
    with open(osp.join(gt_lmdb, "meta_info.txt"), "a") as f:
        f.write("ghost.png (8,8,3) 1\n")
    ds = DegradedImageDataset(_opt(gt_lmdb, io_backend={"type": "lmdb"}))
    with pytest.raises(LookupError, match=r"LMDB key 'ghost' not found in .*gt\.lmdb"):
        ds[3]


def _without(key):
    return lambda paths: {k: v for k, v in _opt(paths["folder"]).items() if k != key}


@pytest.mark.parametrize(
    "make_opt, error, message",
    [
        (lambda p: _opt(p["tmp"] / "nope"), FileNotFoundError, r"dataroot_gt: folder .*nope does not exist"),
        (lambda p: _opt(p["tmp"]), ValueError, r"dataroot_gt: no images found in"),
        (
            lambda p: _opt(p["folder"], degradations=[{"type": "bicubic_down", "scale": 2}]),
            ValueError,
            r"degradations: the steps downscale by 2 in total .* but scale is 4",
        ),
        (
            lambda p: _opt(p["folder"], degradations=[{"type": "blur", "sigma": 1}]),
            ValueError,
            r"degradations: the steps downscale by 1 in total",
        ),
        (
            lambda p: _opt(
                p["folder"], degradations=[{"type": "bicubic_down"}, {"type": "noise", "sigma": -5}]
            ),
            ValueError,
            r"degradations\[1\] \(noise\): sigma must be >= 0, got -5",
        ),
        (
            lambda p: _opt(p["folder"], "train", gt_size=30),
            ValueError,
            r"gt_size: 30 is not divisible by scale 4",
        ),
        (lambda p: _opt(p["folder"], scale=0), ValueError, r"scale: expected an integer >= 1, got 0"),
        (lambda p: _opt(p["folder"], seed=-1), ValueError, r"seed: expected an integer >= 0, got -1"),
        (lambda p: _opt(p["folder"], color="lab"), ValueError, r"color: expected 'y'"),
        (
            lambda p: _opt(p["folder"], io_backend={"type": "lmdb"}),
            ValueError,
            r"dataroot_gt: io_backend lmdb needs an LMDB folder named \*\.lmdb",
        ),
        (
            lambda p: _opt(p["lmdb"]),
            ValueError,
            r"dataroot_gt: .*gt\.lmdb is an LMDB; set io_backend: \{type: lmdb\}",
        ),
        (
            lambda p: _opt(p["folder"], io_backend={"type": "memcached"}),
            ValueError,
            r"io_backend\.type: expected 'disk' or 'lmdb', got 'memcached'",
        ),
        (
            lambda p: _opt(p["folder"], auto_prepare="div2k"),
            ValueError,
            r"auto_prepare: expected one of sample",
        ),
        (
            lambda p: _opt(p["folder"], meta_info_file=str(p["tmp"] / "m.txt")),
            FileNotFoundError,
            r"meta_info_file: .*m\.txt does not exist",
        ),
        (_without("degradations"), ValueError, r"degradations: option missing"),
        (_without("phase"), ValueError, r"phase: option missing"),
        (_without("scale"), ValueError, r"scale: option missing"),
        (_without("dataroot_gt"), ValueError, r"dataroot_gt: option missing"),
    ],
    ids=[
        "missing-folder",
        "empty-folder",
        "scale-mismatch",
        "no-downscale",
        "bad-step",
        "gt-size",
        "scale",
        "seed",
        "color",
        "lmdb-backend-on-folder",
        "folder-backend-on-lmdb",
        "memcached",
        "auto-prepare",
        "meta-info-file",
        "no-degradations",
        "no-phase",
        "no-scale",
        "no-dataroot",
    ],  # fmt: skip
)
def test_dataset_option_errors(tmp_path, gt_folder, gt_lmdb, make_opt, error, message):
    paths = {"tmp": tmp_path, "folder": gt_folder, "lmdb": gt_lmdb}
    with pytest.raises(error, match=message):
        DegradedImageDataset(make_opt(paths))


# ---------------------------------------------------------------- sample set


def test_sample_set_layout_and_split(sample_root):
    assert (sample_root / MARKER).is_file()
    train_keys = [
        ln.split()[0] for ln in (sample_root / "train.lmdb" / "meta_info.txt").read_text().splitlines()
    ]
    val_keys = [ln.split()[0] for ln in (sample_root / "val.lmdb" / "meta_info.txt").read_text().splitlines()]
    assert len(train_keys) > 300 and all(k.endswith(".png") for k in train_keys)
    assert sorted(val_keys) == sorted(f"{s}.png" for s in VAL_SOURCES)
    train_sources = {k.rsplit("_s", 1)[0] for k in train_keys}
    assert train_sources == set(sample_mod.TRAIN_SOURCES) and not train_sources & set(VAL_SOURCES)
    for name in val_keys:
        hr = cv2.imread(str(sample_root / "val" / "HR" / name))
        assert hr.shape[0] % 12 == 0 and hr.shape[1] % 12 == 0
        for s in (2, 3, 4):
            lr = cv2.imread(str(sample_root / "val" / "LR_bicubic" / f"X{s}" / name))
            assert lr.shape == (hr.shape[0] // s, hr.shape[1] // s, 3)
    report = sorted(os.listdir(sample_root / "report" / "HR"))
    assert report == sorted(f"{s}.png" for s in sample_mod.REPORT_SOURCES)
    assert not {*sample_mod.REPORT_SOURCES} & {*VAL_SOURCES, *sample_mod.TRAIN_SOURCES}
    for name in report:
        hr = cv2.imread(str(sample_root / "report" / "HR" / name))
        assert hr.shape[0] % 12 == 0 and hr.shape[1] % 12 == 0 and hr.shape[2] == 3
    train = DegradedImageDataset(
        _opt(
            sample_root / "train.lmdb",
            "train",
            io_backend={"type": "lmdb"},
            gt_size=96,
            degradations=[{"type": "bicubic_down"}],
        )
    )
    item = train[len(train) - 1]
    assert item["gt"].shape == (3, 96, 96) and item["lq"].shape == (3, 24, 24)


def test_sample_set_is_idempotent(sample_root):
    marker = sample_root / MARKER
    before = marker.stat().st_mtime_ns
    paths = prepare_sample_set(str(sample_root), scale=4)
    assert marker.stat().st_mtime_ns == before
    assert paths["val_lr"] == str(sample_root / "val" / "LR_bicubic" / "X4")
    assert not [n for n in os.listdir(sample_root.parent) if ".tmp-" in n]


def test_report_photos_are_added_to_a_set_made_before_them(sample_root, tmp_path):
    old = tmp_path / "old_sample"
    shutil.copytree(sample_root, old)
    shutil.rmtree(old / "report")
    prepare_sample_set(str(old), scale=4)
    assert sorted(os.listdir(old / "report" / "HR")) == sorted(os.listdir(sample_root / "report" / "HR"))
    assert sample_root_for(str(old / "report" / "HR")) == str(old)


def test_paired_image_dataset_on_sample_val(sample_root):
    """BasicSR's own PairedImageDataset reads val/HR + val/LR_bicubic/X4 unchanged."""
    paired = PairedImageDataset(
        {
            "dataroot_gt": str(sample_root / "val" / "HR"),
            "dataroot_lq": str(sample_root / "val" / "LR_bicubic" / "X4"),
            "io_backend": {"type": "disk"},
            "filename_tmpl": "{}",
            "scale": 4,
            "phase": "val",
        }
    )
    ours = DegradedImageDataset(
        _opt(sample_root / "val.lmdb", io_backend={"type": "lmdb"}, degradations=[{"type": "bicubic_down"}])
    )
    assert len(paired) == len(ours) == 3
    by_key = {ours[i]["gt_path"]: ours[i] for i in range(3)}
    for i in range(3):  # PairedImageDataset keeps the folder's listing order
        p = paired[i]
        o = by_key[osp.splitext(osp.basename(p["gt_path"]))[0]]
        assert p["gt"].shape == o["gt"].shape and p["lq"].shape == o["lq"].shape
        assert torch.equal(p["gt"], o["gt"])
        # on-the-fly bicubic = the stored 8-bit LR up to rounding
        assert (p["lq"] - o["lq"].clamp(0, 1)).abs().max() <= 0.5 / 255 + 1e-6


def _fake_build(tmp, scales):
    """Stand-in for the real build: a tiny but structurally complete set, slow enough to race."""
    _write_images(osp.join(tmp, "val", "HR"), {"x": (24, 24)})
    for s in scales:
        _write_images(osp.join(tmp, "val", "LR_bicubic", f"X{s}"), {"x": (24 // s, 24 // s)})
    threading.Event().wait(0.2)
    return {"fake": True, "train": {"sub_images": 0}, "thread": threading.get_ident()}


def test_sample_prep_concurrent_and_interrupted(tmp_path, monkeypatch):
    monkeypatch.setattr(sample_mod, "_build", _fake_build)
    root = tmp_path / "sample"
    errors = []

    def run():
        try:
            prepare_sample_set(str(root), scale=4)
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and (root / MARKER).is_file()
    assert sorted(os.listdir(tmp_path)) == ["sample"]  # the losers' temporary copies are gone

    def crash(tmp, scales):
        _write_images(osp.join(tmp, "val", "HR"), {"x": (24, 24)})
        raise KeyboardInterrupt

    interrupted = tmp_path / "other"
    monkeypatch.setattr(sample_mod, "_build", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_sample_set(str(interrupted))
    assert sorted(os.listdir(tmp_path)) == ["sample"]  # no half-written root, no temp folder

    interrupted.mkdir()
    (interrupted / "stray.txt").write_text("x")
    with pytest.raises(FileExistsError, match=r"exists but is not a finished sample set"):
        prepare_sample_set(str(interrupted))


def test_sample_root_for():
    assert sample_root_for("datasets/sample/train.lmdb") == "datasets/sample"
    assert sample_root_for("datasets/sample/val.lmdb/") == "datasets/sample"
    assert sample_root_for("/x/sample/val/HR") == "/x/sample"
    assert sample_root_for("/x/sample/val/LR_bicubic/X4") == "/x/sample"
    with pytest.raises(ValueError, match=r"auto_prepare: sample: dataroot 'datasets/DIV2K/HR' is not part"):
        sample_root_for("datasets/DIV2K/HR")


# ---------------------------------------------------------------- datasets/ scripts


@pytest.mark.parametrize("name", ["make_lmdb", "extract_subimages", "make_degraded", "prepare_sample"])
def test_script_help(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        dataset_script(name).main(["--help"])
    assert exit_info.value.code == 0 and "usage:" in capsys.readouterr().out


def test_make_degraded_matches_validation(tmp_path, gt_folder, capsys):
    (gt_folder / "b.png").rename(gt_folder / "b.bmp")  # names preserved, output always PNG
    script = dataset_script("make_degraded")
    spec = tmp_path / "deg.yml"
    spec.write_text("degradations:\n" + "".join(f"  - {step}\n" for step in FULL).replace("'", ""))
    assert (
        script.main([str(gt_folder), str(tmp_path / "lq"), "--degradation", str(spec), "--scale", "4"]) == 0
    )
    args = [
        str(gt_folder),
        str(tmp_path / "lq2"),
        "--degradation",
        str(FULL),
        "--scale",
        "4",
        "--n-thread",
        "2",
    ]
    assert script.main(args) == 0
    assert sorted(os.listdir(tmp_path / "lq")) == ["a.png", "b.png", "c.png"]
    ds = DegradedImageDataset(_opt(gt_folder))
    for i, name in enumerate(["a", "b", "c"]):
        written = cv2.imread(str(tmp_path / "lq" / f"{name}.png"))
        assert np.array_equal(written, cv2.imread(str(tmp_path / "lq2" / f"{name}.png")))
        lq = ds[i]["lq"].numpy().transpose(1, 2, 0)[..., ::-1]
        assert np.array_equal(written, np.clip(np.rint(lq * 255), 0, 255).astype(np.uint8))
    with pytest.raises(SystemExit):
        script.main([str(gt_folder), str(tmp_path / "x"), "--degradation", "[{type: noise, sigma: -5}]"])
    assert "degradations[0] (noise): sigma must be >= 0, got -5" in capsys.readouterr().err


def test_make_lmdb_and_extract_subimages(tmp_path, capsys):
    big = tmp_path / "big"
    _write_images(big, {"p": (100, 130), "q": (60, 60)})
    sub = tmp_path / "sub"
    assert dataset_script("extract_subimages").main([str(big), str(sub), "--crop-size", "48", "--step", "24"]) == 0
    names = sorted(os.listdir(sub))
    assert len(names) == 4 * 5 + 2 * 2 and names[0] == "p_s001.png"
    assert {cv2.imread(str(sub / n)).shape for n in names} == {(48, 48, 3)}

    lr = tmp_path / "lr"
    _write_images(lr, {"0001x4": (25, 33)})
    args = [str(lr), str(tmp_path / "lr_sub"), "--crop-size", "12", "--step", "6", "--strip-suffix", "x4"]
    assert dataset_script("extract_subimages").main([*args, "--n-thread", "2"]) == 0
    assert sorted(os.listdir(tmp_path / "lr_sub"))[:2] == ["0001_s001.png", "0001_s002.png"]

    make_lmdb = dataset_script("make_lmdb")
    out = str(tmp_path / "sub.lmdb")
    capsys.readouterr()
    assert make_lmdb.main([str(sub), out, "--n-thread", "2"]) == 0
    logged = capsys.readouterr()  # not a terminal, as a redirected log: no progress bar, a few lines
    assert "\r" not in logged.out + logged.err and "Write" not in logged.err
    assert f"Wrote {len(names)} images" in logged.out and len((logged.out + logged.err).splitlines()) < 10
    ds = DegradedImageDataset(_opt(out, "train", io_backend={"type": "lmdb"}))
    assert len(ds) == len(names) and ds[0]["gt"].shape == (3, 32, 32)
    for argv, message in [
        ([str(sub), out], "already exists"),
        ([str(sub), str(tmp_path / "x")], "must end with .lmdb"),
    ]:
        with pytest.raises(SystemExit):
            make_lmdb.main(argv)
        assert message in capsys.readouterr().err


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_the_data_users_make_under_datasets_is_ignored_and_the_scripts_are_not():
    import subprocess

    from e2e_util import REPO

    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    made = ["datasets/DF2K/HR/0001.png", "datasets/DF2K/HR_sub/0001_s001.png", "datasets/FFHQ/ffhq256_val/69000.png"]
    kept = ["datasets/make_lmdb.py", "datasets/README.md"]
    proc = subprocess.run(["git", "check-ignore", *made, *kept], cwd=REPO, capture_output=True, text=True)
    assert proc.stdout.split() == made


def test_photometric_augment_gray_contrast_and_off():
    """gray: every channel the luma; contrast: mean + c (x - mean) with c from the range, values in [0, 1];
    both off: the region itself and no draw from the generator (the other draws stay the same)."""
    from serpent_arch.data.photometric import PhotometricAugment

    region = _textured(24, 20)
    gray = PhotometricAugment(gray_prob=1.0)(region, np.random.default_rng(0))
    luma = 0.114 * region[..., 0] + 0.587 * region[..., 1] + 0.299 * region[..., 2]
    for c in range(3):
        np.testing.assert_allclose(gray[..., c], luma, atol=1e-6)
    faint = PhotometricAugment(contrast_prob=1.0, contrast_range=(0.5, 0.5))(region, np.random.default_rng(0))
    mean = region.mean(axis=(0, 1), keepdims=True)
    np.testing.assert_allclose(faint, mean + 0.5 * (region - mean), atol=1e-6)
    drawn = PhotometricAugment(contrast_prob=1.0)(region, np.random.default_rng(1))
    assert 0 <= drawn.min() and drawn.max() <= 1 and drawn.std() < region.std()
    rng = np.random.default_rng(2)
    assert PhotometricAugment()(region, rng) is region
    assert rng.random() == np.random.default_rng(2).random()


def test_photometric_options_reach_the_training_pair(gt_folder):
    """gray_prob 1 gives gray GT and LQ patches (bicubic of a gray image is gray); contrast_prob 1 lowers
    the contrast of both; bad values and augmentation of a validation set are errors naming the option."""
    steps = [{"type": "bicubic_down"}]
    gray = DegradedImageDataset(_opt(gt_folder, "train", degradations=steps, gray_prob=1.0))
    item = gray[0]
    for key in ("gt", "lq"):
        assert torch.allclose(item[key][0], item[key][1], atol=1e-6) and torch.allclose(item[key][1], item[key][2])
    faint = DegradedImageDataset(_opt(gt_folder, "train", degradations=steps, contrast_prob=1.0,
                                      contrast_range=[0.25, 0.25]))
    plain = DegradedImageDataset(_opt(gt_folder, "train", degradations=steps))
    from serpent_arch.training import SampleId

    for i in range(len(plain)):  # the same crop (drawn first); the flips, drawn later, may differ
        sid = SampleId(index=i, epoch=0, position=i, seed=0)
        ratio = faint[sid]["gt"].std() / plain[sid]["gt"].std()
        assert abs(float(ratio) - 0.25) < 1e-3
    for kw, message in [
        ({"gray_prob": 1.5}, "gray_prob: expected a probability in \\[0, 1\\], got 1.5"),
        ({"contrast_prob": True}, "contrast_prob: expected a probability"),
        ({"contrast_range": [0, 1]}, "contrast_range: expected \\[low, high\\] with 0 < low <= high <= 1"),
        ({"contrast_range": [0.8, 0.5]}, "contrast_range: expected"),
        ({"gray_prob": 0.5, "color": "y"}, "gray_prob: the images are read as one channel"),
    ]:
        with pytest.raises(ValueError, match=message):
            DegradedImageDataset(_opt(gt_folder, "train", degradations=steps, **kw))
    with pytest.raises(ValueError, match="gray_prob: only for training sets"):
        DegradedImageDataset(_opt(gt_folder, "val", degradations=steps, gray_prob=0.5))
