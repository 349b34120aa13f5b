"""The equal-budget benchmark: its option files, its arithmetic, and the command end to end."""

import argparse
import csv
import json
from pathlib import Path

import pytest
import yaml
from e2e_util import REPO

import serpent_arch  # noqa: F401
from serpent_arch.benchmark import budget, budget_speeds, contenders
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
    # another seed at the learning rate each network kept with seed 0, and the table across seeds
    kept = {r["network"]: float(r["lr"]) for r in rows}
    args_s1 = [*args, "--seed", "1", "--lr-of-seed", "0"]
    args_s1[args_s1.index("serpent-tiny,msrresnet")] = "serpent-tiny"
    seed1 = basicsr_budget(tmp_path, args_s1)
    assert seed1.stdout.count("[budget] train") == 1
    assert f"lr{kept['serpent-tiny']:g}_0.03min_s1" in seed1.stdout
    assert "it kept with seed 0" in (out / "budget_sr_0.03min_s1.md").read_text()
    seeds = (out / "budget_sr_0.03min_seeds.md").read_text()
    assert "| serpent-tiny |" in seeds and "| seed 0 | seed 1 |" in seeds and "msrresnet" not in seeds
    no_sweep = basicsr_budget(tmp_path, [*args_s1[:-1], "7"], ok=False)
    assert "no finished sr run with seed 7" in no_sweep.stdout + no_sweep.stderr
    # equal iterations: a network's time-budget runs are the same training at their iteration count
    iters = {r["network"]: int(r["iterations"]) for r in rows}["serpent-tiny"]
    args_it = ["--iterations", str(iters), *args[2:], "--recheck-throughput"]
    args_it[args_it.index("serpent-tiny,msrresnet")] = "serpent-tiny"
    equal = basicsr_budget(tmp_path, args_it)
    assert "[budget] train" not in equal.stdout and equal.stdout.count(", reused") == 2
    # only the learning rate the time budget's sweep kept (the same training again: reused)
    kept_only = basicsr_budget(tmp_path, [*args_it, "--lr-of-seed", "0", "--lr-of-budget", "0.03min"])
    assert kept_only.stdout.count(", reused") == 1 and f"_lr{kept['serpent-tiny']:g}_" in kept_only.stdout
    table_it = (out / f"budget_sr_{iters}it_s0.md").read_text()
    assert "it kept with seed 0 at the 0.03min budget" in table_it and "--lr-of-budget 0.03min" in table_it
    assert f"{iters} training iterations per run (equal iterations)" in table_it and "| serpent-tiny |" in table_it
    assert "--iterations" in table_it and "msrresnet" not in table_it
    # the recheck measures again beside the record, without changing any count
    recheck = json.loads(next(out.glob("throughput_sr_*threads_recheck.json")).read_text())["networks"]
    assert set(recheck) == {"serpent-tiny"} and recheck["serpent-tiny"]["s_per_iter"] > 0
    assert "s / iter checked" in table_it
    assert f"serpent-tiny {recheck['serpent-tiny']['s_per_iter']:.3f}" in table_it
    # a recipe: the same network and rate trained again on changed patches, under its own names
    args_recipe = [*args_s1[:-4], "--lr-of-seed", "0", "--recipe", "gray-contrast", "--lr-of-budget", "0.03min"]
    recipe = basicsr_budget(tmp_path, args_recipe)
    name = f"budget_sr_serpent-tiny_lr{kept['serpent-tiny']:g}_0.03min-gray-contrast_s0"
    assert recipe.stdout.count("[budget] train") == 1 and name in recipe.stdout and ", reused" not in recipe.stdout
    assert "gray_prob: 0.25" in (tmp_path / "experiments" / f"{name}_budget.log").read_text()
    table_recipe = (out / "budget_sr_0.03min-gray-contrast_s0.md").read_text()
    assert "recipe gray-contrast: the training set's gray_prob 0.25" in table_recipe
    assert "--recipe gray-contrast" in table_recipe


