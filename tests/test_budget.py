"""The equal-budget study (study/, run from the repository root): its option files, its arithmetic, its
record-only candidates, the command end to end, and the tables rebuilt from the records."""

import argparse
import csv
import json
from pathlib import Path

import pytest
import yaml
from e2e_util import REPO

import serpent_arch  # noqa: F401
from study import budget, budget_speeds, contenders
from study.contenders import NETWORKS, TASKS, option_paths, train_options
from study.serpent_candidates import RECORD_ONLY, SERPENT_CANDIDATES

RECORDS = REPO / "study" / "records" / "budget"


def _without(opt: dict, *keys: str) -> dict:
    opt = json.loads(json.dumps(opt))
    opt.pop("name", None)
    opt.pop("network_g")
    for key in keys:
        section, _, sub = key.partition(":")
        opt[section].pop(sub) if sub else opt.pop(section)
    return opt


@pytest.fixture(scope="module")
def option_files(tmp_path_factory):
    """Every contender's option files as ``python -m study options --out DIR`` writes them."""
    root = tmp_path_factory.mktemp("options")
    assert contenders.main(["--out", str(root)]) == 0
    return root


@pytest.mark.parametrize("task", list(TASKS))
def test_option_files_of_a_task_differ_only_in_the_network(task, option_files):
    networks = [n for n in NETWORKS if task in NETWORKS[n]]
    assert len(networks) >= 3
    for network in networks:
        train_path, test_path = option_paths(task, network, option_files)
        # the files read back as what the module says
        assert yaml.safe_load(train_path.read_text()) == json.loads(json.dumps(train_options(task, network)))
        assert yaml.safe_load(test_path.read_text()) == json.loads(json.dumps(contenders.test_options(task, network)))
        assert _without(train_options(task, network)) == _without(train_options(task, networks[0]))
        test = contenders.test_options(task, network)
        assert _without(test, "path") == _without(contenders.test_options(task, networks[0]), "path")


def test_write_option_files(tmp_path, option_files):
    """Two files per (network, task), named after both; one network's pair is what the budget command writes
    before a run of it, into the git-ignored study/options/ by default."""
    written = contenders.write_option_files(tmp_path)
    pairs = [(task, network) for network, tasks in NETWORKS.items() for task in tasks]
    assert len(written) == 2 * len(pairs) == len(set(written))
    assert sorted(p.name for p in written) == sorted(p.name for p in option_files.glob("*.yml"))
    assert {p.name for p in written} >= {"budget_sr_msrresnet.yml", "test_budget_deblur_serpent-tiny.yml"}
    train_path, test_path = contenders.write_network_options("sr", "msrresnet", tmp_path / "one")
    assert train_path.read_text() == (tmp_path / "budget_sr_msrresnet.yml").read_text()
    assert test_path.read_text() == (tmp_path / "test_budget_sr_msrresnet.yml").read_text()
    assert "python -m study options" in train_path.read_text()
    assert contenders.OPTIONS_DIR == Path("study/options")
    ignored = (REPO / ".gitignore").read_text().splitlines()
    assert "study/options/" in ignored


def test_the_serpent_candidates_name_a_preset_and_the_removed_options_make_them_record_only():
    """Every candidate keeps its entry (the records name it); those whose network_g uses an argument or an
    upsampler Serpent no longer has are record-only, and every other one builds."""
    from serpent_arch.archs.build import build_network

    assert {name: options for name, options in RECORD_ONLY.items()} == {
        "serpent-cffn-sc-lr": ["stage_conv"],
        "serpent-cffn-nc-amp-lcnr-lr": ["contrast_norm_raw"],
        "serpent-cffn-nc-amp-lmn15-br-lr": ["block_rescale"],
        "serpent-cffn-psc-amp-lmn15-lr": ["upsampler pixelshuffle+conv"],
        "serpent-cffn-nc-amp-lmn15-ca-lr": ["channel_attention"],
        "serpent-cffn-dc-amp-lmn15-e3-f3-lr": ["upsampler transposed+conv"],
        "serpent-cffn-nc-amp-lmn15-e3-f3-cl-lr": ["upsampler_channels_last"],
        "serpent-cffn-nc-amp-lmn15-e3-f3-ss-lr": ["skip_scale"],
        "serpent-cffn-nc-amp-lmn15-e3-f3-an-lr": ["block_norm"],
        "serpent-cffn-nc-ccm-lr": ["ffn_dense"],
    }
    recorded = {json.loads(p.read_text())["network"] for p in (RECORDS / "runs").glob("*.json")}
    timed = json.loads((RECORDS / "throughput_sr_2threads.json").read_text())["networks"]
    assert recorded <= set(NETWORKS) and set(RECORD_ONLY) <= set(timed)  # the records name only known networks
    for name, tasks in SERPENT_CANDIDATES.items():
        for network_g in tasks.values():
            assert "variant" not in network_g and network_g["preset"] in ("tiny", "small"), name
            if name not in RECORD_ONLY:
                build_network(dict(network_g), meta=True)


