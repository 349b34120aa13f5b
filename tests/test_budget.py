"""The equal-budget benchmark: its option files, its arithmetic, and the command end to end."""

import csv
import json
from pathlib import Path

import pytest
import yaml
from e2e_util import REPO

import serpent_arch  # noqa: F401
from serpent_arch.benchmark import budget, contenders
from serpent_arch.benchmark.contenders import NETWORKS, TASKS, option_paths, train_options

OPTIONS = REPO / "options" / "budget"


def _without(opt: dict, *keys: str) -> dict:
    opt = json.loads(json.dumps(opt))
    opt.pop("name", None)
    opt.pop("network_g")
    for key in keys:
        section, _, sub = key.partition(":")
        opt[section].pop(sub) if sub else opt.pop(section)
    return opt


@pytest.mark.parametrize("task", list(TASKS))
def test_option_files_of_a_task_differ_only_in_the_network(task):
    networks = [n for n in NETWORKS if task in NETWORKS[n]]
    assert len(networks) >= 3
    for network in networks:
        train_path, test_path = option_paths(task, network, OPTIONS)
        # the committed files are what the module writes (python -m serpent_arch.benchmark.contenders)
        assert yaml.safe_load(train_path.read_text()) == json.loads(json.dumps(train_options(task, network)))
        assert yaml.safe_load(test_path.read_text()) == json.loads(json.dumps(contenders.test_options(task, network)))
        assert _without(train_options(task, network)) == _without(train_options(task, networks[0]))
        test = contenders.test_options(task, network)
        assert _without(test, "path") == _without(contenders.test_options(task, networks[0]), "path")


def test_write_option_files(tmp_path):
    written = contenders.write_option_files(tmp_path)
    assert sorted(p.name for p in written) == sorted(p.name for p in OPTIONS.glob("*.yml"))


@pytest.mark.parametrize("iters,points", [(1, 4), (3, 4), (8, 4), (10, 4), (400, 4), (12, 3), (5, 1)])
def test_validation_frequency_never_divides_the_run(iters, points):
    freq = budget.validation_frequency(iters, points)
    assert freq > iters or iters % freq != 0
    assert len(range(freq, iters + 1, freq)) + 1 <= points + 1


def test_iterations_for_a_budget():
    assert budget.iterations_for(10, 0.1) == 6000
    assert budget.iterations_for(0.01, 5.0) == 1


@pytest.mark.slow
def test_budget_command_end_to_end(tmp_path):
    out = tmp_path / "out"
    args = ["--minutes", "0.03", "--tasks", "sr", "--networks", "serpent-tiny,msrresnet", "--lrs", "1e-3,2e-4"]
    args += ["--val-points", "1", "--repeats", "1", "--options", str(OPTIONS), "--out", str(out)]
    proc = basicsr_budget(tmp_path, args)
    table = (out / "budget_sr_0.03min_s0.md").read_text()
    assert (out / "budget_sr_0.03min_s0.png").stat().st_size > 1000
    rows = list(csv.DictReader(open(out / "budget_sr_0.03min_s0.csv")))
    assert {r["network"] for r in rows} == {"serpent-tiny", "msrresnet"}
    for row in rows:
        assert float(row["report_psnr"]) > 15 and int(row["iterations"]) >= 1 and float(row["lr"]) in (1e-3, 2e-4)
        assert f"| {row['network']} |" in table
        assert (tmp_path / "results" / row["run"] / "metrics.json").is_file()
        assert row["run"] in proc.stdout  # listed by basicsr leaderboard
    assert len(list((out / "runs").glob("*.json"))) == 4  # 2 networks x 2 learning rates
    # a second sitting finds every result and trains nothing
    again = basicsr_budget(tmp_path, args)
    assert "[budget] train" not in again.stdout and "[budget] test" not in again.stdout
    assert (out / "budget_sr_0.03min_s0.md").read_text() == table
    # equal iterations: a network's time-budget runs are the same training at their iteration count
    iters = {r["network"]: int(r["iterations"]) for r in rows}["serpent-tiny"]
    args_it = ["--iterations", str(iters), *args[2:], "--recheck-throughput"]
    args_it[args_it.index("serpent-tiny,msrresnet")] = "serpent-tiny"
    equal = basicsr_budget(tmp_path, args_it)
    assert "[budget] train" not in equal.stdout and equal.stdout.count(", reused") == 2
    table_it = (out / f"budget_sr_{iters}it_s0.md").read_text()
    assert f"{iters} training iterations per run (equal iterations)" in table_it and "| serpent-tiny |" in table_it
    assert "--iterations" in table_it and "msrresnet" not in table_it
    # the recheck measures again beside the record, without changing any count
    recheck = json.loads(next(out.glob("throughput_sr_*threads_recheck.json")).read_text())["networks"]
    assert set(recheck) == {"serpent-tiny"} and recheck["serpent-tiny"]["s_per_iter"] > 0
    assert "s / iter checked" in table_it
    assert f"serpent-tiny {recheck['serpent-tiny']['s_per_iter']:.3f}" in table_it


def test_a_finished_run_of_the_same_training_is_found(tmp_path):
    record = dict(name="r", task="sr", network="n", lr=1e-3, seed=0, iters=50, status="ok")
    (tmp_path / "r.json").write_text(json.dumps(record))
    assert budget._same_training("sr", "n", 1e-3, 50, 0, tmp_path)["name"] == "r"
    for other in [("deblur", "n", 1e-3, 50, 0), ("sr", "m", 1e-3, 50, 0), ("sr", "n", 2e-4, 50, 0),
                  ("sr", "n", 1e-3, 51, 0), ("sr", "n", 1e-3, 50, 1)]:
        assert budget._same_training(*other, tmp_path) is None
    (tmp_path / "r.json").write_text(json.dumps(dict(record, status="failed (exit status 1)")))
    assert budget._same_training("sr", "n", 1e-3, 50, 0, tmp_path) is None


def basicsr_budget(cwd: Path, args: list[str]):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "serpent_arch.benchmark", "budget", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc
