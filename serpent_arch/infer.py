"""`basicsr infer`: restore your own images (a file or a folder) with a trained network.

    basicsr infer -opt OPTIONS.yml --weights NET.pth -i IMAGE_OR_FOLDER -o OUT_DIR
                  [--tile N [--tile-overlap M]] [--self-ensemble] [--device auto|cpu|cuda]
                  [--precision fp32|fp16|bf16] [--param-key KEY] [--suffix TEXT]
                  [--gt IMAGE_OR_FOLDER] [--compare]

The option file (a test or a train file) is read for ``network_g`` and ``scale`` only. Every
restored image is written as ``OUT_DIR/<stem><suffix>.png`` with the bit depth of its input (8 or
16 bits) and its channel layout:
- colour images go through the network as RGB (as BasicSR trains it);
- a grayscale image given to a 3-channel network is replicated to RGB, restored, and turned back
  into one channel with the usual luma weights (cv2 BGR2GRAY), so gray in gives gray out;
- an RGBA image has its RGB restored by the network and its alpha channel enlarged bicubically
  (the network was never trained on alpha), written as a 4-channel PNG;
- a colour image given to a 1-channel network is refused for that image: there is no single right
  conversion (luma only, or Y with bicubic chroma), so the user chooses.

Exit status: 0 when every image was restored, 1 when some failed (each named on stderr with its
problem, the others are still restored), 2 when nothing can run (flags, option file, weights).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import serpent_arch  # noqa: F401  (BasicSR fixes and registrations before BasicSR is imported)
from serpent_arch import amp
from serpent_arch.archs.build import NetworkOptionError, build_network
from serpent_arch.checkpoints import CheckpointError, read_state_dict, state_mismatch, variant_that_fits
from serpent_arch.data.storage import IMAGE_EXTENSIONS
from serpent_arch.forward_passes import self_ensemble_forward, tiled_forward
from serpent_arch.ops.backend_report import scan_log_line

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}
COMPARE_GAP = 4  # white pixels between the panels of a comparison image
PROG = "basicsr infer"


class InferError(Exception):
    """Nothing can be restored (bad flags, option file or weights): exit status 2."""


class ImageError(Exception):
    """One image cannot be restored; the others still are."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Restore your own images (a file or a folder) with a trained network. Outputs are "
        "OUT/<stem><suffix>.png, 8 or 16 bits like their input; exit status 1 when some image failed.",
    )
    parser.add_argument(
        "-opt", required=True, metavar="OPTIONS.yml", help="option file (test or train) giving network_g and scale"
    )
    parser.add_argument(
        "--weights", required=True, metavar="NET.pth", help="network weights: a BasicSR checkpoint or a state dict"
    )
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


# ---------------------------------------------------------------------------------------------
# The network and its weights


@dataclass
class LoadedNetwork:
    net: nn.Module
    net_type: str
    scale: int
    in_chans: int | None  # None when the network does not say (then images go in as they are)
    param_key: str | None  # the checkpoint entry that was loaded; None for a bare state dict


def load_network(opt_path: str, weights_path: str, param_key: str | None) -> LoadedNetwork:
    """Build ``network_g`` of the option file on the CPU and load the weights into it (strictly)."""
    from serpent_arch.options import OptionError, load_yaml

    try:
        opt = load_yaml(opt_path)
    except OptionError as err:
        raise InferError(str(err)) from err
    net_opt = opt.get("network_g")
    if not isinstance(net_opt, dict) or not net_opt.get("type"):
        raise InferError(f"option file {opt_path!r}: missing 'network_g' with a 'type' (the network to build).")
    scale = opt.get("scale", 1)
    if not isinstance(scale, int) or scale < 1:
        raise InferError(f"option file {opt_path!r}: 'scale' must be a positive integer, got {scale!r}.")
    net_type = net_opt["type"]
    try:
        net = build_network(net_opt)
    except NetworkOptionError as err:
        raise InferError(f"option file {opt_path!r}: {err}") from err
    upscale = getattr(net, "upscale", None)
    if isinstance(upscale, int) and upscale != scale:
        raise InferError(
            f"option file {opt_path!r}: 'scale' is {scale} but network_g.upscale is {upscale}; make them agree."
        )

    try:
        state, used_key = read_state_dict(weights_path, param_key)
    except CheckpointError as err:
        raise InferError(str(err)) from err
    mismatch = state_mismatch(net, state)
    if mismatch:
        described = f"type {net_type}"
        if net_type == "Serpent":
            described += f", variant {net_opt.get('variant') or 'base'!r}"
        fitting = variant_that_fits(net_opt, state)
        if fitting:
            hint = f"they fit variant {fitting!r}: use an option file with network_g.variant: {fitting}"
        else:
            hint = "use the option file the weights were trained with (same network_g: variant, sizes, upscale)"
        raise InferError(
            f"weights {weights_path!r} do not fit network_g of {opt_path!r} ({described}): {mismatch}.\n  hint: {hint}"
        )
    net.load_state_dict(state, strict=True)
    net.eval()
    return LoadedNetwork(net, net_type, scale, _input_channels(net), used_key)


