"""The GPU check: ``python -m serpent_arch.benchmark gpu --out DIR`` (about 5-8 minutes on one H100/H200).

Five parts, written to ``DIR/gpu_check.md`` (with the device, versions and the command) and CSVs:

1. Agreement (``gpu_agreement.csv``): every selective-scan backend available on the device against
   ``reference``, forward and all 8 gradients, on a Serpent-shaped scan, with float32 inputs and
   with the bfloat16 inputs autocast produces (the reference then runs on the same bf16 values
   in float32). Error = max |backend - reference| / max |reference| per tensor.
2. Scan speed (:mod:`serpent_arch.benchmark.scan_cuda`): forward and forward + backward time and
   peak memory of mamba_ssm, triton and torch at batch 8, dim 768, L 4096, N 16, 4 groups, with
   the targets of the Triton backend (within 2x of mamba-ssm, >= 10x faster than torch) checked; and
   the fused four-direction Triton scan against the unfused Triton path at Serpent base's scan shapes
   on a 1024x1024 image (:mod:`serpent_arch.benchmark.cross_scan_cuda`: times, peak memory, and the
   two agreeing on the output and all 7 gradients).
3. Training throughput (``gpu_train.csv``): ``SerpentModel`` steps (forward, L1 loss, backward,
   AdamW) of Serpent ``base`` on 256x256 inputs (restoration, output 256x256), batch 8, for every
   backend, with ``train.amp`` false and bf16: iterations per second (CUDA events around the timed
   steps, after warm-up steps) and peak ``torch.cuda.max_memory_allocated``.
4. Efficiency (``network_cuda*.md/csv``, from :mod:`serpent_arch.benchmark.network`): Serpent
   variants and SwinIR at 256, 512 and 1024, latency by CUDA events and peak memory, fp32 and bf16,
   with the SwinIR / Serpent ratios.
5. One short ``basicsr train`` of the quick start (options/serpent_sr.yml, 1000 iterations) through
   the real command, on the GPU: its scan-backend log line, speed and final validation PSNR.

``--device cpu --small`` runs the same code on tiny sizes (the test suite does, without part 5).
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import serpent_arch  # noqa: F401  (BasicSR fixes before basicsr is imported)
from serpent_arch.measure import machine
from serpent_arch.ops import backend_report, selective_scan, selective_scan_ref

REPO = Path(__file__).resolve().parents[2]
GRAD_NAMES = ("A", "B", "C", "D", "delta", "delta_bias", "u", "z")
# max |error| / max |reference|: float32 rounding for fp32 inputs; for bf16 inputs the output and
# the input gradients are rounded to bf16 (8 bits of mantissa, 2**-8 = 4e-3 relative)
TOLERANCE = {"fp32": 1e-3, "bf16": 3e-2}


@dataclass
class Sizes:
    scan: tuple[int, int, int, int, int]  # batch, dim, L, N, groups
    variant: str
    train_size: int
    train_batch: int
    train_steps: int
    networks: tuple[str, ...]
    net_sizes: tuple[int, ...]
    pair: tuple[str, str]
    repeats: int


FULL = Sizes(
    scan=(2, 4 * 128, 64 * 64, 16, 4),  # a base-variant SS2D at 64x64 tokens: K=4 directions x D_in=128
    variant="base",
    train_size=256,
    train_batch=8,
    train_steps=10,
    networks=("serpent-tiny", "serpent-small", "serpent-base", "serpent-large", "swinir"),
    net_sizes=(256, 512, 1024),
    pair=("serpent-base", "swinir"),
    repeats=3,
)
SMALL = Sizes(
    scan=(1, 8, 48, 4, 2),
    variant="tiny",
    train_size=32,
    train_batch=2,
    train_steps=2,
    networks=("serpent-tiny", "swinir"),
    net_sizes=(32, 48),
    pair=("serpent-tiny", "swinir"),
    repeats=1,
)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def available_scan_backends(device: torch.device) -> list[str]:
    """Every backend that runs on ``device`` except ``reference`` (the yardstick) and ``onnx`` (the scan written for
    graph export, inference only: tests/test_export.py checks it)."""
    return [
        name
        for name in backend_report.concrete_backends()
        if name not in ("reference", "onnx") and backend_report.backend_status(name, device)[0]
    ]


# ------------------------------------------------------------------------------------ 1. agreement


def scan_inputs(shape, device: torch.device, precision: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random Serpent-like scan inputs; with ``bf16`` the activations (u, delta, B, C, z) are bf16,
    the parameters (A, D, delta_bias) float32, as under autocast."""
    batch, dim, L, N, groups = shape
    gen = torch.Generator().manual_seed(seed)
    args = {
        "u": torch.randn(batch, dim, L, generator=gen),
        "delta": torch.randn(batch, dim, L, generator=gen) * 0.5 - 1,
        "A": -(torch.rand(dim, N, generator=gen) * 2 + 0.2),
        "B": torch.randn(batch, groups, N, L, generator=gen),
        "C": torch.randn(batch, groups, N, L, generator=gen),
        "D": torch.randn(dim, generator=gen),
        "z": torch.randn(batch, dim, L, generator=gen),
        "delta_bias": torch.randn(dim, generator=gen) * 0.2,
    }
    low = {"u", "delta", "B", "C", "z"} if precision == "bf16" else set()
    return {k: v.to(device, torch.bfloat16 if k in low else torch.float32) for k, v in args.items()}


