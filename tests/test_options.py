"""Option files: bad ones fail before training with a message naming the key."""

import copy
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from e2e_util import minimal_options

import serpent_arch  # noqa: F401
from serpent_arch.cli import main
from serpent_arch.options import OptionError, check_options


def _train_opt(tmp_path):
    gt = tmp_path / "gt"
    gt.mkdir(exist_ok=True)
    for i in range(2):
        cv2.imwrite(str(gt / f"img{i}.png"), np.full((40, 48, 3), 60 * i, np.uint8))
    train = {
        "name": "tr",
        "type": "DegradedImageDataset",
        "dataroot_gt": str(gt),
        "io_backend": {"type": "disk"},
        "degradations": [{"type": "noise", "sigma": 10}],
        "gt_size": 32,
        "batch_size_per_gpu": 2,
        "num_worker_per_gpu": 0,
    }
    return minimal_options({"train": train})


def _write(tmp_path, opt, name="opt.yml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(opt))
    return str(path)


def test_good_options_pass(tmp_path):
    check_options(_write(tmp_path, _train_opt(tmp_path)), is_train=True)


def _del(opt, dotted):
    *parents, last = dotted.split(".")
    for key in parents:
        opt = opt[key]
    del opt[last]


def _set(opt, dotted, value):
    *parents, last = dotted.split(".")
    for key in parents:
        opt = opt[key]
    opt[last] = value


@pytest.mark.parametrize(
    "edit,message",
    [
        (("del", "num_gpu"), "missing required key 'num_gpu'"),
        (("del", "train.total_iter"), "missing required key 'train.total_iter'"),
        (("del", "train.scheduler.type"), "missing required key 'train.scheduler.type'"),
        (("del", "logger.save_checkpoint_freq"), "logger.save_checkpoint_freq"),
        (("del", "train.pixel_opt"), "needs a loss"),
        (("set", "model_type", "SRModle"), "model_type: unknown model 'SRModle'"),
        (("set", "network_g.type", "Serpnet"), "network_g.type: unknown network 'Serpnet'"),
        (("set", "network_g.preset", "huge"), "unknown preset 'huge'"),
        (("set", "network_g.embed_dimm", 32), "network_g.embed_dimm: not an argument of Serpent"),
        (("set", "network_g.in_chans", 1), "network_g.in_chans is 1 but the datasets load 3-channel"),
        (("set", "datasets.train.dataroot_gt", "/no/such/dir"), "datasets.train.dataroot_gt: '/no/such/dir' does not"),
        (("set", "datasets.train.type", "Nope"), "datasets.train.type: unknown dataset 'Nope'"),
        (("del", "datasets.train.batch_size_per_gpu"), "datasets.train.batch_size_per_gpu' must be an integer"),
        (("set", "path.pretrain_network_g", "missing.pth"), "path.pretrain_network_g: 'missing.pth' does not exist"),
        (("set", "scale", 0), "'scale' must be a positive integer"),
        # found by building the network on the meta device, the optimizer and scheduler on a dummy
        # parameter, and by checking the loader sizes: each used to pass and fail after start-up
        (("set", "network_g.upsampler", "pixelshuffle", "network_g.upscale", 5), "upsampler 'pixelshuffle' supports"),
        (("set", "network_g.scan_backend", "cuda"), "SS2D: scan_backend must be one of auto"),
        (("set", "train.optim_g.type", "Adamm"), "train.optim_g: 'Adamm' cannot be built by SerpentModel: unknown"),
        (("set", "train.optim_g.betaz", [0.9, 0.99]), "train.optim_g: 'AdamW' cannot be built by SerpentModel"),
        (("set", "train.scheduler.type", "Cosine"), "train.scheduler: 'Cosine' cannot be built by SerpentModel"),
        (("set", "datasets.train.batch_size_per_gpu", 0), "datasets.train.batch_size_per_gpu' must be an integer >= 1"),
        (("set", "datasets.train.num_worker_per_gpu", -1), "num_worker_per_gpu' must be an integer >= 0"),
        (("set", "train.amp", "bfloat16"), "'train.amp' must be bf16, fp16 or false (float32), got 'bfloat16'"),
        (("set", "val", {"val_freq": 10, "amp": True}), "'val.amp' must be bf16, fp16 or false (float32), got True"),
    ],
)
def test_bad_option_is_named(tmp_path, edit, message):
    opt = copy.deepcopy(_train_opt(tmp_path))
    if edit[0] == "del":
        _del(opt, edit[1])
    else:
        for key, value in zip(edit[1::2], edit[2::2], strict=True):
            _set(opt, key, value)
    with pytest.raises(OptionError) as err:
        check_options(_write(tmp_path, opt), is_train=True)
    assert message in str(err.value)
    assert "opt.yml" in str(err.value)


def test_several_problems_reported_at_once(tmp_path):
    opt = _train_opt(tmp_path)
    del opt["num_gpu"]
    opt["network_g"]["preset"] = "huge"
    with pytest.raises(OptionError) as err:
        check_options(_write(tmp_path, opt), is_train=True)
    assert "num_gpu" in str(err.value) and "huge" in str(err.value)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(OptionError, match="does not exist"):
        check_options(str(tmp_path / "nope.yml"), is_train=True)
    bad = tmp_path / "bad.yml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(OptionError, match="not valid YAML"):
        check_options(str(bad), is_train=True)


def test_test_mode_needs_val_suffix(tmp_path):
    opt = _train_opt(tmp_path)
    opt["datasets"] = {"test_1": dict(opt["datasets"]["train"], name="te")}
    opt["val"] = {"save_img": False}
    with pytest.raises(OptionError, match="val.suffix"):
        check_options(_write(tmp_path, opt), is_train=False)


def test_cli_reports_bad_options_and_exits_2(tmp_path, capsys):
    opt = _train_opt(tmp_path)
    opt["network_g"]["preset"] = "huge"
    assert main(["train", "-opt", _write(tmp_path, opt)]) == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err
    assert main(["fly"]) == 2
    assert main([]) == 2


REPO = __import__("pathlib").Path(__file__).resolve().parents[1]
SHIPPED = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "options").rglob("*.yml"))


