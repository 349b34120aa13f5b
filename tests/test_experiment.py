"""Experiment folders (serpent_arch.experiment): the options a training ran with, written beside
BasicSR's copy, and `basicsr test -e` on what it finds there."""

import json
import os
import time

import pytest
import torch
import yaml
from e2e_util import make_workdir, train_options

import serpent_arch  # noqa: F401
from serpent_arch import experiment, training
from serpent_arch.archs.build import build_network
from serpent_arch.cli import main
from serpent_arch.options import OptionError


def _experiment(root, name="exp", **changes):
    """experiments/NAME as `basicsr train` leaves it (without training): resolved options and a checkpoint."""
    opt = train_options(name, 4)
    opt["val"]["max_images"] = 1  # as --trial sets it
    opt.update(changes)
    folder = root / "experiments" / name
    (folder / "models").mkdir(parents=True)
    (folder / experiment.RESOLVED_OPTIONS).write_text(yaml.safe_dump(opt, sort_keys=False))
    net = build_network(dict(opt["network_g"]))
    torch.save({"params": net.state_dict(), "params_ema": net.state_dict()}, folder / "models" / "net_g_latest.pth")
    return folder, opt


def test_test_without_an_option_file_evaluates_the_experiments_validation_sets(tmp_path, monkeypatch, capsys):
    make_workdir(tmp_path)
    monkeypatch.chdir(tmp_path)
    folder, _ = _experiment(tmp_path)
    assert main(["test", "-e", "experiments/exp"]) == 0
    record = json.loads((tmp_path / "results" / "exp" / "metrics.json").read_text())["tiny_val"]
    assert record["num_images"] == 2  # whole sets: the training's val.max_images is not a test's
    assert record["network_g"]["preset"] == "tiny" and record["scale"] == 2

    (folder / experiment.RESOLVED_OPTIONS).unlink()
    assert main(["test", "-e", "experiments/exp"]) == 2
    assert "no options_resolved.yml" in capsys.readouterr().err


def test_a_test_file_of_another_scale_is_refused(tmp_path):
    folder, opt = _experiment(tmp_path)
    exp = experiment.open_experiment(str(folder))
    test_opt = {**opt, "scale": 4}
    with pytest.raises(OptionError, match=r"'x4.yml' tests x4, but .*exp was trained for x2"):
        experiment.options_for_test(exp, test_opt, "x4.yml")
    resolved = experiment.options_for_test(exp, {**opt, "path": {"pretrain_network_g": "other.pth"}}, "x2.yml")
    assert resolved["path"]["pretrain_network_g"] == str(folder / "models" / "net_g_latest.pth")
    assert resolved["path"]["param_key_g"] == "params_ema" and resolved["name"] == "exp"


def test_newest_weights_prefer_a_checkpoint_saved_after_the_latest(tmp_path):
    folder, _ = _experiment(tmp_path)
    models = folder / "models"
    for name in ("net_g_2.pth", "net_g_4.pth"):
        (models / name).write_bytes(b"")
    old = time.time() - 100
    for name in ("net_g_2.pth", "net_g_4.pth"):
        os.utime(models / name, (old, old))
    assert experiment.newest_weights(str(folder)) == str(models / "net_g_latest.pth")
    os.utime(models / "net_g_4.pth", (old + 200, old + 200))  # a resumed run stopped after iteration 4
    assert experiment.newest_weights(str(folder)) == str(models / "net_g_4.pth")


def test_copy_opt_file_keeps_basicsrs_copy_of_the_users_file_and_writes_the_resolved_options(tmp_path):
    (tmp_path / "mine.yml").write_text("name: from_file\n")
    copied = []
    run = training.TrainingRun({"name": "resolved"}, str(tmp_path / "mine.yml"), "basicsr train -opt mine.yml --trial")

    def basicsr_copy(opt_file, root):
        import sys

        copied.append((opt_file, root, " ".join(sys.argv)))

    training._wrap_copy_opt_file(basicsr_copy, run)("/tmp/basicsr_train_x/mine.yml", str(tmp_path))
    assert copied == [(str(tmp_path / "mine.yml"), str(tmp_path), "basicsr train -opt mine.yml --trial")]
    text = (tmp_path / experiment.RESOLVED_OPTIONS).read_text()
    assert "# CMD: basicsr train -opt mine.yml --trial" in text and yaml.safe_load(text) == {"name": "resolved"}