def test_every_recipe_changes_options_the_trainer_reads():
    """A recipe's keys are option paths (``--force_yml`` overrides): each one's parent exists in every training
    option file, and the table names what changed."""
    from serpent_arch.benchmark.budget_report import _recipe_note

    for task in TASKS:
        opt = train_options(task, next(n for n in NETWORKS if task in NETWORKS[n]))
        for recipe, changes in contenders.RECIPES.items():
            for key in changes:
                *parents, leaf = key.split(":")
                node = opt
                for part in parents:
                    assert isinstance(node.get(part), dict), f"{recipe}: {key} has no {part!r} in the {task} options"
                    node = node[part]
                assert leaf in node or parents == ["datasets", "train"], f"{recipe}: {key} sets an unknown option"
    assert _recipe_note("base") == ""
    assert _recipe_note("warmup") == "; recipe warmup: train.warmup_iter 100"
    assert _recipe_note("gray-contrast").startswith("; recipe gray-contrast: the training set's gray_prob 0.25, ")


def test_a_finished_run_of_the_same_training_is_found(tmp_path):
    record = dict(name="r", task="sr", network="n", lr=1e-3, seed=0, iters=50, status="ok")
    (tmp_path / "r.json").write_text(json.dumps(record))
    assert budget._same_training("sr", "n", 1e-3, 50, 0, tmp_path)["name"] == "r"
    for other in [("deblur", "n", 1e-3, 50, 0), ("sr", "m", 1e-3, 50, 0), ("sr", "n", 2e-4, 50, 0),
                  ("sr", "n", 1e-3, 51, 0), ("sr", "n", 1e-3, 50, 1)]:
        assert budget._same_training(*other, tmp_path) is None
    assert budget._same_training("sr", "n", 1e-3, 50, 0, tmp_path, "gray-contrast") is None  # another recipe
    (tmp_path / "r.json").write_text(json.dumps(dict(record, status="failed (exit status 1)")))
    assert budget._same_training("sr", "n", 1e-3, 50, 0, tmp_path) is None


def _finished(runs: Path, results: Path | None, network: str, lr: float, seed: int, pick: float, report=None):
    name = budget.run_name("sr", network, lr, "5min", seed)
    record = dict(name=name, task="sr", network=network, lr=lr, seed=seed, iters=10, status="ok",
                  pick_curve=[{"iter": 5, "psnr": 20.0}, {"iter": 10, "psnr": pick}])
    runs.mkdir(parents=True, exist_ok=True)
    (runs / f"{name}.json").write_text(json.dumps(record))
    if report is not None:
        (results / name).mkdir(parents=True)
        (results / name / "metrics.json").write_text(json.dumps({"report": {"metrics": {"psnr": report}}}))


