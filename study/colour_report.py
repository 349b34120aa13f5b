"""``python -m study colour_report``: the study's runs re-reported on the colour report set
(``study.colour_set``; issue 34): the 10-minute x4 SR runs (``--task sr``) and the 5-minute deblurring runs
(``--task deblur``).

    python -m study colour_report [--task sr|deblur] [--runs NAME,...] [--data datasets/colour_report]
        [--threads 2] [--out study/records/colour] [--records-only]

It evaluates each trained run (its EMA weights, ``experiments/<run>/models/net_g_latest.pth``)
on the colour set and, as a check of the retraining, on the study's four-photo report set, with the study's
conventions (``DegradedImageDataset``; SR: x4 MATLAB bicubic, Y PSNR / SSIM with a 4-pixel border, the input
baseline bicubically resized as ``SerpentModel`` does; deblurring: the 61x61 Gaussian blur and noise of the
study, RGB PSNR / SSIM, the blurred input as baseline, whole 1024x1024 photos), and keeps per photo the results
in ``OUT/runs/<run>.json`` (deblurring: ``OUT/deblur_runs/``); then it writes ``OUT/colour_sr_10min.{md,csv}``
(``OUT/colour_deblur_5min.{md,csv}``) from those records alone (``--records-only``: nothing is evaluated, as
``python -m study tables`` runs it).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
from pathlib import Path

from study.colour_set import CROP, DATA_DIR

OUT_DIR = Path("study/records/colour")
REPORT_SET = Path("datasets/sample/report/HR")

# The runs re-reported: the 10-minute x4 SR runs of study/records/budget/runs/ (their counts and rates),
# retrained by `python -m study budget` because their weights are not committed.
F3_TC = "serpent-cffn-nc-amp-lmn15-e3-f3-tc-lr"
RUNS = [
    *[f"budget_sr_{F3_TC}_lr0.001_10min_s{seed}" for seed in (0, 1, 2)],
    *[f"budget_sr_msrresnet_lr0.0005_10min_s{seed}" for seed in (0, 1, 2)],
    "budget_sr_edsr-baseline_lr0.001_10min_s0",
    "budget_sr_swinir-light_lr0.001_10min_s0",
]
BUDGET_RUNS = Path("study/records/budget/runs")

# The deblurring runs re-reported: Serpent-tiny (seed 0 retrained at its record's count; seeds 1 and 2 trained
# for the colour set) and the plain U-Net, each at the learning rate its seed-0 sweep kept at 5 minutes.
DEBLUR_RUNS = [
    *[f"budget_deblur_serpent-tiny_lr0.001_5min_s{seed}" for seed in (0, 1, 2)],
    *[f"budget_deblur_plain-unet_lr0.001_5min_s{seed}" for seed in (0, 1, 2)],
]

# What each task's tables compare: Serpent's run (ours) against the peer, the input's baseline, the budget.
VIEWS = {
    "sr": dict(ours=F3_TC, ours_short="serpent f3-tc", ours_phrase="Serpent f3-tc", peer="msrresnet",
               peer_title="MSRResNet",
               baseline="bicubic", label="10min", title="x4 SR, 10 minutes", runs_dir="runs", default_runs=RUNS,
               protocol="x4 MATLAB bicubic; Y PSNR / SSIM, 4-pixel border; the EMA weights of the study's "
                        "10-minute runs (their recorded iterations and learning rates), retrained"),
    "deblur": dict(ours="serpent-tiny", ours_short="serpent-tiny", ours_phrase="Serpent-tiny", peer="plain-unet",
                   peer_title="the plain U-Net",
                   baseline="input", label="5min", title="Gaussian deblurring, 5 minutes", runs_dir="deblur_runs",
                   default_runs=DEBLUR_RUNS,
                   protocol="the study's 61x61 Gaussian blur (sigma 3) and noise (1/255); RGB PSNR / SSIM, no border; "
                            "the EMA weights of the study's 5-minute runs (their iterations and learning rates)"),
}


def _dataset(root: Path, task: str = "sr", crop: int | None = None):
    from serpent_arch.data.degraded_image_dataset import DegradedImageDataset
    from study.contenders import TASKS

    return DegradedImageDataset({"name": root.name, "type": "DegradedImageDataset", "dataroot_gt": str(root),
                                 "io_backend": {"type": "disk"}, "degradations": TASKS[task]["degradations"],
                                 "seed": 0, "phase": "test", "scale": TASKS[task]["scale"],
                                 **({"center_crop": crop} if crop else {})})


def evaluate(network_g: dict, weights: Path, root: Path, task: str = "sr", crop: int | None = None) -> dict[str, dict]:
    """Per photo of ``root``: PSNR / SSIM (the task's metric) of the network (``params_ema``) and of its
    input's baseline (SR: the input bicubically resized, ``SerpentModel``'s baseline; deblurring: the blurred
    input), as ``basicsr test`` computes them."""
    import torch
    import torch.nn.functional as F
    from basicsr.archs import build_network
    from basicsr.metrics import calculate_metric
    from basicsr.utils import tensor2img

    import serpent_arch  # noqa: F401  (registers Serpent, BasicSR's compat fixes)
    import study.plain_unet  # noqa: F401  (registers the study's PlainUNet)
    from serpent_arch.models.serpent_model import _padded_to
    from study.contenders import TASKS

    metric = TASKS[task]["metric"]
    baseline = VIEWS[task]["baseline"]
    metrics = {"psnr": dict(type="calculate_psnr", **metric), "ssim": dict(type="calculate_ssim", **metric)}
    net = build_network(dict(network_g))
    net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True)["params_ema"])
    net.eval()
    forward = _padded_to(net, network_g.get("window_size"), TASKS[task]["scale"])
    results = {}
    dataset = _dataset(root, task, crop)
    for i in range(len(dataset)):
        item = dataset[i]
        lq, gt = item["lq"][None], item["gt"][None]
        with torch.no_grad():
            out = forward(lq)
        base = F.interpolate(lq, size=gt.shape[-2:], mode="bicubic", align_corners=False).clamp(0, 1)
        gt_img = tensor2img([gt])
        row = {}
        for name, opt in metrics.items():
            row[name] = float(calculate_metric(dict(img=tensor2img([out]), img2=gt_img), opt))
            row[f"{baseline}_{name}"] = float(calculate_metric(dict(img=tensor2img([base]), img2=gt_img), opt))
        results[Path(item["gt_path"]).name] = row
    return results


def _mean(rows: dict[str, dict], key: str) -> float:
    return statistics.fmean(r[key] for r in rows.values())


def evaluate_run(name: str, data: Path, out: Path, root: Path = Path("."), task: str = "sr") -> dict | None:
    """Evaluate run ``name`` unless its record exists; the record, or None when the weights are absent."""
    from study.contenders import NETWORKS, TASKS

    view = VIEWS[task]
    path = out / view["runs_dir"] / f"{name}.json"
    if path.is_file():
        return json.loads(path.read_text())
    weights = root / "experiments" / name / "models" / "net_g_latest.pth"
    if not weights.is_file():
        print(f"[colour_report] {name}: no weights at {weights}; not evaluated")
        return None
    committed = BUDGET_RUNS / f"{name}.json"
    budget = json.loads(committed.read_text()) if committed.is_file() else {}
    curve = [json.loads(line) for line in (root / "experiments" / name / "val_metrics.jsonl").read_text().split("\n")
             if line.strip()]
    network = budget.get("network") or next(n for n in NETWORKS if name.startswith(f"budget_{task}_{n}_lr"))
    print(f"[colour_report] evaluate {name}", flush=True)
    colour = evaluate(NETWORKS[network][task], weights, data / "HR", task)
    report = evaluate(NETWORKS[network][task], weights, REPORT_SET, task, TASKS[task].get("eval_crop"))
    record = {
        "name": name, "network": network, "seed": int(name.rsplit("_s", 1)[1]),
        "lr": budget.get("lr"), "iters": budget.get("iters"),
        "retrained_pick_curve": [[r["iter"], r["metrics"]["psnr"]] for r in curve],
        "retrained_pick_psnr": curve[-1]["metrics"]["psnr"],
        "recorded_pick_psnr": budget["pick_curve"][-1]["psnr"] if budget else None,
        "recorded_report_psnr": budget["report"]["metrics"]["psnr"] if budget else None,
        "report_psnr": _mean(report, "psnr"),
        "colour": colour, "report": report,
    }
    if not budget:  # a run the budget records do not hold (EDSR at 10 minutes): as the budget command set it
        from study.budget import iterations_for

        budget_part = name.split("_lr", 1)[1].split("_")[1]  # "10min", or "4341it" for a run at equal iterations
        if budget_part.endswith("it"):
            iters = int(budget_part.removesuffix("it"))
        else:
            speeds = json.loads((BUDGET_RUNS.parent / f"throughput_{task}_2threads.json").read_text())["networks"]
            iters = iterations_for(float(view["label"].removesuffix("min")), speeds[network]["s_per_iter"])
        record.update(lr=float(name.split("_lr", 1)[1].split("_")[0]), iters=iters)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return record


# ---------------------------------------------------------------- tables


def _num(value) -> str:
    return "not recorded" if value is None else f"{value:.3f}"


def _short(network: str, view: dict) -> str:
    return view["ours_short"] if network == view["ours"] else network


def write_tables(out: Path, machine: str | None = None, task: str = "sr") -> Path:
    """``out/colour_<task>_<budget>.{md,csv}`` from the task's records (``out/runs/*.json`` for SR) alone."""
    view = VIEWS[task]
    ours, peer, base_key = view["ours"], view["peer"], view["baseline"]
    records = [json.loads(p.read_text()) for p in sorted((out / view["runs_dir"]).glob("*.json"))]
    records.sort(key=lambda r: (r["network"] != ours, r["network"], r["seed"]))
    photos = sorted(records[0]["colour"])
    networks = list(dict.fromkeys(r["network"] for r in records))
    seeds = {n: [r for r in records if r["network"] == n] for n in networks}
    baseline = {p: records[0]["colour"][p][f"{base_key}_psnr"] for p in photos}
    short_ours, short_peer = view["ours_short"].removeprefix("serpent "), view["peer_title"].removeprefix("the ")

    def mean_over_seeds(network, photo, key="psnr"):
        return statistics.fmean(r["colour"][photo][key] for r in seeds[network])

    lines = [f"# {view['title']}, on the colour report set", ""]
    lines += [f"{len(photos)} natural colour photographs (`colour_set.json`: the rule, the packages, every file's "
              f"SHA-256), central {CROP}x{CROP}, {view['protocol']}. "
              f"Built by `python -m study colour_report{'' if task == 'sr' else ' --task ' + task}` from "
              f"`{view['runs_dir']}/*.json`.", ""]
    if machine:
        lines += [f"Evaluated on {machine}.", ""]
    lines += ["**Per seed** (mean over the photos; gain over the "
              f"{'bicubic ' if base_key == 'bicubic' else 'blurred '}input; the four-photo report set as "
              "retrained beside its committed record):", ""]
    lines += [f"| network | seed | iterations | lr | colour PSNR | colour SSIM | gain over {base_key} | "
              f"photos ahead of {short_peer} (same seed) | report PSNR retrained (recorded) | "
              "pick PSNR retrained (recorded) |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    rows = []
    others = {r["seed"]: r for r in seeds.get(peer, [])}
    for r in records:
        c = r["colour"]
        psnr, ssim, base = _mean(c, "psnr"), _mean(c, "ssim"), _mean(c, f"{base_key}_psnr")
        other = others.get(r["seed"]) if r["network"] != peer else None
        ahead = f"{sum(c[p]['psnr'] > other['colour'][p]['psnr'] for p in photos)} of {len(photos)}" if other else "-"
        lines.append(
            f"| {_short(r['network'], view)} | {r['seed']} | {r['iters']} | {r['lr']:g} | {psnr:.3f} | {ssim:.4f} | "
            f"{psnr - base:+.3f} | {ahead} | {r['report_psnr']:.3f} ({_num(r['recorded_report_psnr'])}) | "
            f"{r['retrained_pick_psnr']:.3f} ({_num(r['recorded_pick_psnr'])}) |"
        )
        rows.append(["seed", r["network"], r["seed"], r["iters"], r["lr"], "mean", f"{psnr:.4f}", f"{ssim:.5f}",
                     f"{base:.4f}"])
    lines += ["", "**Mean over seeds**:", ""]
    lines += [f"| network | seeds | colour PSNR | gain over {base_key} | spread over seeds |",
              "|---|---:|---:|---:|---:|"]
    base_mean = statistics.fmean(baseline.values())
    lines.append(f"| input ({'bicubic' if base_key == 'bicubic' else 'blurred'}) | - | {base_mean:.3f} | +0.000 | - |")
    for n in networks:
        means = [_mean(r["colour"], "psnr") for r in seeds[n]]
        m = statistics.fmean(means)
        lines.append(f"| {_short(n, view)} | {', '.join(str(r['seed']) for r in seeds[n])} | {m:.3f} | "
                     f"{m - base_mean:+.3f} | {max(means) - min(means):.3f} |")
    lines += ["", f"**Per photo** (PSNR averaged over each network's seeds; gain over {base_key} in brackets; the "
              f"difference {view['ours_phrase']} minus {short_peer}, with the seeds where Serpent leads):", ""]
    head = f"| photo | {base_key} | " + " | ".join(_short(n, view) for n in networks) + " |"
    both = ours in seeds and peer in seeds
    lines += [head + (f" {short_ours} - {short_peer} | {short_ours} ahead |" if both else ""),
              "|---|---:|" + "---:|" * len(networks) + ("---:|---:|" if both else "")]
    for p in photos:
        cells = [f"{mean_over_seeds(n, p):.2f} ({mean_over_seeds(n, p) - baseline[p]:+.2f})" for n in networks]
        line = f"| {Path(p).stem} | {baseline[p]:.2f} | " + " | ".join(cells) + " |"
        if both:
            paired = [(r, others[r["seed"]]) for r in seeds[ours] if r["seed"] in others]
            diff = statistics.fmean(a["colour"][p]["psnr"] - b["colour"][p]["psnr"] for a, b in paired)
            wins = sum(a["colour"][p]["psnr"] > b["colour"][p]["psnr"] for a, b in paired)
            line += f" {diff:+.3f} | {wins} of {len(paired)} |"
        lines.append(line)
        for n in networks:
            for r in seeds[n]:
                c = r["colour"][p]
                rows.append(["photo", n, r["seed"], r["iters"], r["lr"], Path(p).stem, f"{c['psnr']:.4f}",
                             f"{c['ssim']:.5f}", f"{c[f'{base_key}_psnr']:.4f}"])
    stem = out / f"colour_{task}_{view['label']}"
    Path(f"{stem}.md").write_text("\n".join(lines) + "\n")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["kind", "network", "seed", "iters", "lr", "photo", "psnr", "ssim", f"{base_key}_psnr"])
    writer.writerows(rows)
    Path(f"{stem}.csv").write_text(buffer.getvalue())
    return stem


