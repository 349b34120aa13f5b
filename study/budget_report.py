"""The equal-budget study's report: its table (Markdown and CSV) and its validation-curve plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from study.contenders import NETWORKS, RECIPES, TASKS
from study.serpent_candidates import refuse_record_only

FACTS = "network_facts.json"


def write(task: str, rows: list[dict], args, speeds: dict, stem: Path, recheck: dict | None = None) -> str:
    """Write ``stem``.md, .csv and .png of one task; returns the Markdown table."""
    text, csv_rows = tabulate(task, rows, args, speeds, recheck)
    stem.with_name(stem.name + ".md").write_text(text)
    with open(stem.with_name(stem.name + ".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]) if csv_rows else ["task"])
        writer.writeheader()
        writer.writerows(csv_rows)
    plot(task, rows, speeds, stem.with_name(stem.name + ".png"), args)
    return text


def network_facts(task: str, network: str, out: Path | None = None) -> tuple[float, float]:
    """(parameters in millions, GFLOPs of one forward at the training patch size): as recorded in
    ``out/network_facts.json``, else counted (and recorded there, when ``out`` is given). A name stands for one
    network for good (its runs are recorded under it), so its record never goes stale; a record-only network
    (one Serpent no longer builds) has to be recorded."""
    path = out / FACTS if out is not None else None
    record = json.loads(path.read_text()) if path is not None and path.is_file() else {}
    known = record.get(task, {}).get(network)
    if known:
        return known["params_m"], known["gflops"]
    refuse_record_only(network, "count the parameters and GFLOPs of")
    params, gflops = count_network_facts(task, network)
    if path is not None:
        record.setdefault(task, {})[network] = {"params_m": params, "gflops": gflops}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1) + "\n")
    return params, gflops


def count_network_facts(task: str, network: str) -> tuple[float, float]:
    """(parameters in millions, GFLOPs of one forward at the training patch size), counted on the network built."""
    import torch
    from basicsr.archs import build_network

    import study.plain_unet  # noqa: F401  (registers the study's PlainUNet)
    from serpent_arch.leaderboard import count_network_gflops

    t = TASKS[task]
    opt = NETWORKS[network][task]
    params = sum(p.numel() for p in build_network(dict(opt)).parameters()) / 1e6
    side = t["gt_size"] // t["scale"]
    with torch.no_grad():
        gflops, _ = count_network_gflops(opt, (side, side))
    return params, gflops


def _fmt(value, digits=2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def tabulate(task: str, rows: list[dict], args, speeds: dict, recheck: dict | None = None) -> tuple[str, list[dict]]:
    """Markdown table and CSV rows of one task (``recheck``: a later interleaved measurement, noted)."""
    t = TASKS[task]
    report_base = next((r["report"]["baseline"] for r in rows if r.get("report")), {})
    lines = [
        f"# Equal training budget: {t['title']}",
        "",
        (
            f"{args.iterations} training iterations per run (equal iterations), "
            if args.iterations
            else f"{args.minutes:g} minutes of training per run (converted to iterations with the s / iteration "
            "measured interleaved below), "
        )
        + f"seed {args.seed}, "
        + (
            f"every network at the learning rate it kept with seed {args.lr_of_seed}"
            + (f" at the {args.lr_of_budget} budget" if getattr(args, "lr_of_budget", None) else "")
            + f" (of {_lrs(args.lrs)}); "
            if getattr(args, "lr_of_seed", None) is not None
            else f"learning rates {_lrs(args.lrs)} (best on the pick set kept); "
        )
        + f"batch {t['batch']}, {t['gt_size']}x{t['gt_size']} GT patches, L1, AdamW, "
        "cosine schedule, EMA 0.999 with warm-up (EMA weights evaluated)"
        + _recipe_note(recipe_name(args))
        + ". Report set: 4 photos never trained "
        "on nor used for a choice"
        + (f" (central {t['eval_crop']}x{t['eval_crop']} of each)" if t.get("eval_crop") else "")
        + ". " + ("Y-channel PSNR / SSIM, 4-pixel border cropped." if t["metric"]["test_y_channel"]
                  else "RGB PSNR / SSIM, no border cropped."),
        "",
        "| network | params (M) | GFLOPs | s / iter | iterations | lr | pick PSNR per lr | report PSNR | "
        "report SSIM | gain over input |",
        "|---|---:|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    if report_base:
        lines.append(
            f"| input ({'bicubic' if t['scale'] > 1 else 'blurred'}) | - | - | - | - | - | - | "
            f"{_fmt(report_base.get('psnr'))} | {_fmt(report_base.get('ssim'), 4)} | 0.00 |"
        )
    csv_rows = []
    for r in sorted(rows, key=lambda r: -(r.get("report") or {}).get("metrics", {}).get("psnr", -1e9)):
        metrics = (r.get("report") or {}).get("metrics", {})
        base = (r.get("report") or {}).get("baseline", {})
        gain = metrics["psnr"] - base["psnr"] if metrics.get("psnr") is not None and base.get("psnr") else None
        per_lr = " / ".join(f"{lr:g}: {_fmt(p)}" for lr, p in r["pick_per_lr"].items())
        lines.append(
            f"| {r['network']} | {r['params']:.2f} | {r['gflops']:.2f} | {speeds[r['network']]['s_per_iter']:.3f} | "
            f"{r['iters']} | {_fmt_lr(r['lr'])} | {per_lr} | {_fmt(metrics.get('psnr'))} | "
            f"{_fmt(metrics.get('ssim'), 4)} | {'-' if gain is None else f'{gain:+.2f}'} |"
        )
        csv_rows.append(
            dict(
                task=task,
                network=r["network"],
                params_m=r["params"],
                gflops=r["gflops"],
                s_per_iter=speeds[r["network"]]["s_per_iter"],
                iterations=r["iters"],
                minutes=None if args.iterations else args.minutes,
                iterations_budget=args.iterations,
                seed=args.seed,
                lr=r["lr"],
                pick_psnr=r["pick_psnr"],
                report_psnr=metrics.get("psnr"),
                report_ssim=metrics.get("ssim"),
                input_psnr=base.get("psnr"),
                input_ssim=base.get("ssim"),
                gain_db=gain,
                run=r["name"],
            )
        )
    side = t["gt_size"] // t["scale"]
    speed = speeds[next(iter(speeds))]
    lines += [
        "",
        f"- GFLOPs: one forward of a {side}x{side} input (the training patch), "
        "serpent_arch.measure.flops (multiply-add = 2 FLOPs, plus the selective scan).",
        "- s / iter: median of interleaved blocks of forward + L1 + backward + AdamW step, "
        f"{speed.get('threads')} torch threads, measured {_where_measured(speeds.values())}; "
        "data loading, EMA and validation not included.",
    ]
    anchored = [r["network"] for r in rows if speeds[r["network"]].get("anchor")]
    if anchored:
        lines.append(
            "- s / iter measured beside an anchor already recorded, as the anchor's recorded time times the median "
            "over rounds of the network's / the anchor's time in the same round: " + ", ".join(
                f"{n} (anchor {speeds[n]['anchor']}, x{speeds[n]['anchor_factor']:.2f}, "
                f"{speeds[n]['raw_s_per_iter']:.3f} as measured)" for n in anchored
            ) + "."
        )
    checked = [r["network"] for r in rows if r["network"] in (recheck or {})]
    if checked:
        stamp = recheck[checked[0]].get("measured")
        ratios = ", ".join(
            f"{n} {recheck[n]['s_per_iter']:.3f} ({recheck[n]['s_per_iter'] / speeds[n]['s_per_iter']:.2f}x)"
            for n in checked
        )
        lines.append(
            f"- s / iter checked {stamp}, all of these networks interleaved in one run (the iteration counts "
            f"stay those above): {ratios}."
        )
    lines += [
        "- pick PSNR per lr: final EMA weights on the pick set (chelsea, coffee, grace_hopper); "
        "report PSNR / SSIM: the kept lr on the report set (camera, coins, moon, grass).",
        "- `python -m study budget "
        + (f"--iterations {args.iterations}" if args.iterations else f"--minutes {args.minutes:g}")
        + f" --tasks {task} --seed {args.seed}"
        + (f" --lr-of-seed {args.lr_of_seed}" if getattr(args, "lr_of_seed", None) is not None else "")
        + (f" --lr-of-budget {args.lr_of_budget}" if getattr(args, "lr_of_budget", None) else "")
        + (f" --recipe {recipe_name(args)}" if recipe_name(args) != "base" else "")
        + (f" --threads {args.threads}" if args.threads else "")
        + "`",
    ]
    return "\n".join(lines) + "\n", csv_rows


def recipe_name(args) -> str:
    """The training recipe of a budget command's arguments (``base`` when it has none)."""
    return getattr(args, "recipe", "base")


