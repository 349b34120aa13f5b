"""The `basicsr infer` command: its flags, the checks before anything runs, and the progress loop
over the images with its summary line."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from serpent_arch.infer.errors import PROG, ImageError, InferError, note
from serpent_arch.infer.images import list_images
from serpent_arch.infer.network import load_network, network_options
from serpent_arch.infer.process import ground_truths, process_image
from serpent_arch.infer.restorer import PRECISIONS, Restorer, pick_amp_dtype, pick_device
from serpent_arch.ops.backend_report import scan_log_line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Restore your own images (a file or a folder) with a trained network. Outputs are "
        "OUT/<stem><suffix>.png, 8 or 16 bits like their input; exit status 1 when some image failed.",
    )
    parser.add_argument(
        "-e",
        "--experiment",
        metavar="experiments/NAME",
        help="a training's folder: its network and scale (options_resolved.yml) and newest weights",
    )
    parser.add_argument(
        "-opt", metavar="OPTIONS.yml", help="instead of -e: option file (test or train) giving network_g and scale"
    )
    parser.add_argument(
        "--weights",
        metavar="NET.pth",
        help="network weights: a BasicSR checkpoint or a state dict (with -opt; with -e: the newest checkpoint)",
    )
    parser.add_argument(
        "--onnx",
        metavar="MODEL.onnx",
        help="instead of -e / -opt: a model written by `basicsr export`, run by ONNX Runtime on the CPU",
    )
    parser.add_argument(
        "--force_yml", nargs="+", default=None, metavar="KEY=VALUE", help="override options, as in basicsr train"
    )
    parser.add_argument("--remove_yml", nargs="+", default=None, metavar="KEY", help="remove options")
    parser.add_argument(
        "-i", "--input", required=True, metavar="IMAGES", help="an image, or a folder of images (not recursive)"
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUT_DIR", help="folder for the restored images (created)"
    )
    parser.add_argument(
        "--param-key",
        default=None,
        metavar="KEY",
        help="checkpoint entry to load (default: params_ema if present, else params)",
    )
    parser.add_argument("--suffix", default="", metavar="TEXT", help="appended to each output's stem, e.g. _serpent")
    parser.add_argument(
        "--tile", type=int, default=0, metavar="N", help="restore in tiles of N x N input pixels (0: whole)"
    )
    parser.add_argument(
        "--tile-overlap", type=int, default=32, metavar="M", help="overlap of neighbouring tiles, input pixels"
    )
    parser.add_argument("--self-ensemble", action="store_true", help="average the 8 flips/rotations (8x slower)")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto: cuda if available")
    parser.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default="fp32",
        help="fp16/bf16: autocast, as val.amp in option files (GPU or CPU); the scan stays float32",
    )
    parser.add_argument(
        "--gt", default=None, metavar="GT", help="ground-truth image or folder, matched by stem: PSNR reported"
    )
    parser.add_argument(
        "--compare", action="store_true", help="also write OUT/compare/<name>.png: input | restored | ground truth"
    )
    return parser


def _run(args) -> int:
    from tqdm import tqdm

    if args.tile < 0:
        raise InferError(f"--tile must be >= 0 (0: whole images), got {args.tile}.")
    if args.tile and not 0 <= args.tile_overlap < args.tile:
        raise InferError(f"--tile-overlap must be in [0, --tile={args.tile}), got {args.tile_overlap}.")
    if args.onnx:
        device, amp_dtype = _check_onnx_flags(args), None
    else:
        device = pick_device(args.device)
        amp_dtype = pick_amp_dtype(args.precision, device)
    images = list_images(args.input)
    gt_paths = ground_truths(args.gt, images, single_input=Path(args.input).is_file())
    if args.onnx:
        from serpent_arch.export.runtime import load_onnx_network

        loaded, weights = load_onnx_network(args.onnx), args.onnx
    else:
        opt, source, weights = network_options(
            args.opt, args.experiment, args.weights, args.force_yml, args.remove_yml
        )
        loaded = load_network(opt, source, weights, args.param_key)
    loaded.net.to(device)
    restorer = Restorer(loaded, device, amp_dtype, args.tile, args.tile_overlap, args.self_ensemble)

    out_dir = Path(args.output)
    (out_dir / "compare" if args.compare else out_dir).mkdir(parents=True, exist_ok=True)
    out_paths = {path: out_dir / f"{path.stem}{args.suffix}.png" for path in images}
    for path, out_path in out_paths.items():
        if out_path.resolve() == path.resolve():
            raise InferError(f"the output for {path} would overwrite it; choose another -o or a --suffix.")

    if args.onnx:
        meta = loaded.net.metadata
        print(
            f"{PROG}: {loaded.net_type} x{loaded.scale} ({meta.get('serpent.preset') or 'custom'}, "
            f"{meta.get('serpent.precision', 'fp32')} graph, exported by serpent {meta.get('serpent.version')}), "
            f"model {weights}, ONNX Runtime on the cpu, {torch.get_num_threads()} threads; "
            f"{len(images)} image(s) -> {out_dir}"
        )
    else:
        params = sum(p.numel() for p in loaded.net.parameters()) / 1e6
        key = f"[{loaded.param_key}]" if loaded.param_key else "(state dict)"
        print(
            f"{PROG}: {loaded.net_type} ({params:.2f}M parameters) x{loaded.scale}, weights {weights} {key}, "
            f"{device.type} {args.precision if amp_dtype else 'fp32'}; {len(images)} image(s) -> {out_dir}"
        )
        print(f"{PROG}: {scan_log_line(loaded.net, device)}")
    failed, results, first_input_of = 0, [], {}
    start = time.perf_counter()
    # no tqdm rate: it counts failed images too (a lone bad input showed thousands of img/s); the
    # postfix gives each restored image's time, the summary the rate of the restored ones
    bar = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"
    progress = tqdm(images, desc="infer", unit="img", dynamic_ncols=True, file=sys.stderr, bar_format=bar)
    for path in progress:
        out_path = out_paths[path]
        try:
            if out_path in first_input_of:
                raise ImageError(f"has the same stem as {first_input_of[out_path]}, whose output is {out_path}")
            first_input_of[out_path] = path
            result = process_image(path, args, restorer, out_path, gt_paths.get(path.stem))
        except ImageError as err:
            note(path, str(err))
            failed += 1
            continue
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            note(path, "out of GPU memory; use --tile (e.g. --tile 256) or --precision fp16")
            failed += 1
            continue
        except Exception as err:  # one bad image must not stop the run
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            note(path, f"failed: {type(err).__name__}: {detail}")
            failed += 1
            continue
        results.append(result)
        postfix = f"{path.name} {result.seconds:.2f}s"
        if result.psnr is not None:
            postfix += f" {result.psnr:.2f}dB"
        progress.set_postfix_str(postfix)
    progress.close()

    elapsed = time.perf_counter() - start
    summary = f"{PROG}: {len(results)} restored, {failed} failed in {elapsed:.1f} s"
    if results and elapsed > 0:
        summary += f" ({len(results) / elapsed:.2f} images/s)"
    scored = [r for r in results if r.psnr is not None]
    if scored:
        mean_psnr = sum(r.psnr for r in scored) / len(scored)
        mean_baseline = sum(r.baseline_psnr for r in scored) / len(scored)
        baseline = "bicubic" if loaded.scale > 1 else "input"
        summary += f"; mean Y-PSNR of {len(scored)} with ground truth {mean_psnr:.2f} dB"
        summary += f" ({baseline} {mean_baseline:.2f} dB)"
    print(summary)
    return 1 if failed else 0


def _check_onnx_flags(args) -> torch.device:
    """``--onnx`` names the whole network: no options, weights or precision beside it; runs on the CPU."""
    given = [flag for flag, value in (("-e", args.experiment), ("-opt", args.opt), ("--weights", args.weights),
             ("--param-key", args.param_key), ("--force_yml", args.force_yml), ("--remove_yml", args.remove_yml))
             if value]  # fmt: skip
    if given:
        raise InferError(f"--onnx is the whole network (exported weights and options); leave out {', '.join(given)}.")
    if args.precision != "fp32":
        raise InferError(f"--precision {args.precision} does not apply to --onnx: the graph's precision was "
                         "chosen at export (basicsr export --fp16).")  # fmt: skip
    if args.device == "cuda":
        raise InferError("--onnx runs on the CPU (ONNX Runtime's CPU provider); leave out --device cuda.")
    return torch.device("cpu")


def main(argv: list[str] | None = None) -> int:
    """``basicsr infer`` with ``argv`` (the flags after ``infer``); returns the exit status."""
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # -h, or a usage error argparse has already printed
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return _run(args)
    except InferError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
