"""The fused four-direction Triton scan against the unfused Triton path, on a GPU.

    python -m serpent_arch.benchmark cross_scan_cuda [--repeats 10] [--out DIR] [--sweep] [--small]

Shapes: the SS2D scans of Serpent ``base`` on a 1024x1024 image, batch 1 (4x4 patches, so 256x256 tokens
at the first scale; d_inner = 2 x width = 128, 256, 512, 1024 channels at 256^2, 128^2, 64^2 and 32^2
tokens), K = 4 directions, N = 16, D, delta_bias, softplus, float32 inputs in the layout SS2D's fused path
gives them (per-direction tensors in row-major pixel order). For each shape it times, medians of
``--repeats`` runs after two warm-ups (Triton's compilation), with ``torch.cuda.synchronize`` around each:

* ``fused``: :func:`~serpent_arch.ops._triton_cross_scan.cross_selective_scan_triton`;
* ``unfused``: :func:`~serpent_arch.ops.cross_scan.cross_selective_scan_ref` with ``backend="triton"``
  (copies of the map and of every per-direction tensor into each direction's order, the one-direction
  Triton scan on (batch, K*dim, L), the merge);

forward and forward + backward, peak memory of each (beyond the inputs), and the largest difference of
the output and of every gradient between the two, relative to the unfused path's largest magnitude
(they should agree to float32 rounding: same arithmetic per direction, the directions summed in another
order). Beside its defaults the fused kernel is timed with ``split_directions`` (each direction in its
own programs, summed by torch: K times as many programs at batch 1), and ``--sweep`` adds other tiles
(the defaults were chosen from the sm_90 build's register use, not from timings).
:func:`bench_cross_scan` runs on any device where the triton backend runs (the tests call it on CPU
through Triton's interpreter at tiny shapes); ``python -m serpent_arch.benchmark gpu`` includes it
(without ``--sweep``).
"""

from __future__ import annotations

import argparse
import datetime
import functools
from pathlib import Path

import torch

from serpent_arch.benchmark.scan_cuda import _device_name, _median_ms, _peak_bytes, rel_err
from serpent_arch.ops import resolve_backend

# (dim, H, W) of Serpent base's scans at 1024x1024, batch 1 (encoder and decoder share them)
BASE_1024 = ((128, 256, 256), (256, 128, 128), (512, 64, 64), (1024, 32, 32))
SMALL = ((4, 3, 5), (2, 4, 4))  # a dry run on the CPU
DIRECTIONS, D_STATE = 4, 16
GRADS = ("x", "delta", "A", "B", "C", "D", "delta_bias")
# other settings of the fused kernel, timed beside its defaults (block_d 1 at K = 4, chunk 32, 4 warps, the
# directions summed in place): the gpu check times VARIANTS, --sweep also SWEEP
VARIANTS = ({"split_directions": True},)
SWEEP = ({"block_d": 2}, {"block_d": 4}, {"chunk": 64}, {"num_warps": 2}, {"split_directions": True, "block_d": 2})
# max |fused - unfused| / max |unfused|: float32 rounding of the same sums in another order
TOLERANCE = 1e-4


def make_inputs(batch: int, dim: int, h: int, w: int, k: int = DIRECTIONS, n: int = D_STATE, seed: int = 0) -> dict:
    """Random inputs as SS2D's fused path passes them (steps of realistic size, Mamba's A init range)."""
    gen = torch.Generator().manual_seed(seed)
    L = h * w
    return {
        "x": torch.randn(batch, dim, h, w, generator=gen),
        "delta": torch.randn(batch, k, dim, L, generator=gen) * 0.5 - 1,
        "A": -(torch.rand(k * dim, n, generator=gen) * 2 + 0.2),
        "B": torch.randn(batch, k, n, L, generator=gen),
        "C": torch.randn(batch, k, n, L, generator=gen),
        "D": torch.randn(k * dim, generator=gen),
        "delta_bias": torch.randn(k * dim, generator=gen) * 0.2,
    }


_SHORT = {"block_d": "d", "chunk": "c", "num_warps": "w"}


def label(options: dict) -> str:
    """"fused" plus the non-default settings, e.g. ``fused split d2`` for split_directions, block_d 2."""
    parts = ["split" if key == "split_directions" else f"{_SHORT[key]}{value}" for key, value in options.items()]
    return " ".join(["fused", *parts])


def _paths(variants) -> dict:
    """label -> function of the inputs: the fused kernel with its defaults and with each of ``variants``
    (keyword arguments of cross_selective_scan_triton), and the unfused path."""
    from serpent_arch.ops._triton_cross_scan import cross_selective_scan_triton
    from serpent_arch.ops.cross_scan import cross_selective_scan_ref

    paths = {"fused": cross_selective_scan_triton}
    for options in variants:
        paths[label(options)] = functools.partial(cross_selective_scan_triton, **options)
    paths["unfused"] = functools.partial(cross_selective_scan_ref, backend="triton")
    return paths


def _run(fn, inputs: dict, gout: torch.Tensor | None) -> dict:
    """Forward only (no autograd) if ``gout`` is None, else forward + backward; out and gradients."""
    if gout is None:
        with torch.no_grad():
            return {"out": fn(**inputs, delta_softplus=True)}
    leaves = {name: v.detach().requires_grad_() for name, v in inputs.items()}
    out = fn(**leaves, delta_softplus=True)
    out.backward(gout)
    return {"out": out.detach(), **{name: leaves[name].grad for name in GRADS}}