@pytest.mark.parametrize("path", SHIPPED)
def test_shipped_option_files_are_valid(path, monkeypatch):
    """Every shipped option file is complete; only data / checkpoints absent here may be missing."""
    from basicsr.archs import build_network

    monkeypatch.chdir(REPO)
    is_train = not Path(path).name.startswith(("test", "serpent_sr_test"))
    try:
        opt = check_options(path, is_train=is_train)
    except OptionError as err:
        problems = str(err).splitlines()[1:]
        assert all("does not exist" in line for line in problems), str(err)
        opt = yaml.safe_load(open(path))
    net = build_network(dict(opt["network_g"]))
    import torch

    with torch.no_grad():  # not every BasicSR network has an `upscale` attribute: check the output
        out = net.eval()(torch.zeros(1, 3, 16, 16))
    assert out.shape[-2:] == (16 * opt.get("scale", 1),) * 2


def _tiny_checkpoint(path):
    import torch
    from basicsr.archs import build_network

    net = build_network({"type": "Serpent", "preset": "tiny"})
    torch.save({"params": net.state_dict(), "params_ema": net.state_dict()}, path)
    return str(path)


def test_weights_of_another_preset_are_named_before_running(tmp_path):
    opt = _train_opt(tmp_path)
    opt["network_g"]["preset"] = "small"
    opt["path"]["pretrain_network_g"] = _tiny_checkpoint(tmp_path / "tiny.pth")
    with pytest.raises(OptionError) as err:
        check_options(_write(tmp_path, opt), is_train=True)
    message = str(err.value)
    assert "tiny.pth does not fit network_g (Serpent preset 'small')" in message
    assert "tensors have another shape" in message and "they fit preset 'tiny'" in message


def test_force_yml_is_applied_before_the_checks(tmp_path):
    opt = _train_opt(tmp_path)
    opt["network_g"]["preset"] = "small"
    opt["path"]["pretrain_network_g"] = _tiny_checkpoint(tmp_path / "tiny.pth")
    path = _write(tmp_path, opt)
    check_options(path, is_train=True, force_yml=["network_g:preset=tiny"])
    with pytest.raises(OptionError, match="no section 'netwrk_g'"):
        check_options(path, is_train=True, force_yml=["netwrk_g:preset=tiny"])
    with pytest.raises(OptionError, match="expected KEY=VALUE"):
        check_options(path, is_train=True, force_yml=["network_g:variant"])


def test_remove_yml_removes_keys_that_force_yml_can_only_set_to_none():
    from serpent_arch.options import apply_force_yml, remove_keys

    opt = {"datasets": {"test_1": {"name": "Set5", "num_images": 5}}, "val": {"tile": 64}}
    apply_force_yml(opt, ["val:tile=~"])  # BasicSR's meaning: None, the key stays
    assert opt["val"] == {"tile": None}
    remove_keys(opt, ["datasets:test_1:num_images", "val:tile"])
    assert opt == {"datasets": {"test_1": {"name": "Set5"}}, "val": {}}
    for entry, message in [
        ("datasets:test_1:num_images", "there is no key 'num_images' to remove"),
        ("datasets:test_9:num_images", "the option file has no section 'test_9'"),
        ("val:tile=3", "give the key only"),
    ]:
        with pytest.raises(OptionError, match=message):
            remove_keys(opt, [entry])


def test_a_custom_size_test_set_is_told_the_flag_that_drops_its_count(tmp_path, monkeypatch, capsys):
    """The message names the user's file and shows the exact flag; with the flag, the same file runs."""
    monkeypatch.chdir(tmp_path)
    opt = _train_opt(tmp_path)
    test_set = {**opt["datasets"]["train"], "num_images": 5}  # 2 images
    opt = {key: opt[key] for key in ("name", "model_type", "scale", "num_gpu", "network_g")}
    opt.update(
        datasets={"test_1": test_set, "test_2": {**test_set, "name": "Absent", "dataroot_gt": "no/HR"}},
        path={"pretrain_network_g": _tiny_checkpoint(tmp_path / "net.pth")},
        val={"suffix": None, "save_img": False},
    )
    _write(tmp_path, opt, "my_test.yml")
    assert main(["test", "-opt", "my_test.yml"]) == 2
    err = capsys.readouterr().err
    assert "option file 'my_test.yml':" in err and "expected 5 (num_images)" in err
    assert "--remove_yml datasets:test_1:num_images" in err and "basicsr_test_" not in err  # no temporary copy
    assert main(["test", "-opt", "my_test.yml", "--remove_yml", "datasets:test_1:num_images"]) == 0