def test_the_kept_learning_rate_and_the_table_across_seeds(tmp_path):
    out, runs, results = tmp_path / "out", tmp_path / "out" / "runs", tmp_path / "results"
    _finished(runs, results, "a", 2e-4, 0, pick=28.0, report=None)  # the lower pick: not tested
    _finished(runs, results, "a", 1e-3, 0, pick=29.0, report=29.5)
    _finished(runs, results, "a", 1e-3, 1, pick=28.9, report=29.2)
    _finished(runs, results, "a", 2e-3, 1, pick=30.0, report=31.0)  # outside the sweep: ignored
    _finished(runs, results, "a", 2e-4, 1, pick=29.5, report=30.5)  # not the rate kept with seed 0: ignored
    _finished(runs, results, "b", 2e-4, 0, pick=29.4, report=29.4)
    _finished(runs, results, "b", 1e-3, 0, pick=27.0, report=None)
    _finished(runs, results, "c", 1e-3, 0, pick=29.0, report=29.9)  # one seed: not in the table
    lrs = [2e-4, 1e-3]
    assert budget.kept_lr("sr", "a", "5min", 0, lrs, runs) == 1e-3
    assert budget.kept_lr("sr", "b", "5min", 0, lrs, runs) == 2e-4
    assert budget.kept_lr("sr", "a", "5min", 1, [2e-3, 1e-3], runs) == 2e-3
    assert budget.kept_lr("sr", "a", "5min", 1, lrs, runs) == 2e-4
    assert budget.kept_lr("sr", "b", "5min", 1, lrs, runs) is None
    assert budget.kept_lr("sr", "a", "2min", 0, lrs, runs) is None
    found = budget.seed_runs("sr", "5min", lrs, out, tmp_path)
    assert {(r["network"], r["seed"], r["lr"]) for r in found} == {("a", 0, 1e-3), ("a", 1, 1e-3), ("b", 0, 2e-4),
                                                                   ("c", 0, 1e-3)}
    stem = out / "budget_sr_5min_seeds"
    assert budget.report.write_seeds("sr", "5min", found, stem)
    table = stem.with_name(stem.name + ".md").read_text()
    assert "| a | 0.001 | 29.500 | 29.200 | 29.350 | 0.300 |" in table
    assert "| b |" not in table and "| c |" not in table
    rows = list(csv.DictReader(open(stem.with_name(stem.name + ".csv"))))
    assert [(r["network"], r["seed"]) for r in rows] == [("a", "0"), ("a", "1")]
    assert not budget.report.write_seeds("sr", "5min", [r for r in found if r["network"] != "a"], tmp_path / "none")


def test_a_report_is_kept_in_the_run_record_and_read_back_without_the_results(tmp_path):
    """A test's report-set metrics are copied into the run's record, so a clone (records, no weights and no
    results/) tabulates them: neither test_run nor the seed table needs results/ once the record holds them."""
    out, runs, results = tmp_path / "out", tmp_path / "out" / "runs", tmp_path / "results"
    _finished(runs, results, "a", 1e-3, 0, pick=29.0, report=29.5)
    _finished(runs, results, "a", 1e-3, 1, pick=28.9, report=29.2)
    name = budget.run_name("sr", "a", 1e-3, "5min", 0)
    assert "report" not in json.loads((runs / f"{name}.json").read_text())
    assert budget.stored_report(out, tmp_path, name) == {"metrics": {"psnr": 29.5}}
    assert json.loads((runs / f"{name}.json").read_text())["report"] == {"metrics": {"psnr": 29.5}}
    budget.stored_report(out, tmp_path, budget.run_name("sr", "a", 1e-3, "5min", 1))

    import shutil

    shutil.rmtree(results)  # a clone: the records only
    args = argparse.Namespace(out=out, options=tmp_path / "no-options", threads=None)
    assert budget.test_run("sr", "a", name, args, tmp_path) == {"metrics": {"psnr": 29.5}}  # no basicsr test
    assert not results.exists()
    found = budget.seed_runs("sr", "5min", [1e-3], out, tmp_path)
    assert [(r["seed"], r["report"]["metrics"]["psnr"]) for r in found] == [(0, 29.5), (1, 29.2)]
    never = budget.run_name("sr", "a", 2e-4, "5min", 0)
    assert budget.stored_report(out, tmp_path, never) is None  # never tested, nor recorded


def basicsr_budget(cwd: Path, args: list[str], ok: bool = True):
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "serpent_arch.benchmark", "budget", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc


