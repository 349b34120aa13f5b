"""The `basicsr export` command: its flags, the checks before the (minute-long) export, the export."""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from pathlib import Path

PROG = "basicsr export"
ONNX_INSTALL = 'pip install -e ".[onnx]"   (or: pip install onnx onnxruntime onnxscript)'


def build_parser() -> argparse.ArgumentParser:
    from serpent_arch.export.graph import DEFAULT_OPSET

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write a trained network as an ONNX model that ONNX Runtime runs at any image size: input "
        "NCHW float32 RGB in [0, 1], output the restored image at scale x the size.",
    )
    parser.add_argument(
        "-e", "--experiment", metavar="experiments/NAME", help="a training's folder: its network and newest weights"
    )
    parser.add_argument("-opt", metavar="OPTIONS.yml", help="instead of -e: option file giving network_g and scale")
    parser.add_argument(
        "--weights", metavar="NET.pth", help="network weights: a BasicSR checkpoint or a state dict (with -opt)"
    )
    parser.add_argument(
        "--param-key",
        default=None,
        metavar="KEY",
        help="checkpoint entry to export (default: params_ema if present, else params)",
    )
    parser.add_argument("--force_yml", nargs="+", default=None, metavar="KEY=VALUE", help="override options")
    parser.add_argument("--remove_yml", nargs="+", default=None, metavar="KEY", help="remove options")
    parser.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="the ONNX file to write")
    parser.add_argument(
        "--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset of the graph (default {DEFAULT_OPSET})"
    )
    parser.add_argument(
        "--fp16", action="store_true", help="weights stored in float16: half the file; the arithmetic, the input "
        "and the output stay float32"
    )  # fmt: skip
    parser.add_argument(
        "--fixed-size",
        metavar="HxW",
        default=None,
        help="a static graph for this input size and batch 1, for runtimes that need one (default: any size)",
    )
    return parser


def _fixed_size(text: str | None) -> tuple[int, int] | None:
    from serpent_arch.export.graph import ExportError

    if text is None:
        return None
    try:
        h, w = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise ExportError(f"--fixed-size must be HxW, e.g. 256x256, got {text!r}.") from None
    if h < 2 or w < 2:
        raise ExportError(f"--fixed-size must be at least 2x2, got {text!r}.")
    return h, w


def check_writable(path: str) -> None:
    """Refuse an output the export could not write, before the export runs."""
    from serpent_arch.export.graph import ExportError

    out = Path(path)
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ExportError(f"output {path!r} is a folder; give a file name, e.g. {os.path.join(path, 'model.onnx')}.")
    if not parent.is_dir():
        raise ExportError(f"cannot write {path!r}: folder {str(parent)!r} does not exist.")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ExportError(f"cannot write {path!r}: permission denied.")


def _run(args) -> int:
    from serpent_arch import __version__
    from serpent_arch.export.graph import ExportError, ExportSettings, check_opset, export_onnx, serpent_metadata
    from serpent_arch.infer.errors import InferError
    from serpent_arch.infer.network import load_network, network_options

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise ExportError(f"exporting needs the onnx packages ({err.name} is missing): {ONNX_INSTALL}") from None
    settings = ExportSettings(opset=args.opset, fp16=args.fp16, fixed_size=_fixed_size(args.fixed_size))
    check_opset(settings.opset)
    check_writable(args.output)
    try:
        opt, source, weights = network_options(args.opt, args.experiment, args.weights, args.force_yml, args.remove_yml)
        loaded = load_network(opt, source, weights, args.param_key)
    except InferError as err:  # infer's messages; its hint joins the same line here
        raise ExportError(re.sub(r"\.?\n  hint: ", "; ", str(err))) from err
    if loaded.net_type != "Serpent":
        raise ExportError(f"network_g type {loaded.net_type!r}: only Serpent networks are exported.")
    settings.metadata = serpent_metadata(loaded.net, opt["network_g"], loaded.scale, __version__, settings)
    key = f"[{loaded.param_key}]" if loaded.param_key else "(state dict)"
    size = "x".join(map(str, settings.fixed_size)) if settings.fixed_size else "any size"
    precision = "fp16" if settings.fp16 else "fp32"
    print(f"{PROG}: Serpent x{loaded.scale}, weights {weights} {key} -> {args.output} "
          f"(opset {settings.opset}, {precision}, {size}); this takes a minute or two")  # fmt: skip
    start = time.perf_counter()
    export_onnx(loaded.net, args.output, settings)
    mib = os.path.getsize(args.output) / 2**20
    print(f"{PROG}: wrote {args.output} ({mib:.1f} MiB) in {time.perf_counter() - start:.0f} s; "
          f"run it: basicsr infer --onnx {args.output} -i IMAGES -o OUT")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    """``basicsr export`` with ``argv`` (the flags after ``export``); returns the exit status."""
    from serpent_arch.export.graph import ExportError

    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return _run(args)
    except ExportError as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
