"""Interrupted training through the real command: SIGKILL, SIGTERM and a non-finite loss.

A run killed (or stopped by SIGTERM) and resumed with --auto_resume must end with exactly the
weights of a run that never stopped: the training state holds the position inside the epoch and
the random states (drop path in the network, the data worker's crops, flips and noise).
Marked ``slow``; CI runs them.
"""

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch
from e2e_util import REPO, basicsr, make_workdir, train_options, write_options

pytestmark = pytest.mark.slow
TOTAL_ITER = 24


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("resume"))


def _options(name):
    opt = train_options(name, TOTAL_ITER)
    train = opt["datasets"]["train"]
    # 4 images x 3 = 6 batches per epoch, so checkpoints (every 4) fall inside epochs; one worker
    # process makes the data, as in real runs.
    train.update(dataset_enlarge_ratio=3, num_worker_per_gpu=1, gt_size=48)
    opt["network_g"]["drop_path_rate"] = 0.2  # random in the main process too
    opt["train"]["scheduler"] = {"type": "CosineAnnealingRestartLR", "periods": [TOTAL_ITER], "eta_min": 1e-5}
    opt["logger"].update(save_checkpoint_freq=4, print_freq=4)
    opt["val"].update(val_freq=6, save_img=False)
    return opt


def _start(workdir, name, *flags, save_every=4, new_session=False):
    options = _options(name)
    options["logger"]["save_checkpoint_freq"] = save_every
    opt = write_options(workdir / f"{name}.yml", options)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen(
        [sys.executable, "-m", "serpent_arch.cli", "train", "-opt", opt, *flags],
        cwd=workdir,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    ), opt


def _wait_for(path, proc, timeout=300):
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"training ended before {path} appeared:\n{proc.stderr.read()}"
        assert time.time() < deadline, f"{path} did not appear in {timeout} s"
        time.sleep(0.05)


def _final_weights(workdir, name):
    ckpt = torch.load(workdir / "experiments" / name / "models" / "net_g_latest.pth", map_location="cpu")
    return ckpt["params"], ckpt["params_ema"]


def _validations(workdir, name):
    lines = (workdir / "experiments" / name / "val_metrics.jsonl").read_text().splitlines()
    return [(r["iter"], r["metrics"]) for r in map(json.loads, lines)]


def _assert_same_weights(a, b):
    for part_a, part_b in zip(a, b, strict=True):
        assert part_a.keys() == part_b.keys()
        for key in part_a:
            assert torch.equal(part_a[key], part_b[key]), key


@pytest.fixture(scope="module")
def straight(workdir):
    basicsr(workdir, "train", "-opt", write_options(workdir / "straight.yml", _options("straight")))
    return _final_weights(workdir, "straight")


def test_sigkill_then_auto_resume_gives_the_uninterrupted_weights(workdir, straight):
    name = "killed"
    proc, opt = _start(workdir, name)
    states = workdir / "experiments" / name / "training_states"
    _wait_for(states / "8.state", proc)  # mid-epoch (epoch 1, batch 2), after a validation
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (workdir / "experiments" / name / "models" / "net_g_latest.pth").exists()

    proc = basicsr(workdir, "train", "-opt", opt, "--auto_resume")
    log = "".join(p.read_text() for p in (workdir / "experiments" / name).glob("train_*.log"))
    assert "Resuming inside epoch" in log
    _assert_same_weights(_final_weights(workdir, name), straight)
    # the validation records continue too: the same iterations and values, none twice
    records = [_validations(workdir, run) for run in (name, "straight")]
    assert records[0] == records[1] and [it for it, _ in records[0]] == list(range(6, TOTAL_ITER + 1, 6))


def test_killed_at_random_moments_while_saving_every_iteration(workdir, straight):
    """SIGKILL at random times (seeded) with a checkpoint at every iteration, so kills land in
    saves as well as in steps; resumed each time, the run still ends with the straight run's weights."""
    name, delays = "random_kills", random.Random(5).sample([x / 4 for x in range(8, 28)], 4)
    exp = workdir / "experiments" / name
    for delay in [*delays, None]:
        proc, _ = _start(workdir, name, "--auto_resume", save_every=1)
        try:
            proc.wait(timeout=delay or 300)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
            continue
        assert proc.returncode == 0, proc.stderr.read()
        break
    assert (exp / "models" / "net_g_latest.pth").is_file()
    _assert_same_weights(_final_weights(workdir, name), straight)


def test_sigterm_saves_the_current_iteration_and_resumes_exactly(workdir, straight):
    name = "terminated"
    proc, opt = _start(workdir, name)
    exp = workdir / "experiments" / name
    _wait_for(exp / "training_states" / "4.state", proc)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, stderr
    assert "SIGTERM received: saved the checkpoint and training state of iteration" in stderr
    saved = max(int(p.stem) for p in (exp / "training_states").glob("*.state"))
    assert saved >= 4 and (exp / "models" / f"net_g_{saved}.pth").is_file()
    if saved % 4:  # stopped between two regular checkpoints: the signal saved this one
        assert f"iteration {saved}" in stderr

    basicsr(workdir, "train", "-opt", opt, "--auto_resume")
    _assert_same_weights(_final_weights(workdir, name), straight)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(workdir):
    """SGD with a learning rate of 1e30: within a few steps the update overflows the weights."""
    name = "nonfinite_stop"
    opt = train_options(name, 8)
    opt["train"]["optim_g"] = {"type": "SGD", "lr": 1e30}
    opt["logger"]["save_checkpoint_freq"] = 1
    proc = basicsr(workdir, "train", "-opt", write_options(workdir / f"{name}.yml", opt), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "training stopped" in proc.stderr and "Traceback" not in proc.stderr
    failed_at = int(proc.stderr.split("error: iteration ")[1].split(":")[0])
    models = workdir / "experiments" / name / "models"
    assert failed_at > 1 and not (models / f"net_g_{failed_at}.pth").exists()
    last = models / f"net_g_{failed_at - 1}.pth"
    assert f"The last checkpoint is {last}" in proc.stderr
    params = torch.load(last, map_location="cpu")["params"]
    assert all(torch.isfinite(v).all() for v in params.values())


def test_non_finite_loss_skip_mode_skips_then_gives_up(workdir):
    name = "nonfinite_skip"
    opt = train_options(name, 8)
    opt["train"]["pixel_opt"]["loss_weight"] = float("nan")  # every loss is NaN
    opt["train"].update(on_nonfinite_loss="skip", max_nonfinite_skips=2)
    proc = basicsr(workdir, "train", "-opt", write_options(workdir / f"{name}.yml", opt), check=False)
    assert proc.returncode == 1, proc.stderr
    assert "error: iteration 3: the loss is not finite" in proc.stderr
    assert "2 skipped steps in a row" in proc.stderr and "Traceback" not in proc.stderr
    log = "".join(p.read_text() for p in (workdir / "experiments" / name).glob("train_*.log"))
    assert "iteration 1: non-finite loss" in log and "step skipped (2 in a row" in log


def test_ctrl_c_to_the_process_group_saves_and_resumes_exactly(workdir, straight):
    """Like Ctrl-C in a terminal: SIGINT to the trainer and its DataLoader worker at once."""
    name = "interrupted"
    proc, opt = _start(workdir, name, new_session=True)
    exp = workdir / "experiments" / name
    _wait_for(exp / "training_states" / "4.state", proc)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGINT, stderr
    assert "SIGINT received: saved the checkpoint" in stderr and "Traceback" not in stderr
    basicsr(workdir, "train", "-opt", opt, "--auto_resume")
    _assert_same_weights(_final_weights(workdir, name), straight)