def _machine_path(out: Path, task: str) -> Path:
    return out / ("machine.txt" if task == "sr" else f"machine_{task}.txt")


def _machine_line(out: Path, task: str = "sr") -> str | None:
    path = _machine_path(out, task)
    return path.read_text().strip() if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study colour_report",
                                     description="the study's runs on the colour report set")
    parser.add_argument("--task", default="sr", choices=list(VIEWS), help="the runs' task (default sr)")
    parser.add_argument("--runs", default=None, help="comma-separated run names (experiments/<run>; default: the "
                        "task's runs, RUNS or DEBLUR_RUNS)")
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="the colour set (python -m study colour_set)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="records and tables")
    parser.add_argument("--records-only", action="store_true", help="tabulate the records only, evaluate nothing")
    args = parser.parse_args(argv)
    if not args.records_only:
        import torch

        from serpent_arch.measure import machine

        if args.threads:
            torch.set_num_threads(args.threads)
        runs = args.runs.split(",") if args.runs else VIEWS[args.task]["default_runs"]
        for name in [n.strip() for n in runs if n.strip()]:
            evaluate_run(name, args.data, args.out, task=args.task)
        _machine_path(args.out, args.task).write_text(machine.describe() + "\n")  # it names the torch threads
    if not (args.out / VIEWS[args.task]["runs_dir"]).is_dir():
        print(f"[colour_report] no {args.task} records under {args.out}: no table")
        return 0
    stem = write_tables(args.out, _machine_line(args.out, args.task), args.task)
    print(f"[colour_report] {stem}.md, .csv")
    return 0