def test_a_later_sitting_measures_beside_an_anchor(tmp_path, monkeypatch):
    """New networks are timed in one interleaved run with a recorded one and scaled by its recorded
    time times their time / its time, round by round; a recheck measures everything afresh, unscaled."""
    from serpent_arch.benchmark import throughput

    fake = {"serpent-tiny": 0.1, "msrresnet": 0.3, "edsr-baseline": 0.5}
    timed = []

    def seconds_per_iteration(networks, repeats, **shape):
        timed.append(sorted(networks))
        return {n: {"s_per_iter": fake[n], "blocks": [fake[n]], "iters_per_block": 1} for n in networks}

    monkeypatch.setattr(throughput, "seconds_per_iteration", seconds_per_iteration)
    first = budget_speeds.measure("sr", ["serpent-tiny"], tmp_path, 1, 1)
    assert first["serpent-tiny"]["s_per_iter"] == 0.1 and "anchor" not in first["serpent-tiny"]
    fake["serpent-tiny"] = 0.05  # the machine is twice as fast in the second sitting
    second = budget_speeds.measure("sr", ["msrresnet", "edsr-baseline"], tmp_path, 1, 1)
    assert timed[-1] == ["edsr-baseline", "msrresnet", "serpent-tiny"]
    assert second["msrresnet"]["s_per_iter"] == pytest.approx(0.6) and second["msrresnet"]["raw_s_per_iter"] == 0.3
    assert second["edsr-baseline"]["anchor"] == "serpent-tiny" and second["edsr-baseline"]["anchor_factor"] == 2.0
    # a listed recorded network is the anchor, even one that was itself scaled; among the listed (or, when
    # none is listed, among all), one measured directly is preferred to a scaled one
    recorded = json.loads(budget_speeds.throughput_path("sr", tmp_path, 1).read_text())["networks"]
    assert budget_speeds._anchor(recorded, ["msrresnet", "swinir-light"]) == "msrresnet"
    assert budget_speeds._anchor(recorded, ["edsr-baseline", "serpent-tiny"]) == "serpent-tiny"
    assert budget_speeds._anchor(recorded, ["swinir-light"]) == "serpent-tiny"
    assert budget_speeds._anchor({"serpent-tiny": {}, "msrresnet": {}}, ["msrresnet"]) == "msrresnet"
    assert budget_speeds._anchor({"a": {"anchor": "x"}}, ["a"]) is None  # not a contender
    # A load that changes between rounds: the ratio is taken within each round, so it cancels (the
    # ratio of the two medians, 0.9 / 0.1, would give 0.9; round by round it is 3x the anchor's 0.1).
    fake_blocks = {"serpent-tiny": [0.1, 0.2, 0.3], "swinir-light": [0.3, 0.6, 0.9]}

    def per_round(networks, repeats, **shape):
        return {n: {"s_per_iter": sorted(b)[1], "blocks": b, "iters_per_block": 1} for n, b in fake_blocks.items()}

    monkeypatch.setattr(throughput, "seconds_per_iteration", per_round)
    scaled = budget_speeds.measure("sr", ["serpent-tiny", "swinir-light"], tmp_path, 1, 3)["swinir-light"]
    assert scaled["s_per_iter"] == pytest.approx(0.3) and scaled["ratio_to_anchor"] == pytest.approx([3, 3, 3])
    monkeypatch.setattr(throughput, "seconds_per_iteration", seconds_per_iteration)
    recheck = budget_speeds.measure("sr", ["msrresnet"], tmp_path, 1, 1, recheck=True)
    assert timed[-1] == ["msrresnet"] and recheck["msrresnet"]["s_per_iter"] == 0.3
    assert budget_speeds.measure("sr", ["msrresnet"], tmp_path, 1, 1)["msrresnet"]["s_per_iter"] == pytest.approx(0.6)


def test_a_table_names_the_machine_of_every_sitting():
    """Throughput records taken on different machines each keep their machine in the table's note."""
    from serpent_arch.benchmark.budget_report import _where_measured

    speeds = [
        {"measured": "2026-01-02 10:00:00", "machine": "AMD EPYC (avx2)"},
        {"measured": "2026-01-01 09:00:00", "machine": "AMD EPYC (avx2)"},
        {"measured": "2026-01-03 11:00:00", "machine": "Intel Xeon (avx512f)"},
        {"measured": "2026-01-03 11:00:00", "machine": "Intel Xeon (avx512f)"},
    ]
    assert _where_measured(speeds) == (
        "2026-01-01 09:00:00 and 2026-01-02 10:00:00 on AMD EPYC (avx2); 2026-01-03 11:00:00 on Intel Xeon (avx512f)"
    )
    assert _where_measured([{}]) == "- on a machine not recorded"
