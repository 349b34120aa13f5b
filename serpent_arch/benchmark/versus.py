"""This checkout's training step (or forward) against an earlier revision's, in alternating fresh processes (CPU).

    python -m serpent_arch.benchmark versus --rev e6d3721 [--kind train|infer] [--size 256] [--pairs 6]
        [--steps 5] [--builds native haswell] [--threads 2] [--name versus_e6d3721]

How much faster a user's run got: each side runs Serpent ``base`` (``upscale: 1``, the network of the
FFHQ deblurring options) the way its own ``basicsr train`` / ``infer`` would, in a fresh process started
with that side's package on ``PYTHONPATH``. A training step is L1 loss, backward and AdamW
(``lr 2e-4, weight decay 1e-4, betas (0.9, 0.99)``) built by the side's own optimizer builder where it
has one (``serpent_arch.optimizers``) and with its host-memory setting where it has one
(``serpent_arch.host_memory``); the time is the median of ``--steps`` steps after two warm-up steps, and the
fastest of them (the step least disturbed by the machine's other work: on a shared machine the steadier
comparison).
Inference is the first whole-image forward of the process. The two sides alternate for ``--pairs`` pairs
(the first of a pair changing every pair); the speed-up is the median of the pair ratios, the steadiest
number on a shared machine. ``--builds`` as in ``fused`` (``haswell``: an emulated AVX2-only machine).
The revision is unpacked with ``git archive`` into a temporary folder (its C kernel is built there on
first use). Writes ``DIR/<name>.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

# The measurement, run by each side's python with that side's package first on the path: only what every
# revision has (Serpent(preset=..., upscale=...)), plus the builders a revision may have.
_WORKER = r"""
import json, resource, statistics, sys, time
kind, size, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
notes = []
try:
    from serpent_arch.host_memory import keep_freed_memory
    notes.append(keep_freed_memory())
except ImportError:
    pass
import torch
import torch.nn.functional as F
import serpent_arch
from serpent_arch.archs import Serpent
try:
    from serpent_arch.optimizers import build_optimizer
except ImportError:
    def build_optimizer(name, params, lr, **kw):
        return getattr(torch.optim, name)(params, lr=lr, **kw)
torch.set_num_threads(threads)
torch.manual_seed(0)
net = Serpent(preset="base", upscale=1)
gen = torch.Generator().manual_seed(0)
x = torch.rand(1, 3, size, size, generator=gen)
if kind == "infer":
    net.eval()
    t0 = time.perf_counter()
    with torch.inference_mode():
        net(x)
    times = [time.perf_counter() - t0]
else:
    gt = torch.rand(1, 3, size, size, generator=gen)
    opt = build_optimizer("AdamW", net.parameters(), lr=2e-4, weight_decay=1e-4, betas=(0.9, 0.99))
    notes.append(f"optimizer fused: {bool(opt.defaults.get('fused'))}")
    times = []
    for _ in range(2 + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        F.l1_loss(net(x), gt).backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    times = times[2:]
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": statistics.median(times), "fastest": min(times), "peak_rss_mib": rss,
                  "package": serpent_arch.__file__, "notes": notes}))