def _input_channels(net: nn.Module) -> int | None:
    """Image channels the network takes: Serpent says so; for other BasicSR networks, the first conv's."""
    in_chans = getattr(net, "in_chans", None)
    if isinstance(in_chans, int):
        return in_chans
    first_conv = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    return first_conv.in_channels if first_conv is not None else None


# ---------------------------------------------------------------------------------------------
# Images


def list_images(path: str) -> list[Path]:
    """A file as given, or the image files of a folder (by extension, not recursive, sorted)."""
    root = Path(path)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise InferError(f"input {path!r} does not exist.")
    images = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not images:
        raise InferError(f"input folder {path!r} has no images ({', '.join(IMAGE_EXTENSIONS)}).")
    return images


def read_image(path: Path) -> np.ndarray:
    """The image as stored: (H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA; uint8 or uint16."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as err:
        raise ImageError(f"cannot be read: {err.strerror or err}") from err
    if data.size == 0:
        raise ImageError("is empty (0 bytes)")
    # A JPEG has no alpha to keep, so it is decoded with flags that also apply its EXIF orientation
    # (IMREAD_UNCHANGED ignores it): a phone photo comes out the way viewers show it.
    is_jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    flags = cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR if is_jpeg else cv2.IMREAD_UNCHANGED
    try:
        img = cv2.imdecode(data, flags)
    except cv2.error:
        img = None
    if img is None:
        raise ImageError("cannot be decoded as an image (corrupt, truncated, or not an image file)")
    if img.dtype not in (np.uint8, np.uint16):
        raise ImageError(f"has {img.dtype} pixels; only 8- and 16-bit images are supported")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 3 and img.shape[2] not in (3, 4):
        raise ImageError(f"has {img.shape[2]} channels; expected 1 (gray), 3 (colour) or 4 (colour + alpha)")
    return img


def max_value(img: np.ndarray) -> float:
    return 65535.0 if img.dtype == np.uint16 else 255.0


def quantize(img: np.ndarray, dtype) -> np.ndarray:
    """[0, 1] float -> uint8 / uint16, rounded."""
    return np.rint(np.clip(img, 0, 1) * (65535.0 if dtype == np.uint16 else 255.0)).astype(dtype)


def bicubic_upscale(img: np.ndarray, scale: int) -> np.ndarray:
    """(H, W[, C]) float in [0, 1] -> (sH, sW[, C]), with torch's bicubic (the network's and the
    validation baseline's resize), clipped."""
    if scale == 1:
        return img
    x = torch.from_numpy(np.ascontiguousarray(img if img.ndim == 3 else img[..., None])).permute(2, 0, 1)[None]
    y = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False).clamp(0, 1)
    y = y[0].permute(1, 2, 0).numpy()
    return y if img.ndim == 3 else y[..., 0]


def psnr_y(img: np.ndarray, ref: np.ndarray, crop_border: int) -> float:
    """Y-channel PSNR (BT.601, BasicSR's ``calculate_psnr``) of two (H, W) gray or (H, W, 3) BGR
    images in [0, 1], ``crop_border`` pixels cropped at each edge."""
    from basicsr.metrics.psnr_ssim import calculate_psnr

    return float(calculate_psnr(img * 255.0, ref * 255.0, crop_border, input_order="HWC", test_y_channel=True))


# ---------------------------------------------------------------------------------------------
# Restoration


