"""`basicsr train --trial`: every shipped training file shrinks to a short run whose only obstacle here is
its absent data, and one of them (FFHQ deblurring, the file's own `base` network) trains end to end on
photos written by the test. The DF2K x4 file's trial is part of tests/test_journey.py."""

import copy
import json
from pathlib import Path

import pytest
import yaml
from e2e_util import basicsr, dataset_script, write_photos

import serpent_arch  # noqa: F401
from serpent_arch import trial
from serpent_arch.options import OptionError, check_options

REPO = Path(__file__).resolve().parents[1]
TRAIN_FILES = sorted(p.name for p in (REPO / "options" / "train").glob("*.yml"))


@pytest.mark.parametrize("name", TRAIN_FILES)
def test_every_shipped_train_file_shrinks_to_a_short_run(name, tmp_path, monkeypatch):
    full = yaml.safe_load((REPO / "options" / "train" / name).read_text())
    opt = copy.deepcopy(full)
    changes = trial.shrink(opt)
    scale = opt.get("scale", 1)
    train_set, train = opt["datasets"]["train"], opt["train"]
    assert opt["name"] == "trial_" + full["name"]
    assert train["total_iter"] == trial.ITERATIONS
    assert train_set["gt_size"] % scale == 0 and trial.PATCH <= train_set["gt_size"] < trial.PATCH + scale
    assert train_set["batch_size_per_gpu"] == trial.BATCH and train_set["num_worker_per_gpu"] == 0
    schedule = train["scheduler"].get("milestones") or train["scheduler"].get("periods")
    assert max(schedule) <= trial.ITERATIONS  # the learning-rate schedule, compressed to the trial
    assert opt["val"]["val_freq"] == opt["logger"]["save_checkpoint_freq"] == trial.ITERATIONS // 2
    assert opt["val"]["max_images"] == trial.VAL_IMAGES and opt["logger"]["use_tb_logger"] is False
    assert f"train:total_iter: {full['train']['total_iter']} -> {trial.ITERATIONS}" in changes
    assert opt["network_g"] == full["network_g"] and opt["train"]["optim_g"] == full["train"]["optim_g"]
    assert trial.shrink(opt) == []  # a trial of a trial changes nothing
    # Nothing but the data (absent in an empty folder) stops it.
    monkeypatch.chdir(tmp_path)
    with pytest.raises(OptionError) as err:
        check_options(name, is_train=True, opt=opt, source=f"option file {name!r}")
    problems = str(err.value).splitlines()[1:]
    assert problems and all("does not exist" in line for line in problems), str(err.value)


@pytest.mark.slow
def test_a_trial_of_the_ffhq_deblurring_file_trains_end_to_end(tmp_path):
    """~20 s: the file's `base` U-Net, 40 iterations, validation and checkpoints at 20 and 40."""
    (tmp_path / "options" / "train").mkdir(parents=True)
    file = "options/train/train_Serpent_FFHQ256_deblur.yml"
    (tmp_path / file).write_text((REPO / file).read_text())
    write_photos(tmp_path / "faces", 4, 256, 256, name="{:05d}.png")
    lmdb = str(tmp_path / "datasets/FFHQ/ffhq256_train.lmdb")
    assert dataset_script("make_lmdb").main([str(tmp_path / "faces"), lmdb]) == 0
    write_photos(tmp_path / "datasets/FFHQ/ffhq256_val", 3, 256, 256, name="{}.png", offset=69000)

    proc = basicsr(tmp_path, "train", "-opt", file, "--trial")
    assert f"--trial: a short run of {file}" in proc.stdout
    assert "datasets:train:gt_size: 256 -> 32" in proc.stdout
    assert "train:scheduler:periods: [300000] -> [40]" in proc.stdout
    assert "optimizer.step()" not in proc.stderr  # no torch warning about the scheduler's order
    exp = tmp_path / "experiments" / "trial_Serpent_base_FFHQ256_deblur"
    assert sorted(p.name for p in (exp / "models").iterdir()) == ["net_g_20.pth", "net_g_40.pth", "net_g_latest.pth"]
    records = [json.loads(line) for line in (exp / "val_metrics.jsonl").read_text().splitlines()]
    assert [(r["iter"], r["num_images"]) for r in records] == [(20, 2), (40, 2)]
    resolved = yaml.safe_load((exp / "options_resolved.yml").read_text())
    assert resolved["train"]["total_iter"] == 40 and resolved["network_g"]["preset"] == "base"
    assert (exp / "train_Serpent_FFHQ256_deblur.yml").is_file()  # BasicSR's copy of the user's file
    assert not (tmp_path / "tb_logger").exists()