"""


def _side(tree: str, args: argparse.Namespace, build: str, size: int | None = None) -> dict:
    from serpent_arch.measure.machine import AVX2_ENV

    env = {k: v for k, v in os.environ.items() if k not in AVX2_ENV and k != "PYTHONPATH"}
    env["PYTHONPATH"] = tree
    if build == "haswell":
        env.update(AVX2_ENV)
    cmd = [sys.executable, "-c", _WORKER, args.kind, str(size or args.size), str(args.steps), str(args.threads)]
    with tempfile.TemporaryDirectory() as cwd:  # not the checkout: its package must not shadow the side's
        proc = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"the {args.kind} worker on {tree} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if not result["package"].startswith(str(Path(tree).resolve())):
        raise RuntimeError(f"the worker for {tree} imported serpent_arch from {result['package']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serpent_arch.benchmark versus", description=__doc__.split("\n")[0])
    parser.add_argument("--rev", required=True, help="the git revision to compare with (e.g. a commit or tag)")
    parser.add_argument("--kind", choices=["train", "infer"], default="train")
    parser.add_argument("--size", type=int, default=256, help="training patch or inference image size")
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per process")
    parser.add_argument("--pairs", type=int, default=6)
    parser.add_argument("--builds", nargs="+", default=["native", "haswell"], choices=["native", "haswell"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="results/benchmarks", help="folder for the report")
    parser.add_argument("--name", default=None, help="report file name (without .md; default versus_REV)")
    args = parser.parse_args(argv)
    from serpent_arch.measure.machine import describe

    here = Path(__file__).resolve().parents[2]
    head = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode != 0:
        parser.error(f"{here} is not a git checkout: versus compares a checkout of the project with a revision")
    dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True).stdout.strip()  # fmt: skip
    this = f"{head.stdout.strip() or 'this checkout'}{' + uncommitted changes' if dirty else ''}"
    started = datetime.datetime.now().isoformat(timespec="seconds")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="serpent_versus_") as old:
        archive = subprocess.run(["git", "-C", str(here), "archive", args.rev], capture_output=True)
        if archive.returncode != 0:
            parser.error(f"--rev {args.rev}: git archive failed: {archive.stderr.decode().strip()}")
        subprocess.run(["tar", "-x", "-C", old], input=archive.stdout, check=True)
        for build in args.builds:
            for tree in (old, str(here)):  # builds each side's C kernel for this target before anything is timed
                _side(tree, args, build, size=64)
            pairs = []
            for i in range(args.pairs):
                order = ("old", "new") if i % 2 == 0 else ("new", "old")
                got = {side: _side(old if side == "old" else str(here), args, build) for side in order}
                pairs.append((got["old"], got["new"], os.getloadavg()[0]))
                print(f"{build} pair {i}: {args.rev} {got['old']['seconds']:.3f} s, {this} "
                      f"{got['new']['seconds']:.3f} s, load {pairs[-1][2]:.1f}", flush=True)  # fmt: skip
            rows[build] = pairs
    text = _report(args, this, rows, describe(), started)
    print(text)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name or 'versus_' + args.rev}.md").write_text(text)
    return 0


def _report(args, this: str, rows: dict, machine: str, started: str) -> str:
    what = f"training step {args.size}x{args.size}" if args.kind == "train" else f"inference {args.size}x{args.size}"
    lines = [f"# {what}: {this} against {args.rev}", "", "```",
             f"python -m serpent_arch.benchmark versus --rev {args.rev} --kind {args.kind} --size {args.size} "
             f"--steps {args.steps} --pairs {args.pairs} --builds {' '.join(args.builds)} --threads {args.threads}",
             "```", "", f"- {machine}; {started}",
             "- `haswell`: the kernel built `-march=haswell`, ATen, oneDNN and MKL limited to AVX2",
             "- Serpent `base`, `upscale: 1`; each number from a fresh process; the sides alternate "
             "(the first of a pair changing every pair)", "",
             "Per process: the median of its steps and the fastest step; speed-up: the median of the pairs' "
             "ratios.", "",
             f"| build | {args.rev} (s, median) | {this} (s, median) | speed-up | pair ratios | {args.rev}, fastest "
             f"(s) | {this}, fastest (s) | speed-up, fastest | pair ratios, fastest | peak RSS (MiB): {args.rev}, "
             f"{this} | load |", "|---|---:|---:|---:|---|---:|---:|---:|---|---|---:|"]  # fmt: skip
    for build, pairs in rows.items():
        cells = []
        for key in ("seconds", "fastest"):
            ratios = [o[key] / n[key] for o, n, _ in pairs]
            old_s, new_s = (statistics.median(p[i][key] for p in pairs) for i in (0, 1))
            cells.append(f"{old_s:.3f} | {new_s:.3f} | {statistics.median(ratios):.2f}x | "
                         f"{', '.join(f'{r:.2f}' for r in ratios)}")  # fmt: skip
        old_rss, new_rss = (statistics.median(p[i]["peak_rss_mib"] for p in pairs) for i in (0, 1))
        load = statistics.median(load for _, _, load in pairs)
        lines.append(f"| {build} | {cells[0]} | {cells[1]} | {old_rss:,.0f}, {new_rss:,.0f} | {load:.1f} |")
    notes = {note for pairs in rows.values() for _, n, _ in pairs for note in n["notes"]}
    if notes:
        lines += ["", f"{this}: " + "; ".join(sorted(notes))]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
