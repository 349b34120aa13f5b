"""ONNX Runtime against PyTorch on the CPU: an exported Serpent's latency, peak memory and file size.

    python -m serpent_arch.benchmark export [--presets sr-tiny small] [--sizes 256 512 1024] [--rounds 3]
                                            [--threads 2] [--out docs/benchmarks/export.md]

For each preset, a network with random weights is exported once (``basicsr export``'s code, fp32, dynamic
sizes); then, at each size (the side of the square *restored* image: an x4 SR network reads a quarter of
it), PyTorch's CPU path (``scan_backend: auto``, i.e. the C kernel where it compiles, under
``torch.inference_mode``) and ONNX Runtime's CPU provider run the same input in interleaved rounds with
the same number of threads; the table gives the median latency of each and the median of the per-round
ratios. Peak memory is measured in a fresh process per engine and size: the highest resident set size
during one forward (sampled every millisecond) above the size before it, after the model is loaded and
warmed up on a 16x16 input; it counts everything the process allocates (PyTorch's allocator, ONNX
Runtime's arena, oneDNN scratch).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import serpent_arch  # noqa: F401  (OpenMP settings before torch)

# isort: split
import numpy as np
import torch

PRESETS = ("sr-tiny", "small")
SCALES = {"sr-tiny": 4}  # SR presets run x4; the U-Net presets restore at the image size


def _network(preset: str) -> torch.nn.Module:
    from serpent_arch.archs.serpent_arch import Serpent

    torch.manual_seed(0)
    net = Serpent(preset=preset, upscale=SCALES.get(preset, 1), drop_path_rate=0.0).eval()
    with torch.no_grad():
        for param in net.parameters():  # the last conv starts at zero: make the whole network count
            param.add_(0.02 * torch.randn_like(param))
    return net


def _session(path: str, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _peak_during(fn, *args) -> int:
    """The highest resident set size seen while ``fn(*args)`` runs (sampled every millisecond from another
    thread; both engines release the GIL), above the size just before."""
    import threading

    before = _rss_bytes()
    peak, done = [before], threading.Event()

    def sample():
        while not done.is_set():
            peak[0] = max(peak[0], _rss_bytes())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        fn(*args)
    finally:
        done.set()
        sampler.join()
    return max(peak[0], _rss_bytes()) - before


def _peak_child(args) -> int:
    """In a fresh process: the peak RSS growth over one forward at ``--size`` (bytes); printed as JSON."""
    torch.set_num_threads(args.threads)
    net = _network(args.preset)
    side = args.size // SCALES.get(args.preset, 1)
    small = torch.rand(1, 3, 16, 16)
    x = torch.rand(1, 3, side, side)
    if args.engine == "onnxruntime":
        session = _session(args.model, args.threads)
        session.run(None, {"image": small.numpy()})
        grown = _peak_during(session.run, None, {"image": x.numpy()})
    else:
        with torch.inference_mode():
            net(small)
            grown = _peak_during(net, x)
    print(json.dumps({"peak_bytes": grown}))
    return 0


def _peak(engine: str, preset: str, size: int, model: str, threads: int) -> int:
    command = [sys.executable, "-m", "serpent_arch.benchmark.export", "--peak-child", "--engine", engine,
               "--preset", preset, "--size", str(size), "--model", model, "--threads", str(threads)]  # fmt: skip
    out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])["peak_bytes"]


def _time(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m serpent_arch.benchmark export", description=__doc__.split("\n")[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[256, 512, 1024], help="restored image sides")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per size (median)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-memory", action="store_true", help="skip the peak-memory processes")
    parser.add_argument("--out", default=None, help="also write the table (Markdown) to this file")
    parser.add_argument("--peak-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--preset", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.peak_child:
        return _peak_child(args)

    import onnxruntime

    from serpent_arch.export.graph import ExportSettings, export_onnx
    from serpent_arch.measure.machine import describe
    from serpent_arch.ops.backend_report import scan_log_line

    torch.set_num_threads(args.threads)
    lines = [
        f"Machine: {describe()}; onnxruntime {onnxruntime.__version__} (CPU provider, {args.threads} intra-op "
        f"threads); load average {os.getloadavg()[0]:.1f} at the start.",
        "",
        "| preset | restored size | input | PyTorch (ms) | ONNX Runtime (ms) | ORT / PyTorch | PyTorch peak (MiB) "
        "| ORT peak (MiB) | ONNX file (MiB) |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    with tempfile.TemporaryDirectory(prefix="serpent_export_bench_") as tmp:
        for preset in args.presets:
            net = _network(preset)
            scale = SCALES.get(preset, 1)
            path = os.path.join(tmp, f"{preset}.onnx")
            start = time.perf_counter()
            export_onnx(net, path, ExportSettings())
            print(f"{preset}: exported in {time.perf_counter() - start:.0f} s; {scan_log_line(net, 'cpu')}", flush=True)
            lines.insert(1, f"PyTorch, {preset}: {scan_log_line(net, 'cpu')}.")
            session = _session(path, args.threads)
            mib = os.path.getsize(path) / 2**20
            for size in args.sizes:
                side = size // scale
                x = torch.rand(1, 3, side, side)
                feed = {"image": x.numpy()}
                with torch.inference_mode():
                    ref = net(x).numpy()  # warm-up, and the check that both compute the same
                diff = float(np.abs(session.run(None, feed)[0] - ref).max())
                t_torch, t_ort, ratios = [], [], []
                for _ in range(args.rounds):
                    with torch.inference_mode():
                        t_torch.append(_time(net, x))
                    t_ort.append(_time(session.run, None, feed))
                    ratios.append(t_ort[-1] / t_torch[-1])
                peaks = ("", "")
                if not args.no_memory:
                    peaks = tuple(f"{_peak(e, preset, size, path, args.threads) / 2**20:.0f}"
                                  for e in ("torch", "onnxruntime"))  # fmt: skip
                row = (f"| {preset} | {size}x{size} | {side}x{side} | {1e3 * statistics.median(t_torch):.0f} | "
                       f"{1e3 * statistics.median(t_ort):.0f} | {statistics.median(ratios):.2f}x | {peaks[0]} | "
                       f"{peaks[1]} | {mib:.1f} |")  # fmt: skip
                lines.append(row)
                print(f"{row}  (max abs diff {diff:.1e})", flush=True)
    lines.append("")
    lines.append(f"Median of {args.rounds} interleaved rounds; load average {os.getloadavg()[0]:.1f} at the end.")
    table = "\n".join(lines)
    print("\n" + table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(
            f"# ONNX Runtime against PyTorch on the CPU\n\n`python -m serpent_arch.benchmark export "
            f"{' '.join(argv if argv is not None else sys.argv[1:])}`\n\n{table}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