def _recipe_note(recipe: str) -> str:
    """``; recipe NAME: the training set's OPTION VALUE, train.OPTION VALUE ...`` for a recipe other than ``base``."""
    if recipe == "base":
        return ""
    changed = RECIPES[recipe].items()
    training_set = [f"{key.split(':')[-1]} {v}" for key, v in changed if key.startswith("datasets:train:")]
    others = [f"{key.replace(':', '.')} {v}" for key, v in changed if not key.startswith("datasets:train:")]
    changes = ([f"the training set's {', '.join(training_set)}"] if training_set else []) + others
    return f"; recipe {recipe}: " + ", ".join(changes)


def _lrs(lrs) -> str:
    return ", ".join(f"{lr:g}" for lr in lrs)


def write_seeds(task: str, label: str, runs: list[dict], stem: Path, sweep_seed: int = 0) -> bool:
    """``stem``.md and .csv: each network's report PSNR at every seed it was trained with (at the
    learning rate it kept with ``sweep_seed``), mean and spread, for the networks trained with at
    least two seeds. ``runs``: ``budget.seed_runs``. Returns whether there was such a network."""
    by_network: dict[str, dict[int, dict]] = {}
    for run in runs:
        by_network.setdefault(run["network"], {})[run["seed"]] = run
    by_network = {n: s for n, s in by_network.items() if len(s) >= 2}
    if not by_network:
        return False
    seeds = sorted({seed for s in by_network.values() for seed in s})
    psnr = {n: {seed: r["report"]["metrics"]["psnr"] for seed, r in s.items()} for n, s in by_network.items()}
    mean = {n: sum(v.values()) / len(v) for n, v in psnr.items()}
    lines = [
        f"# Equal training budget across seeds: {TASKS[task]['title']} ({label} runs)",
        "",
        f"Report-set PSNR of each network at the learning rate it kept with seed {sweep_seed} (the best final "
        "pick-set PSNR of the sweep), for every seed it was trained with at that rate; spread = highest minus "
        "lowest.",
        "",
        "| network | lr | " + " | ".join(f"seed {seed}" for seed in seeds) + " | mean | spread |",
        "|---|---:|" + "---:|" * (len(seeds) + 2),
    ]
    csv_rows = []
    for n in sorted(psnr, key=lambda n: -mean[n]):
        lr = next(iter(by_network[n].values()))["lr"]  # one rate per network: the sweep seed's
        cells = [f"{psnr[n][seed]:.3f}" if seed in psnr[n] else "-" for seed in seeds]
        spread = max(psnr[n].values()) - min(psnr[n].values())
        lines.append(f"| {n} | {lr:g} | {' | '.join(cells)} | {mean[n]:.3f} | {spread:.3f} |")
        csv_rows += [dict(task=task, budget=label, network=n, seed=seed, lr=by_network[n][seed]["lr"],
                          report_psnr=value, mean_report_psnr=mean[n]) for seed, value in psnr[n].items()]
    stem.with_name(stem.name + ".md").write_text("\n".join(lines) + "\n")
    with open(stem.with_name(stem.name + ".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(csv_rows[0]))
        writer.writeheader()
        writer.writerows(csv_rows)
    return True


def _fmt_lr(lr) -> str:
    return "-" if lr is None else f"{lr:g}"


def plot(task: str, rows: list[dict], speeds: dict, path: Path, args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    baseline = None
    for r in rows:
        per_x = 1.0 if args.iterations else speeds[r["network"]]["s_per_iter"]
        curve = [(c["iter"] * per_x, c["psnr"]) for c in r["curve"] if c["psnr"]]
        if curve:
            xs, ys = zip(*curve)
            ax.plot(xs, ys, marker="o", label=f"{r['network']} (lr {r['lr']:g})")
        baseline = baseline or r.get("pick_baseline", {}).get("psnr")
    if baseline:
        ax.axhline(baseline, color="gray", linestyle="--", label="input")
    ax.set_xlabel(
        "training iterations" if args.iterations else "training seconds (iterations x measured s / iteration)"
    )
    ax.set_ylabel("pick-set PSNR (dB), EMA weights")
    budget = f"{args.iterations} iterations" if args.iterations else f"{args.minutes:g}-minute budget"
    ax.set_title(f"{TASKS[task]['title']}, {budget}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _where_measured(speeds) -> str:
    """'STAMP and STAMP on MACHINE; STAMP on OTHER MACHINE': when and on which machine each measurement of a
    table's networks was taken (sittings on different machines each name theirs)."""
    by_machine: dict[str, set[str]] = {}
    for speed in speeds:
        by_machine.setdefault(speed.get("machine", "a machine not recorded"), set()).add(speed.get("measured") or "-")
    parts = sorted((sorted(stamps), machine) for machine, stamps in by_machine.items())
    return "; ".join(f"{' and '.join(stamps)} on {machine}" for stamps, machine in parts)