def _run_scan(args: dict, backend: str | None, grad_out: torch.Tensor) -> list[torch.Tensor]:
    """Output and gradients (GRAD_NAMES order), all float32."""
    leaves = {k: v.detach().clone().requires_grad_() for k, v in args.items()}
    if backend is None:  # the reference, in float32 on the same (possibly bf16-rounded) values
        out = selective_scan_ref(**{k: v.float() for k, v in leaves.items()}, delta_softplus=True)
    else:
        out = selective_scan(**leaves, delta_softplus=True, backend=backend)
    out.float().backward(grad_out)
    return [out.detach().float()] + [leaves[k].grad.float() for k in GRAD_NAMES]


def scan_agreement(backend: str, device: torch.device, precision: str, shape) -> dict:
    """Relative errors of ``backend`` against the reference (forward and gradients) and its time."""
    args = scan_inputs(shape, device, precision)
    batch, dim, L, _, _ = shape
    grad_out = torch.randn(batch, dim, L, generator=torch.Generator().manual_seed(1)).to(device)
    expected = _run_scan(args, None, grad_out)
    _run_scan(args, backend, grad_out)  # warm-up (compilation, autotuning)
    _sync(device)
    start = time.perf_counter()
    got = _run_scan(args, backend, grad_out)
    _sync(device)
    seconds = time.perf_counter() - start
    errors = {
        name: float((g - e).abs().max() / e.abs().max().clamp_min(1e-12))
        for name, g, e in zip(("out", *GRAD_NAMES), got, expected, strict=True)
    }
    worst = max(errors.values())
    return {
        "backend": backend,
        "precision": precision,
        "shape": "x".join(map(str, shape)),
        "max_rel_error": worst,
        "worst_tensor": max(errors, key=errors.get),
        "tolerance": TOLERANCE[precision],
        "agrees": worst <= TOLERANCE[precision],
        "fwd_bwd_ms": seconds * 1e3,
        **{f"err_{k}": v for k, v in errors.items()},
    }


# ------------------------------------------------------------------------- 2. training throughput


