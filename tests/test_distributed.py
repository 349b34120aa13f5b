"""Two CPU processes under torchrun (gloo): DistributedDataParallel through `basicsr train`.

Checks that the ranks train on different images, keep identical weights, that validation,
checkpoints and logs are written once, and that --auto_resume under DDP ends with the weights of
an uninterrupted run. Marked ``slow``; CI runs it.
"""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from e2e_util import REPO, make_workdir, train_options, write_options

pytestmark = pytest.mark.slow


def _torchrun(workdir, probe, options, *flags):
    probe.mkdir(exist_ok=True)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += [str(REPO / "tests" / "ddp_probe.py"), str(probe), "-opt", options, "--launcher", "pytorch", *flags]
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def test_two_cpu_processes_train_one_model(tmp_path):
    workdir = make_workdir(tmp_path)
    name = "ddp_cpu"
    opt = train_options(name, 4)
    # 4 training images, 2 ranks, 1 image per rank and step: one epoch = 2 steps
    opt["datasets"]["train"].update(batch_size_per_gpu=1, dataset_enlarge_ratio=1)
    write_options(workdir / "ddp.yml", opt)
    probe = tmp_path / "probe"
    _torchrun(workdir, probe, "ddp.yml")

    steps = [[json.loads(line) for line in (probe / f"rank{r}.jsonl").read_text().splitlines()] for r in (0, 1)]
    assert [s["iter"] for s in steps[0]] == [s["iter"] for s in steps[1]] == [1, 2, 3, 4]
    for rank0, rank1 in zip(*steps, strict=True):
        assert rank0["weights"] == rank1["weights"], f"weights differ after iteration {rank0['iter']}"
    assert len({s["weights"] for s in steps[0]}) == 4  # and they do change
    for epoch in range(2):  # per epoch the ranks split the 4 images between them
        seen = [{key for s in steps[r][2 * epoch : 2 * epoch + 2] for key in s["keys"]} for r in (0, 1)]
        assert not seen[0] & seen[1] and len(seen[0] | seen[1]) == 4, seen

    exp = workdir / "experiments" / name
    records = [json.loads(line) for line in (exp / "val_metrics.jsonl").read_text().splitlines()]
    # once per validation; BasicSR's validation after the loop repeats iteration 4's and is left out
    assert [r["iter"] for r in records] == [2, 4]
    assert sorted(p.name for p in (exp / "models").iterdir()) == ["net_g_2.pth", "net_g_4.pth", "net_g_latest.pth"]
    assert sorted(p.name for p in (exp / "training_states").iterdir()) == ["2.state", "4.state"]
    assert len(list(exp.glob("train_*.log"))) == 1
    state = torch.load(exp / "training_states" / "4.state", map_location="cpu", weights_only=False)
    assert state["data_position"]["world_size"] == 2 and len(state["data_position"]["rng"]) == 2
    final = torch.load(exp / "models" / "net_g_latest.pth", map_location="cpu")["params"]
    assert all(torch.isfinite(v).all() for v in final.values())

    # --auto_resume under DDP: from 4.state to 6 iterations gives the weights of 6 straight ones
    write_options(workdir / "ddp6.yml", {**opt, "train": {**opt["train"], "total_iter": 6}})
    _torchrun(workdir, tmp_path / "probe_resumed", "ddp6.yml", "--auto_resume")
    resumed = [json.loads(line) for line in (tmp_path / "probe_resumed" / "rank0.jsonl").read_text().splitlines()]
    assert [s["iter"] for s in resumed] == [5, 6]
    straight = {**opt, "name": "ddp_straight", "train": {**opt["train"], "total_iter": 6}}
    write_options(workdir / "straight6.yml", straight)
    _torchrun(workdir, tmp_path / "probe_straight", "straight6.yml")
    a = torch.load(exp / "models" / "net_g_latest.pth", map_location="cpu")
    b = torch.load(workdir / "experiments" / "ddp_straight" / "models" / "net_g_latest.pth", map_location="cpu")
    for part in ("params", "params_ema"):
        for key in a[part]:
            assert torch.equal(a[part][key], b[part][key]), (part, key)


def test_sigterm_to_torchrun_saves_once_and_resumes(tmp_path):
    """A cluster's SIGTERM reaches torchrun, which passes it to both ranks: they stop at the same
    iteration (the stop flag is all-reduced), rank 0 saves it, and --auto_resume carries on."""
    workdir = make_workdir(tmp_path)
    opt = train_options("ddp_term", 400)
    opt["datasets"]["train"].update(batch_size_per_gpu=1, dataset_enlarge_ratio=1)
    opt["logger"].update(save_checkpoint_freq=3, print_freq=50)
    opt["val"]["val_freq"] = 1000
    write_options(workdir / "term.yml", opt)
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""), OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "serpent_arch.cli", "train", "-opt", "term.yml", "--launcher", "pytorch"]
    proc = subprocess.Popen(command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    states = workdir / "experiments" / "ddp_term" / "training_states"
    deadline = time.time() + 300
    while not (states / "3.state").exists():
        assert proc.poll() is None and time.time() < deadline, proc.stdout.read() if proc.poll() is not None else ""
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0
    assert output.count("SIGTERM received: saved the checkpoint") == 2, output  # both ranks report it
    saved = max(int(p.stem) for p in states.glob("*.state"))
    assert saved >= 3 and saved < 400
    state = torch.load(states / f"{saved}.state", map_location="cpu", weights_only=False)
    assert state["iter"] == saved and len(state["data_position"]["rng"]) == 2

    opt["train"]["total_iter"] = saved + 2
    write_options(workdir / "term.yml", opt)
    resumed = subprocess.run(
        [*command, "--auto_resume"], cwd=workdir, env=env, capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"Resuming training from epoch: {state['epoch']}, iter: {saved}." in resumed.stdout + resumed.stderr
    assert (workdir / "experiments" / "ddp_term" / "models" / "net_g_latest.pth").is_file()