@dataclass
class Restorer:
    """Runs the network on one image at a time, whole or tiled, optionally with self-ensemble."""

    loaded: LoadedNetwork
    device: torch.device
    amp_dtype: torch.dtype | None
    tile: int
    tile_overlap: int
    self_ensemble: bool

    def restore(self, img: np.ndarray) -> np.ndarray:
        """(H, W) gray, (H, W, 3) BGR or (H, W, 4) BGRA float in [0, 1] -> the same layout,
        ``scale`` times larger, in [0, 1]."""
        is_gray = img.ndim == 2
        colour = img if is_gray else img[..., :3]
        alpha = img[..., 3] if not is_gray and img.shape[2] == 4 else None
        channels = 1 if is_gray else 3
        in_chans = self.loaded.in_chans or channels
        if channels == in_chans:
            net_input = colour[..., None] if is_gray else cv2.cvtColor(colour, cv2.COLOR_BGR2RGB)
        elif is_gray and in_chans == 3:
            net_input = np.repeat(colour[..., None], 3, axis=2)
        else:
            raise ImageError(
                f"channel mismatch: the image is {'gray' if is_gray else 'colour'} ({channels} channel(s)) but the "
                f"network takes {in_chans} (network_g.in_chans); convert the image first"
            )
        out = np.clip(self.run_network(net_input), 0, 1)  # clipped before any gray conversion, like the colour image
        if out.shape[2] == 3:
            out = cv2.cvtColor(out, cv2.COLOR_RGB2BGR)
            if is_gray:  # back to what the user gave: one channel, by the usual luma weights
                out = cv2.cvtColor(out, cv2.COLOR_BGR2GRAY)
        elif out.shape[2] == 1:
            out = out[..., 0]
        else:
            raise ImageError(f"the network gave {out.shape[2]} output channels; only 1 or 3 can be written")
        if alpha is not None:
            if out.ndim == 2:
                out = cv2.cvtColor(out, cv2.COLOR_GRAY2BGR)
            out_size = (out.shape[1], out.shape[0])
            alpha = np.clip(cv2.resize(alpha, out_size, interpolation=cv2.INTER_CUBIC), 0, 1)
            out = np.dstack([out, alpha])
        return out

    def run_network(self, img: np.ndarray) -> np.ndarray:
        """(H, W, C_in) float32 in [0, 1], RGB order -> (sH, sW, C_out) float32 (not clipped)."""
        x = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None].to(self.device)
        with torch.inference_mode():
            y = self_ensemble_forward(self._tiled, x) if self.self_ensemble else self._tiled(x)
        scale = self.loaded.scale
        expected = (x.shape[-2] * scale, x.shape[-1] * scale)
        if tuple(y.shape[-2:]) != expected:
            raise ImageError(
                f"the network gave a {tuple(y.shape[-2:])} output for a {tuple(x.shape[-2:])} input, expected "
                f"{expected}; check 'scale' in the option file"
            )
        return y[0].permute(1, 2, 0).cpu().numpy()

    def _tiled(self, x: torch.Tensor) -> torch.Tensor:
        return tiled_forward(self._net_forward, x, self.loaded.scale, tile=self.tile, overlap=self.tile_overlap)

    def _net_forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.amp_dtype is None:
            return self.loaded.net(x)
        # float32 out, so that tile blending and the ensemble mean never accumulate in half precision
        with torch.autocast(self.device.type, dtype=self.amp_dtype):
            return self.loaded.net(x).float()


# ---------------------------------------------------------------------------------------------
# Comparison image


def _display(img: np.ndarray) -> np.ndarray:
    """A [0, 1] float image (gray, BGR or BGRA) as 8-bit BGR; alpha composited over white."""
    if img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    elif img.shape[2] == 4:
        alpha = img[..., 3:]
        img = img[..., :3] * alpha + (1 - alpha)
    return quantize(img, np.uint8)