def _model_opt(variant: str, backend: str, amp_value, device: torch.device) -> dict:
    return {
        "name": "gpu_check",
        "model_type": "SerpentModel",
        "num_gpu": 1 if device.type == "cuda" else 0,
        "dist": False,
        "is_train": True,
        "scale": 1,
        "network_g": {"type": "Serpent", "preset": variant, "upscale": 1, "scan_backend": backend},
        "path": {},
        "train": {
            "ema_decay": 0,
            "amp": amp_value,
            "optim_g": {"type": "AdamW", "lr": 1e-4},
            "scheduler": {"type": "MultiStepLR", "milestones": [10**6], "gamma": 0.5},
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
        },
    }


@dataclass
class TrainRow:
    backend: str
    precision: str
    variant: str
    size: int
    batch: int
    it_per_s: float = math.nan
    images_per_s: float = math.nan
    peak_mib: float = math.nan
    steps: int = 0
    final_loss: float = math.nan
    note: str = ""
    why: str = ""  # the "selective scan: ..." explanation of this backend on the device


def train_throughput(backend: str, precision: str, sizes: Sizes, device: torch.device, budget_s: float) -> TrainRow:
    """Timed SerpentModel training steps (after 2 warm-up steps)."""
    from serpent_arch.models import SerpentModel

    row = TrainRow(backend, precision, sizes.variant, sizes.train_size, sizes.train_batch)
    row.why = backend_report.explain(backend, device)[1]
    torch.manual_seed(0)
    model = None
    try:
        amp_value = "bf16" if precision == "bf16" else False
        model = SerpentModel(_model_opt(sizes.variant, backend, amp_value, device))
        gen = torch.Generator().manual_seed(0)
        shape = (sizes.train_batch, 3, sizes.train_size, sizes.train_size)
        data = {"lq": torch.rand(*shape, generator=gen), "gt": torch.rand(*shape, generator=gen)}
        model.feed_data(data)
        if device.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
        start = time.perf_counter()
        for i in range(2):
            model.optimize_parameters(i)
        _sync(device)
        warm = (time.perf_counter() - start) / 2
        steps = max(1, min(sizes.train_steps, int(budget_s // max(warm, 1e-6))))
        if steps < sizes.train_steps:
            row.note = f"{steps} timed steps instead of {sizes.train_steps} (a warm-up step took {warm:.1f} s)"
        start = time.perf_counter()
        for i in range(steps):
            model.optimize_parameters(2 + i)
        _sync(device)
        seconds = time.perf_counter() - start
        row.steps, row.it_per_s = steps, steps / seconds
        row.images_per_s = row.it_per_s * sizes.train_batch
        row.final_loss = float(model.log_dict["l_pix"])
        if device.type == "cuda":
            row.peak_mib = torch.cuda.max_memory_allocated(device) / 2**20
    except torch.cuda.OutOfMemoryError as exc:
        row.note = f"out of memory: {str(exc).splitlines()[0]}"
    except Exception as exc:  # one backend failing must not hide the others' numbers
        row.note = f"FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    finally:
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return row


# ------------------------------------------------------------------------------- 4. quick start


def quickstart_run(out_dir: Path, iters: int, timeout_s: float, device: torch.device) -> list[str]:
    """``basicsr train`` of options/serpent_sr.yml, shortened to ``iters``; markdown lines about it."""
    work = out_dir / "quickstart_run"
    work.mkdir(parents=True, exist_ok=True)
    name = "gpu_check_quickstart"
    val_freq = max(1, iters // 2)
    force = [
        f"name={name}",
        f"train:total_iter={iters}",
        f"train:scheduler:periods=[{iters}]",
        f"val:val_freq={val_freq}",
        f"logger:save_checkpoint_freq={iters}",
        f"logger:print_freq={max(1, iters // 10)}",
    ]
    cmd = [sys.executable, "-m", "serpent_arch.cli", "train", "-opt", str(REPO / "options" / "serpent_sr.yml")]
    cmd += ["--force_yml", *force]
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if device.type == "cuda":  # one GPU: with num_gpu: auto BasicSR would wrap the net in DataParallel
        env["CUDA_VISIBLE_DEVICES"] = str(device.index or 0)
    else:  # a dry run on the CPU stays there
        env["CUDA_VISIBLE_DEVICES"] = ""
    shown = f"basicsr train -opt options/serpent_sr.yml --force_yml {' '.join(force)}"
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return [f"- command (in {work}): `{shown}`", f"- did not finish within {timeout_s:.0f} s"]
    seconds = time.perf_counter() - start
    log = proc.stdout + proc.stderr
    (out_dir / "quickstart_run.log").write_text(log, encoding="utf-8")
    scan = next((line.split("INFO: ", 1)[-1] for line in log.splitlines() if "selective scan: " in line), "?")
    psnr = re.findall(r"# psnr: ([0-9.]+)\tBest", log)
    baseline = re.findall(r"# psnr: ([0-9.]+) \(network", log)
    lines = [
        f"- command (in {work}): `{shown}`",
        f"- exit status {proc.returncode}, wall time {seconds:.0f} s for {iters} iterations (with start-up, sample "
        "set preparation and validations)",
        f"- log line: `{scan}`",
        f"- validation PSNR (Y, sample_val) every {val_freq} iterations and at the end: {', '.join(psnr) or '?'} dB "
        f"(bicubic: {baseline[0] if baseline else '?'} dB)",
    ]
    if proc.returncode != 0:
        lines.append("- last lines of the log:\n\n```\n" + "\n".join(log.splitlines()[-15:]) + "\n```")
    return lines


# ------------------------------------------------------------------------------------- the report


def _mib(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:,.0f}"


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def environment(device: torch.device, argv: list[str]) -> list[str]:
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        where = f"{device} {p.name} (sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB)"
    else:
        where = f"cpu: {machine.describe()}"
    return [
        f"- command: `python -m serpent_arch.benchmark gpu {' '.join(argv)}`",
        f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}",
        f"- device: {where}; torch {torch.__version__} (CUDA {torch.version.cuda or '-'})",
        f"- selective scan: {backend_report.explain('auto', device)[0]} is what auto picks here; "
        f"backends available: {', '.join(available_scan_backends(device))}",
    ]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m serpent_arch.benchmark gpu", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks/gpu"), help="output folder")
    parser.add_argument("--device", default="cuda", help="cuda[:i] (default) or cpu (for a dry run)")
    parser.add_argument("--small", action="store_true", help="tiny sizes everywhere (a dry run of the script)")
    parser.add_argument(
        "--skip", nargs="+", default=[], choices=["agreement", "scan", "train", "efficiency", "quickstart"]
    )
    parser.add_argument("--quickstart-iters", type=int, default=1000, help="iterations of the basicsr train run")
    parser.add_argument("--train-budget", type=float, default=20.0, help="seconds of timed steps per training row")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu check: CUDA is not available to torch; use --device cpu --small for a dry run", file=sys.stderr)
        return 2
    if device.type == "cuda":
        torch.cuda.set_device(device)
    sizes = SMALL if args.small else FULL
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    md = ["# GPU check", "", *environment(device, argv), ""]
    ok = True

    if "agreement" not in args.skip:
        rows = []
        for backend in available_scan_backends(device):
            for precision in ("fp32", "bf16"):
                rows.append(scan_agreement(backend, device, precision, sizes.scan))
                print(f"agreement {backend} {precision}: {rows[-1]['max_rel_error']:.1e}", flush=True)
        ok = ok and all(r["agrees"] for r in rows)
        _write_csv(out / "gpu_agreement.csv", rows)
        md += [
            f"## 1. Scan backends against the reference (shape batch x dim x L x N x groups = {rows[0]['shape']})",
            "",
            "| backend | inputs | max rel. error | worst tensor | tolerance | agrees | forward+backward (ms) |",
            "|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {r['backend']} | {r['precision']} | {r['max_rel_error']:.1e} | {r['worst_tensor']} | "
            f"{r['tolerance']:g} | {'yes' if r['agrees'] else 'NO'} | {r['fwd_bwd_ms']:.1f} |"
            for r in rows
        ]
        md.append("")

    if "scan" not in args.skip:
        from serpent_arch.benchmark import scan_cuda

        repeats = 3 if args.small else 10
        size = scan_cuda.QUICK if args.small else scan_cuda.TARGET
        report = scan_cuda.bench_cuda_scan(device, size=size, repeats=repeats, agreement_size=None)
        md += ["## 2. Scan speed", "", scan_cuda.render(report, repeats), ""]
        from serpent_arch.benchmark import cross_scan_cuda

        shapes = cross_scan_cuda.SMALL if args.small else cross_scan_cuda.BASE_1024
        cross = cross_scan_cuda.bench_cross_scan(device, shapes, repeats=repeats)
        ok = ok and cross["agrees"]
        md += [cross_scan_cuda.render(cross, repeats), ""]

    if "train" not in args.skip:
        from basicsr.utils import get_root_logger

        get_root_logger().setLevel(logging.WARNING)  # SerpentModel prints the network for every row
        rows = []
        for backend in available_scan_backends(device):
            for precision in ("fp32", "bf16"):
                rows.append(train_throughput(backend, precision, sizes, device, args.train_budget))
                print(f"train {backend} {precision}: {rows[-1].it_per_s:.2f} it/s {rows[-1].note}", flush=True)
        _write_csv(out / "gpu_train.csv", [asdict(r) for r in rows])
        md += [
            f"## 3. Training steps of Serpent {sizes.variant}, {sizes.train_size}x{sizes.train_size}, "
            f"batch {sizes.train_batch}",
            "",
            "| backend | train.amp | it/s | images/s | peak memory (MiB) | timed steps | note |",
            "|---|---|---|---|---|---|---|",
        ]
        md += [
            f"| {r.backend} | {r.precision} | {r.it_per_s:.2f} | {r.images_per_s:.1f} | {_mib(r.peak_mib)} | "
            f"{r.steps} | {r.note} |"
            for r in rows
        ]
        md += [""] + [f"- {r.backend}: {r.why}" for r in rows if r.precision == "fp32"]
        md.append("")

    if "efficiency" not in args.skip:
        from serpent_arch.benchmark import network

        md += ["## 4. Efficiency (restoration, batch 1, inference)", ""]
        for amp_flag in ([], ["--amp", "bf16"]):
            net_argv = ["--device", str(device), "--networks", *sizes.networks]
            net_argv += ["--sizes", *map(str, sizes.net_sizes), "--pair", *sizes.pair, "--repeats", str(sizes.repeats)]
            net_argv += ["--max-gflops", "1e9", "--row-budget", "20", "--out", str(out), *amp_flag]
            paths = network.main(net_argv)
            md += [
                f"### {'bf16 autocast' if amp_flag else 'fp32'} (details: [{paths['md'].name}]({paths['md'].name}))",
                "",
            ]
            for line in paths["md"].read_text(encoding="utf-8").splitlines():
                if line.startswith("|"):
                    md.append(line)
                elif line.startswith("### "):  # the ratio tables
                    md += ["", "#" + line, ""]
            md.append("")

    if "quickstart" not in args.skip:
        md += ["## 5. The quick start through `basicsr train`", ""]
        md += quickstart_run(out, args.quickstart_iters, timeout_s=300, device=device) + [""]

    elapsed = time.perf_counter() - started
    md.insert(4, f"- wall time of the whole check: {elapsed:.0f} s")
    (out / "gpu_check.md").write_text("\n".join(md), encoding="utf-8")
    print(f"gpu check: {elapsed:.0f} s; wrote {out / 'gpu_check.md'}" + ("" if ok else " (SOME BACKEND DISAGREES)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