def bench_cross_scan(device: str | torch.device = "cuda", shapes=BASE_1024, batch: int = 1, repeats: int = 10,
                     variants=VARIANTS) -> dict:  # fmt: skip
    """Time fused and unfused at each (dim, H, W) of ``shapes`` and compare their results.

    Returns ``{"device", "batch", "shapes", "rows": [{label, dim, h, w, fwd_ms, fwd_bwd_ms, peak (fwd+bwd, bytes),
    max_rel_diff (against unfused), worst_tensor}], "agrees", "skipped"}``; ``skipped`` is the reason when
    triton cannot run on ``device`` (then no rows). ``variants``: other settings of the fused kernel to time.
    """
    device = torch.device(device)
    which = "Serpent base's scans at 1024x1024" if tuple(shapes) == BASE_1024 else "dry-run shapes"
    report = {"device": _device_name(device), "batch": batch, "shapes": which, "rows": [], "agrees": True,
              "skipped": None}  # fmt: skip
    try:
        resolve_backend("triton", torch.empty(0, device=device))
    except RuntimeError as exc:
        report["skipped"] = str(exc)
        return report
    paths = _paths(variants)
    for dim, h, w in shapes:
        inputs = {name: v.to(device) for name, v in make_inputs(batch, dim, h, w).items()}
        gout = torch.randn(batch, dim, h, w, generator=torch.Generator().manual_seed(1)).to(device)
        rows, results = [], {}
        for label, fn in paths.items():
            for _ in range(2):  # warm-up: compilation, allocator
                results[label] = _run(fn, inputs, gout)
            rows.append({
                "label": label, "dim": dim, "h": h, "w": w,
                "fwd_ms": _median_ms(functools.partial(_run, fn, inputs, None), device, repeats),
                "fwd_bwd_ms": _median_ms(functools.partial(_run, fn, inputs, gout), device, repeats),
                "peak": _peak_bytes(functools.partial(_run, fn, inputs, gout), device),
            })  # fmt: skip
        for row in rows:
            got, want = results[row["label"]], results["unfused"]
            diffs = {name: rel_err(got[name], want[name]) for name in want}
            row["worst_tensor"] = max(diffs, key=diffs.get)
            row["max_rel_diff"] = diffs[row["worst_tensor"]]
            report["agrees"] = report["agrees"] and row["max_rel_diff"] <= TOLERANCE
        report["rows"] += rows
        del inputs, gout, results
    return report


def render(report: dict, repeats: int) -> str:
    """The report of :func:`bench_cross_scan` as markdown."""
    lines = [
        "### Fused four-direction scan (Triton) against the unfused Triton path",
        "",
        f"- device: {report['device']}; torch {torch.__version__}; "
        f"{datetime.datetime.now().isoformat(timespec='seconds')}; medians of {repeats} runs after 2 warm-ups",
        f"- {report['shapes']}: batch {report['batch']}, K = {DIRECTIONS}, N = {D_STATE}, D, "
        "delta_bias, softplus, float32; unfused = cross-scan copies + one-direction triton scan + merge",
        "- peak: memory allocated by forward + backward beyond the inputs; difference: max |fused - unfused| / "
        f"max |unfused| over the output and all 7 gradients (tolerance {TOLERANCE:g})",
        "",
    ]
    if report["skipped"]:
        return "\n".join(lines + [f"skipped: {report['skipped']}", ""])
    lines += [
        "| dim x H x W | path | forward (ms) | fwd+bwd (ms) | fwd+bwd vs unfused | peak (MiB) "
        "| difference (worst tensor) |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    unfused = {(r["dim"], r["h"], r["w"]): r["fwd_bwd_ms"] for r in report["rows"] if r["label"] == "unfused"}
    for r in report["rows"]:
        speedup = unfused[(r["dim"], r["h"], r["w"])] / r["fwd_bwd_ms"]
        lines.append(
            f"| {r['dim']} x {r['h']} x {r['w']} | {r['label']} | {r['fwd_ms']:.2f} | {r['fwd_bwd_ms']:.2f} "
            f"| {speedup:.2f}x | {r['peak'] / 2**20:.1f} | {r['max_rel_diff']:.1e} ({r['worst_tensor']}) |"
        )
    lines += ["", f"- fused agrees with unfused: {'yes' if report['agrees'] else 'NO'}", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m serpent_arch.benchmark cross_scan_cuda",
                                     description=__doc__.split("\n")[0])  # fmt: skip
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per measurement (median reported)")
    parser.add_argument("--out", type=Path, default=Path("results/benchmarks"), help="output directory")
    parser.add_argument("--device", default="cuda", help="device to measure on (default cuda)")
    parser.add_argument("--small", action="store_true", help=f"tiny shapes {SMALL} (a dry run)")
    parser.add_argument("--sweep", action="store_true", help=f"also time the fused kernel with {SWEEP}")
    args = parser.parse_args(argv)
    shapes = SMALL if args.small else BASE_1024
    variants = VARIANTS + (SWEEP if args.sweep else ())
    report = bench_cross_scan(args.device, shapes, repeats=args.repeats, variants=variants)
    table = render(report, args.repeats)
    print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / ("cross_scan_cuda_small.md" if args.small else "cross_scan_cuda.md")
    path.write_text(table)
    print(f"written to {path}")
    return table


if __name__ == "__main__":
    main()
