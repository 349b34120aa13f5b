"""Bad data and bad dataset options: each is reported before training, naming the file or key.

Also the run-time side: a corrupt image met during training names the file (or is skipped with
``skip_bad_samples``), a truncated LMDB never reaches a read (which would be a SIGBUS), and
`basicsr test` evaluates the benchmark sets that are present.
"""

import copy
import logging
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
import yaml
from e2e_util import REPO, minimal_options

import serpent_arch  # noqa: F401
from serpent_arch.cli import main
from serpent_arch.data.checks import image_hw, lmdb_problems
from serpent_arch.data.degraded_image_dataset import DegradedImageDataset
from serpent_arch.options import OptionError, check_options
from serpent_arch.training import TrackedLoader


def _png(path, h, w, value=100):
    path.parent.mkdir(parents=True, exist_ok=True)
    img = (np.random.default_rng(h * w + value).random((h, w, 3)) * 255).astype(np.uint8)
    assert cv2.imwrite(str(path), img)
    return img


def _options(tmp_path, train=None, val=None, scale=1):
    datasets = {}
    if train is not None:
        datasets["train"] = {
            "name": "tr",
            "type": "DegradedImageDataset",
            "io_backend": {"type": "disk"},
            "degradations": [{"type": "noise", "sigma": 10}],
            "gt_size": 32,
            "batch_size_per_gpu": 2,
            "num_worker_per_gpu": 0,
            **train,
        }
    if val is not None:
        datasets["val"] = {"name": "va", "type": "PairedImageDataset", "io_backend": {"type": "disk"}, **val}
    opt = minimal_options(datasets, scale)
    path = tmp_path / "opt.yml"
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def _problems(path, is_train=True):
    with pytest.raises(OptionError) as err:
        check_options(path, is_train=is_train)
    return str(err.value)


@pytest.fixture
def gt_dir(tmp_path):
    for i in range(3):
        _png(tmp_path / "gt" / f"img{i}.png", 48, 40 + i)
    return tmp_path / "gt"