def _caption_strip(lines: list[str], width: int, height: int, line_height: int, font_scale: float) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    for i, line in enumerate(lines):
        scale = font_scale
        while scale > 0.3 and cv2.getTextSize(line, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0] > width - 8:
            scale -= 0.05  # shrink a caption that does not fit its panel
        baseline_y = (i + 1) * line_height - line_height // 4
        cv2.putText(strip, line, (4, baseline_y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def comparison_image(panels: list[tuple[np.ndarray, list[str]]]) -> np.ndarray:
    """Panels of equal size side by side, each under its caption lines, COMPARE_GAP white pixels
    apart. Each panel is a [0, 1] float (H, W[, C]) image. Returns (caption + H, n * W + gaps, 3) uint8."""
    height, width = panels[0][0].shape[:2]
    font_scale = float(np.clip(width / 500, 0.4, 0.8))
    line_height = int(round(30 * font_scale)) + 4
    caption_height = line_height * max(len(lines) for _, lines in panels) + 4
    columns = []
    for i, (img, lines) in enumerate(panels):
        if i:
            columns.append(np.full((caption_height + height, COMPARE_GAP, 3), 255, np.uint8))
        caption = _caption_strip(lines, width, caption_height, line_height, font_scale)
        columns.append(np.vstack([caption, _display(img)]))
    return np.hstack(columns)


# ---------------------------------------------------------------------------------------------
# The command


def _pick_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise InferError("--device cuda: CUDA is not available (torch sees no GPU); use --device cpu or auto.")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def _pick_amp_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, as ``val.amp`` would run it (serpent_arch.amp): on CUDA and on the CPU."""
    amp_dtype = PRECISIONS[precision]
    problem = amp.unsupported(device, amp_dtype)
    if problem:
        raise InferError(f"--precision {precision}: {problem}.")
    return amp_dtype


def _ground_truths(gt: str | None, images: list[Path], single_input: bool) -> dict[str, Path]:
    """Ground-truth file for each input stem (a single file given for a single input pairs with it)."""
    if gt is None:
        return {}
    gt_files = list_images(gt)
    if single_input and Path(gt).is_file():
        return {images[0].stem: gt_files[0]}
    return {path.stem: path for path in gt_files}


def _matching_gt(gt_path: Path, out_shape: tuple[int, ...], scale: int) -> np.ndarray:
    """The ground truth in [0, 1] (colour channels only), cropped to the output size when it is at
    most ``scale - 1`` pixels larger (an HR image whose size is not a multiple of the scale)."""
    gt = read_image(gt_path)
    gt = gt.astype(np.float32) / max_value(gt)
    if gt.ndim == 3:
        gt = gt[..., :3]
    (h, w), (gt_h, gt_w) = out_shape[:2], gt.shape[:2]
    if not (h <= gt_h < h + scale and w <= gt_w < w + scale):
        raise ImageError(f"ground truth {gt_path} is {gt_w}x{gt_h} but the output is {w}x{h}")
    return gt[:h, :w]


@dataclass
class ImageResult:
    seconds: float
    psnr: float | None = None
    baseline_psnr: float | None = None


def _process(path: Path, args, restorer: Restorer, out_path: Path, gt_path: Path | None) -> ImageResult:
    """Read, restore and write one image (and its comparison); raise ImageError on bad input."""
    start = time.perf_counter()
    stored = read_image(path)
    img = stored.astype(np.float32) / max_value(stored)
    restored = restorer.restore(img)
    written = quantize(restored, stored.dtype)
    if not cv2.imwrite(str(out_path), written):
        raise ImageError(f"could not write {out_path}")
    seconds = time.perf_counter() - start
    result = ImageResult(seconds)

    scale = restorer.loaded.scale
    gt = None
    if gt_path is not None:
        try:
            gt = _matching_gt(gt_path, restored.shape, scale)
        except ImageError as err:  # the restoration itself succeeded: a note, not a failure
            _note(path, f"not compared: {err}")
    if gt is not None and gt.ndim == restored.ndim:
        # PSNR of the image as written (quantized), like BasicSR's validation, beside the bicubic baseline
        as_written = written.astype(np.float32) / max_value(written)
        result.psnr = psnr_y(_without_alpha(as_written), gt, crop_border=scale)
        baseline = quantize(bicubic_upscale(_without_alpha(img), scale), stored.dtype)
        result.baseline_psnr = psnr_y(baseline.astype(np.float32) / max_value(baseline), gt, crop_border=scale)
    elif gt is not None:
        _note(path, f"not compared: ground truth {gt_path} and the output differ in channels (gray vs colour)")
        gt = None

    if args.compare:
        out_h, out_w = restored.shape[:2]
        enlarged = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_NEAREST)
        name = restorer.loaded.net_type
        panels = [
            (enlarged, [f"input (nearest x{scale})" if scale > 1 else "input"]),
            (restored, [name] + ([] if result.psnr is None else [_psnr_caption(result, scale)])),
        ]
        if gt is not None:
            panels.append((gt, ["ground truth"]))
        compare_path = out_path.parent / "compare" / out_path.name
        if not cv2.imwrite(str(compare_path), comparison_image(panels)):
            raise ImageError(f"could not write {compare_path}")
    return result


def _without_alpha(img: np.ndarray) -> np.ndarray:
    """(H, W) gray or (H, W, 3) BGR as it is; (H, W, 4) BGRA -> its (H, W, 3) BGR."""
    return img[..., :3] if img.ndim == 3 else img


def _psnr_caption(result: ImageResult, scale: int) -> str:
    baseline = "bicubic" if scale > 1 else "input"
    return f"Y-PSNR {result.psnr:.2f} dB ({baseline} {result.baseline_psnr:.2f})"


def _note(path: Path, message: str) -> None:
    from tqdm import tqdm

    tqdm.write(f"{PROG}: {path}: {message}", file=sys.stderr)


def _run(args) -> int:
    from tqdm import tqdm

    if args.tile < 0:
        raise InferError(f"--tile must be >= 0 (0: whole images), got {args.tile}.")
    if args.tile and not 0 <= args.tile_overlap < args.tile:
        raise InferError(f"--tile-overlap must be in [0, --tile={args.tile}), got {args.tile_overlap}.")
    device = _pick_device(args.device)
    amp_dtype = _pick_amp_dtype(args.precision, device)
    images = list_images(args.input)
    gt_paths = _ground_truths(args.gt, images, single_input=Path(args.input).is_file())
    loaded = load_network(args.opt, args.weights, args.param_key)
    loaded.net.to(device)
    restorer = Restorer(loaded, device, amp_dtype, args.tile, args.tile_overlap, args.self_ensemble)

    out_dir = Path(args.output)
    (out_dir / "compare" if args.compare else out_dir).mkdir(parents=True, exist_ok=True)
    out_paths = {path: out_dir / f"{path.stem}{args.suffix}.png" for path in images}
    for path, out_path in out_paths.items():
        if out_path.resolve() == path.resolve():
            raise InferError(f"the output for {path} would overwrite it; choose another -o or a --suffix.")

    params = sum(p.numel() for p in loaded.net.parameters()) / 1e6
    key = f"[{loaded.param_key}]" if loaded.param_key else "(state dict)"
    print(
        f"{PROG}: {loaded.net_type} ({params:.2f}M parameters) x{loaded.scale}, weights {args.weights} {key}, "
        f"{device.type} {args.precision if amp_dtype else 'fp32'}; {len(images)} image(s) -> {out_dir}"
    )
    print(f"{PROG}: {scan_log_line(loaded.net, device)}")
    failed, results, first_input_of = 0, [], {}
    start = time.perf_counter()
    progress = tqdm(images, desc="infer", unit="img", dynamic_ncols=True, file=sys.stderr)
    for path in progress:
        out_path = out_paths[path]
        try:
            if out_path in first_input_of:
                raise ImageError(f"has the same stem as {first_input_of[out_path]}, whose output is {out_path}")
            first_input_of[out_path] = path
            result = _process(path, args, restorer, out_path, gt_paths.get(path.stem))
        except ImageError as err:
            _note(path, str(err))
            failed += 1
            continue
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            _note(path, "out of GPU memory; use --tile (e.g. --tile 256) or --precision fp16")
            failed += 1
            continue
        except Exception as err:  # one bad image must not stop the run
            detail = str(err).strip().splitlines()[0] if str(err).strip() else ""
            _note(path, f"failed: {type(err).__name__}: {detail}")
            failed += 1
            continue
        results.append(result)
        postfix = f"{path.name} {result.seconds:.2f}s"
        if result.psnr is not None:
            postfix += f" {result.psnr:.2f}dB"
        progress.set_postfix_str(postfix)
    progress.close()

    elapsed = time.perf_counter() - start
    rate = f"{len(results) / elapsed:.2f} images/s" if elapsed > 0 else "-"
    summary = f"{PROG}: {len(results)} restored, {failed} failed in {elapsed:.1f} s ({rate})"
    scored = [r for r in results if r.psnr is not None]
    if scored:
        mean_psnr = sum(r.psnr for r in scored) / len(scored)
        mean_baseline = sum(r.baseline_psnr for r in scored) / len(scored)
        baseline = "bicubic" if loaded.scale > 1 else "input"
        summary += f"; mean Y-PSNR of {len(scored)} with ground truth {mean_psnr:.2f} dB"
        summary += f" ({baseline} {mean_baseline:.2f} dB)"
    print(summary)
    return 1 if failed else 0


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


if __name__ == "__main__":
    sys.exit(main())