@pytest.mark.parametrize("network", sorted(RECORD_ONLY))
def test_a_record_only_candidate_is_refused_a_training_but_its_records_tabulate(network, tmp_path, capsys):
    """Nothing of a record-only candidate is trained, tested or timed: the command stops before anything runs,
    with one line naming the candidate and the removed option. Its records still give its row."""
    args = ["--iterations", "7", "--threads", "1", "--tasks", "sr", "--networks", f"msrresnet,{network}"]
    args += ["--out", str(tmp_path / "out"), "--options", str(tmp_path / "options")]
    (tmp_path / "out").mkdir()
    for name in ("throughput_sr_1threads.json", "network_facts.json"):  # timed and counted as recorded
        record = json.loads((RECORDS / name.replace("1threads", "2threads")).read_text())
        (tmp_path / "out" / name).write_text(json.dumps(record))
    with pytest.raises(SystemExit) as stop:
        budget.main(args)
    message = str(stop.value)
    assert "\n" not in message and network in message and RECORD_ONLY[network][0] in message
    assert "record-only" in message and "msrresnet" not in message
    assert not (tmp_path / "out" / "runs").exists() and not (tmp_path / "options").exists()  # nothing ran
    from study import budget_speeds as speeds

    with pytest.raises(SystemExit, match=f"cannot time {network}: it is record-only"):
        speeds.measure("sr", [network], tmp_path / "empty", 1, 1)
    with pytest.raises(SystemExit, match=f"cannot count the parameters and GFLOPs of {network}"):
        budget.report.network_facts("sr", network, tmp_path / "empty")
    assert budget.report.network_facts("sr", network, tmp_path / "out")[0] > 0  # recorded: no network built


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
    args += ["--val-points", "1", "--repeats", "1", "--out", str(out)]  # option files: tmp_path/study/options
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
    assert sorted(p.name for p in (tmp_path / "study" / "options").glob("*.yml")) == [
        f"{kind}budget_sr_{network}.yml" for kind in ("", "test_") for network in ("msrresnet", "serpent-tiny")
    ]  # written where the runs needed them
    facts = json.loads((out / "network_facts.json").read_text())["sr"]
    assert set(facts) == {"serpent-tiny", "msrresnet"} and facts["msrresnet"]["params_m"] == pytest.approx(1.517571)
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
    from study.budget_report import _recipe_note

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
        [sys.executable, "-m", "study", "budget", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=900,
    )
    assert (proc.returncode == 0) == ok, proc.stdout + proc.stderr
    return proc


def test_a_later_sitting_measures_beside_an_anchor(tmp_path, monkeypatch):
    """New networks are timed in one interleaved run with a recorded one and scaled by its recorded
    time times their time / its time, round by round; a recheck measures everything afresh, unscaled."""
    from study import throughput

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
    from study.budget_report import _where_measured

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


def test_the_study_runs_from_the_repository_root_and_the_product_no_longer_has_its_commands(capsys):
    from serpent_arch.benchmark import __main__ as product
    from study import __main__ as study

    assert study.main([]) == 2 and study.main(["nonsense"]) == 2
    assert set(study.COMMANDS) >= {"budget", "tables", "options", "layout", "upsampler", "contrast", "spectrum", "dark"}
    assert not set(study.COMMANDS) & set(product.COMMANDS)
    with pytest.raises(SystemExit) as exc:
        study.main(["budget", "--help"])
    assert exc.value.code == 0 and "python -m study budget" in capsys.readouterr().out
    import serpent_arch as package

    assert not (Path(package.__file__).parent / "benchmark" / "budget.py").exists()
    setup = (REPO / "setup.py").read_text()
    assert 'find_packages(include=["serpent_arch", "serpent_arch.*"])' in setup  # study/ is not installed


def test_the_tables_rebuild_from_the_records_byte_for_byte(tmp_path, capsys):
    """``python -m study tables`` on a copy of the records (no weights, no results/) writes every committed
    table again, identical: the run records, the throughput record and the network sizes hold everything."""
    import shutil

    from study import tables

    assert tables.main(["--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    budget_lines = [line for line in listed if line.startswith("python -m study budget ")]
    assert len(budget_lines) == len(tables.COMMANDS) and all(line.startswith("python -m study ") for line in listed)
    copy = tmp_path / "budget"
    shutil.copytree(RECORDS, copy)
    for table in copy.glob("budget_*"):
        if "_2min_" not in table.name:  # the 2-minute tables: an earlier command's, not rebuilt
            table.unlink()
    assert tables.main(["--out", str(copy)]) == 0
    committed = sorted(p.relative_to(RECORDS) for p in RECORDS.rglob("*") if p.is_file())
    assert sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file()) == committed
    assert [path for path in committed if (copy / path).read_bytes() != (RECORDS / path).read_bytes()] == []


def test_tables_stop_where_a_run_is_not_recorded(tmp_path):
    """--records-only never trains: a run missing from the records stops the command and names it."""
    out = tmp_path / "out"
    out.mkdir()
    for name in ("throughput_sr_2threads.json", "network_facts.json"):
        (out / name).write_bytes((RECORDS / name).read_bytes())
    args = ["--iterations", "7", "--threads", "2", "--tasks", "sr", "--networks", "msrresnet", "--records-only"]
    with pytest.raises(SystemExit, match="--records-only: budget_sr_msrresnet_lr0.0002_7it_s0 is not in the records"):
        budget.main([*args, "--out", str(out)])
    deblur = ["--iterations", "7", "--threads", "2", "--tasks", "deblur", "--networks", "serpent-tiny"]
    with pytest.raises(SystemExit, match="has no s / iteration of serpent-tiny"):  # not timed: no deblur record here
        budget.main([*deblur, "--records-only", "--out", str(out)])
    with pytest.raises(SystemExit):
        budget.main([*args, "--recheck-throughput", "--out", str(out)])  # a recheck measures
