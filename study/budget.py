"""Quality at an equal training budget: Serpent against BasicSR's own networks, trained the same way.

    python -m study budget [--minutes 10 | --iterations N] [--tasks sr,deblur]
        [--networks NAME,...] [--lrs 2e-4,5e-4,1e-3] [--threads T] [--seed 0] [--lr-of-seed S]
        [--recipe base] [--val-points 4] [--out study/records/budget]

Protocol, per task (``study.contenders``: the tasks, the networks and their
option files, which differ only in ``network_g``; each run's are written to ``--options``, by default the
git-ignored ``study/options/``, before it trains or tests):

1. One interleaved throughput run of all contenders in this process gives each one's seconds
   per training iteration; the budget (``--minutes`` of training) becomes an iteration count per
   network. Runs are then trained for their count, whatever the load while they run, so results
   depend on the seed only. The measurement is kept in ``OUT/throughput_<task>_<T>threads.json``
   and reused by later sittings (delete it to measure again). A later sitting measures the
   networks it adds beside one already recorded (the anchor: a listed one if any) and scales
   them by the anchor's recorded / measured time, so a machine whose speed changed between
   sittings (shared, or another load) does not shift the counts.
2. Every network is trained at every learning rate of ``--lrs`` by ``basicsr train`` (a
   subprocess, experiment ``budget_<task>_<network>_lr<LR>_<M>min_s<SEED>``), AdamW with a cosine
   schedule over its iterations, EMA 0.999 with SerpentModel's warm-up, validating the EMA weights
   on the pick set (the sample's three validation photos) ``--val-points`` times.
3. Per network the learning rate with the best final pick-set PSNR is kept, and only that run is
   evaluated by ``basicsr test`` on the report set (four other photos, never trained on and never
   used for a choice): results/<run>/metrics.json, so ``basicsr leaderboard`` lists it; the run's
   record (``OUT/runs/<run>.json``) keeps a copy, so a clone without the weights tabulates it too.
4. ``OUT/budget_<task>_<M>min_s<SEED>.{md,csv,png}``: the table and the validation curves (pick-set
   PSNR against training seconds = iterations x s / iteration).

``--seed 1 --lr-of-seed 0`` repeats a sweep with another seed: every network trains only at the
learning rate it kept with seed 0 (``--lr-of-budget 5min``: in the 5-minute sweep, e.g. for a
longer budget without a sweep of its own). ``OUT/budget_<task>_<M>min_seeds.{md,csv}`` then tabulates the
report PSNR of each network's kept run at every seed trained, with their mean and spread.

``--recipe NAME`` (``contenders.RECIPES``) trains every network with the same change of its training
options, e.g. ``gray-contrast`` (gray and lower-contrast patches): its runs and tables carry the
name after the budget (``..._5min-gray-contrast_s0``), and ``--lr-of-seed 0 --lr-of-budget 5min`` trains
them at the rates the default recipe's sweep kept.

``--iterations N`` compares at equal iterations instead: every network trains for N iterations
(runs ``..._<N>it_s<SEED>``, tables ``budget_<task>_<N>it_s<SEED>``), e.g. N = the iterations the
slowest contender reached in the time budget.

Runs whose results exist are skipped (``OUT/runs/<run>.json`` records each finished run, its pick
curve and, once tested, its report metrics; a run of the same task, network, learning rate, seed
and iteration count made for another budget is the same training and is reused), so the experiment
can be completed over several sittings; an interrupted training resumes. Each network's parameters and
GFLOPs are recorded too (``OUT/network_facts.json``), so the tables rebuild from the records alone.

The candidates that use an option Serpent no longer has (``serpent_candidates.RECORD_ONLY``) are
record-only: listed, their recorded runs tabulate; a run of theirs that would have to train, test or be
timed stops the command with a one-line error that names the candidate and the removed option.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

from study import budget_report as report
from study import budget_speeds as speed_record
from study.contenders import DEFAULT_NETWORKS, NETWORKS, OPTIONS_DIR, RECIPES, TASKS, write_network_options
from study.serpent_candidates import RECORD_ONLY, refuse_record_only

DEFAULT_LRS = (2e-4, 5e-4, 1e-3)


def budget_label(args) -> str:
    """``5min`` for a time budget, ``300it`` for an equal-iteration one (run and table names), followed by
    ``-<recipe>`` for a recipe other than the default."""
    label = f"{args.iterations}it" if args.iterations else f"{args.minutes:g}min"
    recipe = report.recipe_name(args)
    return label if recipe == "base" else f"{label}-{recipe}"


def run_name(task: str, network: str, lr: float, label: str, seed: int) -> str:
    return f"budget_{task}_{network}_lr{lr:g}_{label}_s{seed}"


def _same_training(task, network, lr, iters, seed, runs: Path, recipe: str = "base") -> dict | None:
    """A finished run of another budget that trained exactly this (same options, same iterations)."""
    for path in sorted(runs.glob("*.json")) if runs.is_dir() else []:
        record = json.loads(path.read_text())
        same = (record.get("task"), record.get("network"), record.get("lr"), record.get("seed"), record.get("iters"))
        same += (record.get("recipe", "base"),)
        if same == (task, network, lr, seed, iters, recipe) and record.get("status") == "ok":
            return record
    return None


def kept_lr(task: str, network: str, label: str, seed: int, lrs, runs: Path) -> float | None:
    """The learning rate of ``lrs`` whose finished run of ``network`` at ``seed`` has the best final
    pick-set PSNR (None when none of them has finished)."""
    finished = []
    for lr in lrs:
        path = runs / f"{run_name(task, network, lr, label, seed)}.json"
        record = json.loads(path.read_text()) if path.is_file() else {}
        if record.get("status") == "ok" and record.get("pick_curve"):
            finished.append((record["pick_curve"][-1]["psnr"], lr))
    return max(finished)[1] if finished else None


def iterations_for(minutes: float, s_per_iter: float) -> int:
    """Training iterations that fit ``minutes`` at ``s_per_iter`` (at least one)."""
    return max(1, int(minutes * 60 / s_per_iter))


def validation_frequency(iters: int, points: int) -> int:
    """``val_freq`` giving about ``points`` validations, the last one being BasicSR's final one.

    BasicSR validates at every multiple of ``val_freq`` and once more after the last iteration;
    a frequency that divides ``iters`` would validate the final weights twice.
    """
    freq = max(1, math.ceil(iters / max(1, points)))
    while freq <= iters and iters % freq == 0:
        freq += 1
    return freq


def _basicsr(args: list[str], cwd: Path, threads: int | None, log: Path) -> int:
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as f:
        return subprocess.run(
            [sys.executable, "-m", "study.basicsr_cli", *args], cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT
        ).returncode


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.is_file() else ""


def _val_records(root: Path, name: str) -> list[dict]:
    path = root / "experiments" / name / "val_metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def finished_run(task, network, lr, iters, args) -> dict | None:
    """The finished record of this run (``OUT/runs/<run>.json``, at ``iters`` iterations), or, when it has no
    record, of a run of another budget that trained exactly this; None when it has to train."""
    record_path = args.out / "runs" / f"{run_name(task, network, lr, budget_label(args), args.seed)}.json"
    if not record_path.is_file():
        return _same_training(task, network, lr, iters, args.seed, args.out / "runs", args.recipe)
    record = json.loads(record_path.read_text())
    # a failed run is tried again (it resumes from its last training state)
    return record if record.get("iters") == iters and record.get("status") == "ok" else None


def _refuse_unrecorded(args, network: str, what: str, name: str) -> None:
    """Stop before ``what`` (train, test, time) of ``network`` is done for run ``name``: with ``--records-only``
    always, else when ``network`` is record-only."""
    if getattr(args, "records_only", False):
        raise SystemExit(f"[budget] --records-only: {name} is not in the records (it would {what} {network})")
    refuse_record_only(network, what)


def train_run(task, network, lr, iters, args, root: Path) -> dict:
    """Train one run unless its record exists; returns the record (``OUT/runs/<run>.json``)."""
    name = run_name(task, network, lr, budget_label(args), args.seed)
    record_path = args.out / "runs" / f"{name}.json"
    finished = finished_run(task, network, lr, iters, args)
    if finished is not None:
        if not record_path.is_file():
            print(f"[budget] {name}: the same training as {finished['name']}, reused", flush=True)
        return finished
    _refuse_unrecorded(args, network, "train", name)
    resume = True
    if record_path.is_file() and json.loads(record_path.read_text()).get("iters") != iters:
        # a new measurement: start afresh, set the old run aside
        resume = False  # without --auto_resume BasicSR archives experiments/<name>
        old_results = root / "results" / name
        if old_results.is_dir():
            old_results.rename(root / "results" / f"{name}_archived_{time.strftime('%Y%m%d_%H%M%S')}")
    train_opt, _ = write_network_options(task, network, args.options)
    freq = validation_frequency(iters, args.val_points)
    overrides = [
        f"name={name}",
        f"manual_seed={args.seed}",
        f"train:total_iter={iters}",
        f"train:scheduler:periods=[{iters}]",
        f"train:optim_g:lr=!!float{lr:g}",
        f"train:scheduler:eta_min=!!float{lr / 100:g}",
        f"val:val_freq={freq}",
        f"logger:save_checkpoint_freq={freq}",
        f"logger:print_freq={max(1, freq // 2)}",
    ]
    overrides += [f"{key}={value}" for key, value in RECIPES[args.recipe].items()]
    print(f"[budget] train {name}: {iters} iterations, validation every {freq}", flush=True)
    start = time.perf_counter()
    log = root / "experiments" / f"{name}_budget.log"
    command = ["train", "-opt", str(train_opt), *(["--auto_resume"] if resume else []), "--force_yml", *overrides]
    code = _basicsr(command, root, args.threads, log)
    # BasicSR validates once more after its loop, with its counter run past total_iter (one step
    # per epoch loop it leaves): that last record is of the final weights, at iteration `iters`.
    curve = [
        {"iter": min(r["iter"], iters), "psnr": r["metrics"].get("psnr"), "ssim": r["metrics"].get("ssim")}
        for r in _val_records(root, name)
    ]
    baseline = next((r.get("baseline") for r in _val_records(root, name) if r.get("baseline")), {})
    done = (root / "experiments" / name / "models" / "net_g_latest.pth").is_file()
    final = curve[-1] if code == 0 and done and curve else None
    record = {
        "name": name,
        "task": task,
        "network": network,
        "lr": lr,
        "seed": args.seed,
        "recipe": args.recipe,
        "minutes": None if args.iterations else args.minutes,
        "iters": iters,
        "status": "ok" if code == 0 and final else f"failed (exit status {code})",
        "wall_seconds": round(time.perf_counter() - start, 1),
        "pick_curve": curve,
        "pick_baseline": baseline,
    }
    if code != 0 or not final:
        print(f"[budget] {name} failed (exit status {code}); last lines of {log}:\n{_tail(log)}", flush=True)
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=1))
    return record


def test_run(task, network, name, args, root: Path) -> dict | None:
    """The report-set metrics of run ``name``: ``basicsr test`` on the report set unless they exist, in
    ``results/<name>/metrics.json`` or in the run's record, where every test's result is kept (a clone of the
    repository has the records but not the weights, so its tables come out whole)."""
    stored = stored_report(args.out, root, name)
    if stored is not None:
        return stored
    _refuse_unrecorded(args, network, "test", name)
    _, test_opt = write_network_options(task, network, args.options)
    overrides = [f"name={name}", f"path:pretrain_network_g=experiments/{name}/models/net_g_latest.pth"]
    print(f"[budget] test {name} on the report set", flush=True)
    log = root / "results" / f"{name}_budget.log"
    code = _basicsr(["test", "-opt", str(test_opt), "--force_yml", *overrides], root, args.threads, log)
    report = stored_report(args.out, root, name)
    if code != 0 or report is None:
        print(f"[budget] test of {name} failed (exit status {code}):\n{_tail(log)}", flush=True)
    return report


def stored_report(out: Path, root: Path, name: str) -> dict | None:
    """Run ``name``'s report-set record: from ``results/<name>/metrics.json`` (then copied into the run's
    record ``OUT/runs/<name>.json``), else from that record; None when the run was never tested."""
    metrics = root / "results" / name / "metrics.json"
    record_path = out / "runs" / f"{name}.json"
    record = json.loads(record_path.read_text()) if record_path.is_file() else None
    if metrics.is_file():
        report = json.loads(metrics.read_text()).get("report")
        if record is not None and report is not None and record.get("report") != report:
            record_path.write_text(json.dumps(dict(record, report=report), indent=1))
        return report
    return (record or {}).get("report")


def run_task(task: str, networks: list[str], args, root: Path) -> Path:
    speeds = speed_record.measure(task, networks, args.out, args.threads, args.repeats, records_only=args.records_only)
    if args.recheck_throughput:
        speed_record.measure(task, networks, args.out, args.threads, args.repeats, recheck=True)
    lrs = {network: list(args.lrs) for network in networks}
    if args.lr_of_seed is not None:
        source = args.lr_of_budget or budget_label(args)
        for network in networks:
            lr = kept_lr(task, network, source, args.lr_of_seed, args.lrs, args.out / "runs")
            if lr is None:
                raise SystemExit(
                    f"[budget] --lr-of-seed {args.lr_of_seed}: {network} has no finished {task} run with seed "
                    f"{args.lr_of_seed} at {source} and learning rates {_lr_list(args.lrs)}; "
                    "run that seed's sweep first"
                )
            lrs[network] = [lr]
    iters = {n: args.iterations or iterations_for(args.minutes, speeds[n]["s_per_iter"]) for n in networks}
    for network in networks:  # before anything trains: a run that may not train stops the command
        if network in RECORD_ONLY or args.records_only:
            for lr in lrs[network]:
                if finished_run(task, network, lr, iters[network], args) is None:
                    name = run_name(task, network, lr, budget_label(args), args.seed)
                    _refuse_unrecorded(args, network, "train", name)
    rows = []
    for network in networks:
        runs = [train_run(task, network, lr, iters[network], args, root) for lr in lrs[network]]
        ok = [r for r in runs if r["status"] == "ok"]
        pick_per_lr = {r["lr"]: (r["pick_curve"][-1]["psnr"] if r["status"] == "ok" else None) for r in runs}
        params, gflops = report.network_facts(task, network, args.out)
        row = dict(network=network, iters=iters[network], params=params, gflops=gflops, pick_per_lr=pick_per_lr,
                   lr=None, pick_psnr=None, curve=[], report=None, name=None, pick_baseline={})
        if ok:
            best = max(ok, key=lambda r: r["pick_curve"][-1]["psnr"])
            row.update(lr=best["lr"], pick_psnr=best["pick_curve"][-1]["psnr"], curve=best["pick_curve"],
                       name=best["name"], pick_baseline=best["pick_baseline"])
            row["report"] = test_run(task, network, best["name"], args, root)
        rows.append(row)
    stem = args.out / f"budget_{task}_{budget_label(args)}_s{args.seed}"  # 0.5min has a dot: no with_suffix
    print(report.write(task, rows, args, speeds, stem, speed_record.rechecked(task, args.out, args.threads)))
    label = budget_label(args)
    seeds = args.out / f"budget_{task}_{label}_seeds"
    sweep_seed = 0 if args.lr_of_seed is None else args.lr_of_seed
    if report.write_seeds(task, label, seed_runs(task, label, args.lrs, args.out, root, sweep_seed), seeds, sweep_seed):
        print(f"[budget] {task}: report PSNR across seeds in {seeds}.md")
    return stem


def seed_runs(task: str, label: str, lrs, out: Path, root: Path, sweep_seed: int = 0) -> list[dict]:
    """Every tested run of ``task`` at ``label`` at the learning rate its network kept with
    ``sweep_seed`` (of ``lrs``), one per (network, seed), with its report metrics."""
    found = []
    records = [json.loads(p.read_text()) for p in sorted((out / "runs").glob(f"budget_{task}_*_{label}_s*.json"))]
    for network, seed in sorted({(r["network"], r["seed"]) for r in records if r.get("task") == task}):
        lr = kept_lr(task, network, label, sweep_seed, lrs, out / "runs")
        report = stored_report(out, root, run_name(task, network, lr, label, seed)) if lr else None
        if report is not None:
            found.append(dict(network=network, seed=seed, lr=lr, report=report))
    return found


def _lr_list(lrs) -> str:
    return ", ".join(f"{lr:g}" for lr in lrs)


def _csv_list(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m study budget", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="training budget per run (default 10)")
    parser.add_argument(
        "--iterations", type=int, default=None, help="equal iterations for every network instead of --minutes"
    )
    parser.add_argument("--tasks", default="sr,deblur", help="comma-separated: sr, deblur")
    parser.add_argument("--networks", default=None, help="comma-separated contenders (default: all of the task)")
    parser.add_argument("--lrs", default=",".join(f"{lr:g}" for lr in DEFAULT_LRS), help="learning rates swept")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for measuring and training")
    parser.add_argument("--seed", type=int, default=0, help="manual_seed of every run")
    parser.add_argument(
        "--lr-of-seed",
        type=int,
        default=None,
        help="train every network only at the learning rate (of --lrs) it kept with this seed: "
        "for repeating a sweep with --seed",
    )
    parser.add_argument(
        "--lr-of-budget",
        default=None,
        help="with --lr-of-seed: the budget whose sweep chose the learning rates (e.g. 5min or 300it; "
        "default this one)",
    )
    parser.add_argument(
        "--recipe",
        default="base",
        choices=list(RECIPES),
        help="training recipe, the same for every network: a change of its training options "
        "(contenders.RECIPES; default base, the option files as written)",
    )
    parser.add_argument("--val-points", type=int, default=4, help="validations per run (curve points)")
    parser.add_argument(
        "--recheck-throughput",
        action="store_true",
        help="measure every listed network again, interleaved in one run, beside the recorded s / iteration "
        "(the iteration counts stay those of the record)",
    )
    parser.add_argument("--repeats", type=int, default=3, help="interleaved throughput rounds")
    parser.add_argument(
        "--records-only",
        action="store_true",
        help="tabulate the records only: stop, naming the run, where anything would train, test or be timed "
        "(python -m study tables)",
    )
    parser.add_argument(
        "--options", type=Path, default=OPTIONS_DIR, help="folder the runs' option files are written to"
    )
    parser.add_argument("--out", type=Path, default=Path("study/records/budget"), help="tables and plots")
    args = parser.parse_args(argv)

    tasks = _csv_list(args.tasks)
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        parser.error(f"--tasks: unknown {', '.join(unknown)}; choose from {', '.join(TASKS)}")
    wanted = _csv_list(args.networks) if args.networks else None
    if wanted:
        unknown = [n for n in wanted if n not in NETWORKS]
        if unknown:
            parser.error(f"--networks: unknown {', '.join(unknown)}; choose from {', '.join(NETWORKS)}")
    try:
        args.lrs = [float(lr) for lr in _csv_list(args.lrs)]
    except ValueError:
        parser.error(f"--lrs: expected comma-separated numbers, got {args.lrs!r}")
    if args.minutes <= 0 or not args.lrs or (args.iterations is not None and args.iterations < 1):
        parser.error("--minutes and --iterations must be > 0 and --lrs must name at least one learning rate")
    if args.lr_of_budget is not None and args.lr_of_seed is None:
        parser.error("--lr-of-budget needs --lr-of-seed (the seed of that budget's sweep)")
    if args.records_only and args.recheck_throughput:
        parser.error("--recheck-throughput measures: not with --records-only")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    args.options = args.options.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    root = Path.cwd()
    for task in tasks:
        networks = [n for n in (wanted or DEFAULT_NETWORKS[task]) if task in NETWORKS[n]]
        if not networks:
            print(f"[budget] {task}: none of the chosen networks takes part in it; skipped")
            continue
        stem = run_task(task, networks, args, root)
        print(f"[budget] {task}: {stem}.md, .csv, .png")
    # BasicSR's table of every test run, these included (results/leaderboard.md, .csv). A clone that took every
    # report number from the run records has no test run here to list.
    if not any((root / "results").glob("*/metrics.json")):
        print("[budget] no test run under results/ (every report number came from the run records): no leaderboard")
        return 0
    return subprocess.run([sys.executable, "-m", "study.basicsr_cli", "leaderboard", "results"], cwd=root).returncode


if __name__ == "__main__":
    raise SystemExit(main())