def test_image_hw_reads_headers(tmp_path):
    _png(tmp_path / "a.png", 37, 53)
    cv2.imwrite(str(tmp_path / "b.jpg"), np.zeros((21, 34, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "c.bmp"), np.zeros((5, 6, 3), np.uint8))
    (tmp_path / "d.png").write_bytes(b"not an image at all")
    assert image_hw(str(tmp_path / "a.png")) == (37, 53)
    assert image_hw(str(tmp_path / "b.jpg")) == (21, 34)
    assert image_hw(str(tmp_path / "c.bmp")) == (5, 6)
    assert image_hw(str(tmp_path / "d.png")) is None
    assert image_hw(str(tmp_path / "missing.png")) is None


def test_corrupt_training_image_is_named_before_training(tmp_path, gt_dir):
    (gt_dir / "broken.png").write_bytes(b"\x89PNG garbage")
    message = _problems(_options(tmp_path, train={"dataroot_gt": str(gt_dir)}))
    assert "not readable images" in message and "broken.png" in message
    # with skip_bad_samples the same set is accepted (the file is skipped while training)
    check_options(_options(tmp_path, train={"dataroot_gt": str(gt_dir), "skip_bad_samples": True}), is_train=True)


def test_patch_larger_than_an_image(tmp_path, gt_dir):
    _png(gt_dir / "small.png", 20, 64)
    message = _problems(_options(tmp_path, train={"dataroot_gt": str(gt_dir)}))
    assert "smaller than gt_size 32" in message and "small.png (20x64)" in message


@pytest.mark.parametrize(
    "degradations, expected",
    [
        ([{"type": "sharpen"}], "unknown"),
        ([{"type": "noise", "sigma": -5}], "sigma must be >= 0, got -5"),
        ([{"type": "noise", "sigma": 5}, {"type": "bicubic_down", "scale": 2}], "downscale by 2 in total"),
    ],
)
def test_bad_degradations_are_errors_before_training(tmp_path, gt_dir, degradations, expected):
    message = _problems(_options(tmp_path, train={"dataroot_gt": str(gt_dir), "degradations": degradations}))
    assert "datasets.train" in message and expected in message


def test_skip_bad_samples_only_for_training(tmp_path, gt_dir):
    val = {"type": "DegradedImageDataset", "dataroot_gt": str(gt_dir), "degradations": [], "skip_bad_samples": True}
    path = _options(tmp_path, train={"dataroot_gt": str(gt_dir)})
    opt = yaml.safe_load(open(path))
    opt["datasets"]["val"] = {"name": "va", **val}
    (tmp_path / "opt.yml").write_text(yaml.safe_dump(opt))
    assert "skip_bad_samples: only for training sets" in _problems(path)


def _paired(tmp_path, scale, sizes):
    for i, (gh, gw, lh, lw) in enumerate(sizes):
        _png(tmp_path / "HR" / f"p{i}.png", gh, gw)
        _png(tmp_path / "LR" / f"p{i}.png", lh, lw)
    return {"dataroot_gt": str(tmp_path / "HR"), "dataroot_lq": str(tmp_path / "LR"), "filename_tmpl": "{}"}


def test_gt_lq_size_mismatch_for_the_scale(tmp_path):
    # p0: 4x exactly; p1: GT one pixel larger than 4x (mod-crop remainder, fine for testing); p2: made at x2
    val = _paired(tmp_path, 4, [(64, 48, 16, 12), (65, 48, 16, 12), (64, 48, 32, 24)])
    message = _problems(_options(tmp_path, val=val, scale=4), is_train=False)
    assert "1 GT/LQ pair(s) do not match scale 4" in message and "p2.png 64x48" in message
    assert "p1.png" not in message


def test_paired_training_needs_exact_scale_and_patch_size(tmp_path):
    train = _paired(tmp_path, 2, [(64, 64, 32, 32), (65, 64, 32, 32), (24, 24, 12, 12)])
    opt = yaml.safe_load(open(_options(tmp_path, scale=2)))
    opt["datasets"]["train"] = {
        "name": "pairs",
        "type": "PairedImageDataset",
        "io_backend": {"type": "disk"},
        "gt_size": 32,
        "batch_size_per_gpu": 1,
        "num_worker_per_gpu": 0,
        **train,
    }
    (tmp_path / "opt.yml").write_text(yaml.safe_dump(opt))
    message = _problems(str(tmp_path / "opt.yml"))
    assert "p1.png 65x64" in message and "smaller than gt_size 32" in message and "p2.png (24x24)" in message


def test_missing_lq_file_is_named(tmp_path):
    val = _paired(tmp_path, 2, [(64, 64, 32, 32), (64, 64, 32, 32)])
    (tmp_path / "LR" / "p1.png").rename(tmp_path / "LR" / "other.png")
    message = _problems(_options(tmp_path, val=val, scale=2), is_train=False)
    assert "p1.png is not in lq_paths" in message


def test_num_images_catches_a_partial_download(tmp_path):
    val = _paired(tmp_path, 2, [(64, 64, 32, 32)] * 3)
    path = _options(tmp_path, val={**val, "num_images": 5}, scale=2)
    assert "3 images, expected 5 (num_images)" in _problems(path, is_train=False)


def _lmdb(tmp_path, n=6):
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs

    names = []
    for i in range(n):
        _png(tmp_path / "src" / f"k{i}.png", 48, 48, value=i)
        names.append(f"k{i}.png")
    make_lmdb_from_imgs(str(tmp_path / "src"), str(tmp_path / "db.lmdb"), names, [n[:-4] for n in names], n_thread=1)
    return tmp_path / "db.lmdb"


def test_truncated_lmdb_is_reported_not_read(tmp_path):
    db = _lmdb(tmp_path)
    data_file = db / "data.mdb"
    with open(data_file, "r+b") as f:
        f.truncate(data_file.stat().st_size // 3)
    [problem] = lmdb_problems(str(db))
    assert "truncated" in problem and "data.mdb" in problem
    with pytest.raises(ValueError, match="truncated"):
        DegradedImageDataset(
            {"phase": "val", "scale": 1, "dataroot_gt": str(db), "io_backend": {"type": "lmdb"}, "degradations": []}
        )
    # through the command, in a fresh process: exit 2 with the message, no crash, no hang
    train = {"dataroot_gt": str(db), "io_backend": {"type": "lmdb"}}
    opt_path = _options(tmp_path, train=train)
    proc = subprocess.run(
        [sys.executable, "-m", "serpent_arch.cli", "train", "-opt", opt_path],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert proc.returncode == 2 and "truncated" in proc.stderr, proc.stderr


def test_lmdb_without_meta_info_or_with_missing_keys(tmp_path):
    db = _lmdb(tmp_path)
    meta = (db / "meta_info.txt").read_text()
    (db / "meta_info.txt").write_text(meta + "ghost.png (48,48,3) 1\n")
    [problem] = lmdb_problems(str(db))
    assert "1 of the 7 keys in meta_info.txt are not in the database (ghost)" in problem
    (db / "meta_info.txt").unlink()
    message = _problems(_options(tmp_path, train={"dataroot_gt": str(db), "io_backend": {"type": "lmdb"}}))
    assert "meta_info.txt" in message


def test_lmdb_key_missing_at_run_time_is_named(tmp_path):
    db = _lmdb(tmp_path)
    meta = (db / "meta_info.txt").read_text()
    (db / "meta_info.txt").write_text(meta + "ghost.png (48,48,3) 1\n")
    ds = DegradedImageDataset(
        {"phase": "val", "scale": 1, "dataroot_gt": str(db), "io_backend": {"type": "lmdb"}, "degradations": []}
    )
    with pytest.raises(LookupError, match="LMDB key 'ghost' not found"):
        ds[len(ds) - 1]


@pytest.fixture
def basicsr_log(caplog):
    """caplog for the 'basicsr' logger, which BasicSR's get_root_logger stops from propagating."""
    logger = logging.getLogger("basicsr")
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_skip_bad_samples_replaces_and_counts(tmp_path, gt_dir, basicsr_log):
    caplog = basicsr_log
    (gt_dir / "img1.png").write_bytes(b"broken")
    opt = {
        "phase": "train",
        "scale": 1,
        "dataroot_gt": str(gt_dir),
        "degradations": [],
        "gt_size": 32,
        "skip_bad_samples": True,
    }
    ds = DegradedImageDataset(opt)
    with caplog.at_level("WARNING", logger="basicsr"):
        item = ds[1]
    assert int(item["bad_samples_skipped"]) == 1 and "img1.png" in caplog.text
    assert int(ds[0]["bad_samples_skipped"]) == 0

    class Sampler:  # what TrackedLoader reads of ResumableSampler
        epoch, epoch_was_set = 3, True

        def skipped(self):
            return 0

    loader = TrackedLoader(torch.utils.data.DataLoader(ds, batch_size=3), Sampler(), lookahead=0)
    caplog.clear()
    with caplog.at_level("WARNING", logger="basicsr"):
        batches = list(loader)
    assert len(batches) == 1 and loader.consumed == 1
    assert "epoch 3: 1 bad training sample(s) skipped" in caplog.text

    without = DegradedImageDataset({**opt, "skip_bad_samples": False})
    with pytest.raises(ValueError, match="cannot decode GT image .*img1.png"):
        without[1]


def test_basicsr_paired_dataset_names_a_corrupt_file(tmp_path):
    from basicsr.data.paired_image_dataset import PairedImageDataset

    val = _paired(tmp_path, 2, [(64, 64, 32, 32), (64, 64, 32, 32)])
    (tmp_path / "LR" / "p1.png").write_bytes(b"broken")
    ds = PairedImageDataset({"name": "pairs", "phase": "val", "scale": 2, "io_backend": {"type": "disk"}, **val})
    broken = next(i for i, pair in enumerate(ds.paths) if pair["lq_path"].endswith("p1.png"))
    expected = rf"PairedImageDataset 'pairs': cannot load item {broken} .*p1.png.*not a readable"
    with pytest.raises(RuntimeError, match=expected):
        ds[broken]


def test_test_command_evaluates_the_sets_that_are_present(tmp_path, monkeypatch, capsys):
    """One benchmark file lists five sets; with two missing, the others are evaluated and the two named."""
    monkeypatch.chdir(tmp_path)
    val = _paired(tmp_path, 2, [(32, 32, 16, 16)])
    present = {"name": "Here", "type": "PairedImageDataset", "io_backend": {"type": "disk"}, **val}
    opt = yaml.safe_load(open(_options(tmp_path, scale=2)))
    opt["datasets"] = {
        "test_1": present,
        "test_2": {**present, "name": "Gone", "dataroot_gt": "nowhere/HR", "dataroot_lq": "nowhere/LR"},
    }
    opt["val"] = {"suffix": None, "save_img": False, "metrics": {"psnr": {"type": "calculate_psnr", "crop_border": 2}}}
    del opt["train"], opt["logger"]
    (tmp_path / "test.yml").write_text(yaml.safe_dump(opt))
    assert main(["test", "-opt", "test.yml"]) == 0
    err = capsys.readouterr().err
    assert "skipping test sets" in err and "test_2 (Gone): nowhere/HR" in err
    assert (tmp_path / "results" / "t" / "metrics.json").is_file()
    # nothing present at all: an error listing what is missing
    none = copy.deepcopy(opt)
    none["datasets"].pop("test_1")
    (tmp_path / "none.yml").write_text(yaml.safe_dump(none))
    assert main(["test", "-opt", "none.yml"]) == 2
    assert "nowhere/HR' does not exist" in capsys.readouterr().err
    shutil.rmtree(tmp_path / "results")
