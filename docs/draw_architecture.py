"""Draw the Serpent network as a block diagram, read from the network itself.

    python docs/draw_architecture.py --preset tiny --out docs/serpent_tiny.png
    python docs/draw_architecture.py --preset base --upsampler pixelshuffle --size 128 \\
        --out docs/serpent_base_pixelshuffle.png

The network is built from ``network_g``-style arguments through BasicSR's ``ARCH_REGISTRY`` (the
project's one builder, :func:`serpent_arch.archs.build.build_network`), moved to the meta device
and run once on an input of ``--size`` with forward hooks on its modules. Every stage, width,
depth, patch size, resampling step and shape in the picture is read from the modules and from the
tensors that passed through them (:func:`walk`); nothing is copied from the preset table, so the
picture follows the code. The meta device computes shapes only, so any preset and size takes a
second. ``docs/architecture.md`` shows the pictures this script draws.
"""

from __future__ import annotations

import argparse
import io
import sys
from dataclasses import dataclass

import torch
import yaml
from matplotlib.figure import Figure  # not pyplot: no display backend, no global figure state
from matplotlib.patches import FancyBboxPatch
from PIL import Image
from torch import nn

import serpent_arch  # noqa: F401  (applies the BasicSR fixes and registers Serpent in ARCH_REGISTRY)
from serpent_arch.archs import Serpent
from serpent_arch.archs.build import NetworkOptionError, build_network


@dataclass
class StageInfo:
    """One run of Serpent blocks, as found in the module (``Stage``) and its output tensor."""

    depth: int
    width: int
    d_inner: int
    d_state: int
    directions: int
    ffn_hidden: int  # 0: no feed-forward network
    shape: tuple[int, ...]  # tokens (B, h, w, C)


@dataclass
class Walk:
    """What :func:`walk` read from a Serpent network for one input. Shapes are as the tensors had
    them: images (B, C, H, W), tokens channels-last (B, h, w, C)."""

    preset: str
    params: int
    in_chans: int
    out_chans: int
    upscale: int
    upsampler: str
    input_shape: tuple[int, ...]
    padded_shape: tuple[int, ...]
    pad_multiple: int
    patch_size: int
    embed_shape: tuple[int, ...]
    encoder: list[StageInfo]
    merges: list[tuple[tuple[int, ...], tuple[int, ...]]]  # (in, out) tokens
    expands: list[tuple[tuple[int, ...], tuple[int, ...]]]  # (in, out) tokens, decoder order
    fuses: list[tuple[int, int]]  # (in, out) features, decoder order
    decoder: list[StageInfo]  # coarsest first, as the decoder runs
    unembed_shape: tuple[int, ...]  # tokens (B, h, w, p*p*C) before the pixel shuffle back to pixels
    shallow_shape: tuple[int, ...]
    cropped_shape: tuple[int, ...]  # features with the padding cropped off
    upsample_factors: list[int]  # PixelShuffle factors; empty: no PixelShuffle upsampler
    upsample_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    residual: bool  # the global residual (in_chans == out_chans)


def _stage_info(stage: nn.Module, shape: tuple[int, ...]) -> StageInfo:
    block = stage.blocks[0]
    return StageInfo(
        depth=len(stage.blocks),
        width=block.norm1.normalized_shape[0],
        d_inner=block.ss2d.d_inner,
        d_state=block.ss2d.d_state,
        directions=block.ss2d.directions,
        ffn_hidden=block.ffn.fc1.out_features if block.has_ffn else 0,
        shape=shape,
    )


def walk(net_opt: dict, size: tuple[int, int]) -> Walk:
    """Build ``net_opt`` (a ``network_g`` mapping, ``type: Serpent``) and run it on the meta device
    on a (1, in_chans, H, W) input; return what each part of the U-Net is and the shapes it saw."""
    net = build_network(net_opt, meta=True).to("meta").eval()
    if not isinstance(net, Serpent):
        raise SystemExit(f"draw_architecture: network_g.type {net_opt['type']!r} is not a Serpent network")
    seen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}

    def record(name):
        def hook(module, inputs, output):
            seen[name] = (tuple(inputs[0].shape), tuple(output.shape))

        return hook

    for name, module in net.named_modules():
        if name and name.count(".") <= 1:  # the network's parts and each stage / merge / expand
            module.register_forward_hook(record(name))
    with torch.no_grad():
        output = net(torch.empty(1, net.in_chans, *size, device="meta"))

    scales = net.num_scales
    factors = [m.upscale_factor for m in net.upsample.modules() if isinstance(m, nn.PixelShuffle)]
    return Walk(
        preset=str(net_opt.get("preset") or "base"),
        params=sum(p.numel() for p in net.parameters()),
        in_chans=net.in_chans,
        out_chans=net.out_chans,
        upscale=net.upscale,
        upsampler=net.upsampler,
        input_shape=(1, net.in_chans, *size),
        padded_shape=seen["patch_embed"][0],
        pad_multiple=net.pad_multiple,
        patch_size=net.patch_embed.kernel_size[0],
        embed_shape=seen["embed_norm"][1],
        encoder=[_stage_info(net.encoder[i], seen[f"encoder.{i}"][1]) for i in range(scales)],
        merges=[seen[f"merges.{i}"] for i in range(scales - 1)],
        expands=[seen[f"expands.{j}"] for j in range(len(net.decoder))],
        fuses=[(f.in_features, f.out_features) for f in net.fuses],
        decoder=[_stage_info(net.decoder[j], seen[f"decoder.{j}"][1]) for j in range(len(net.decoder))],
        unembed_shape=seen["unembed"][1],
        shallow_shape=seen["shallow"][1],
        cropped_shape=seen["upsample"][0],
        upsample_factors=factors,
        upsample_shape=seen["upsample"][1] if net.upscale > 1 and net.upsampler != "interpolate" else (),
        output_shape=tuple(output.shape),
        residual=net.in_chans == net.out_chans,
    )


# ---- drawing ---------------------------------------------------------------------------------

BOX_W = 5.0  # data units; the figure maps one unit to UNIT_INCH inches
LINE_H, TITLE_H = 0.245, 0.52  # a box is TITLE_H + LINE_H per detail line high
UNIT_INCH = 0.62
X_LEFT, X_MID, X_RIGHT = 0.0, 5.7, 11.4
ROW = 1.6  # vertical pitch of the chains above the finest scale
CHAIN_START = 0.45  # the chains start this far above the finest stage (its box is taller)
SCALE_ROW = 3.3  # vertical pitch between scales (a stage, then its merge / expand box)
COLORS = {
    "io": "#eeeeee",
    "pre": "#fdf1d6",
    "encoder": "#d6e6f7",
    "resample": "#fbe0c8",
    "decoder": "#d8f0d4",
    "post": "#ece0f5",
}


def hwc(shape: tuple[int, ...], channels_last: bool = False) -> str:
    """A shape of batch 1 as height x width x channels."""
    if channels_last:
        _, h, w, c = shape
    else:
        _, c, h, w = shape
    return f"{h}\u00d7{w}\u00d7{c}"


class Canvas:
    """Boxes with a bold title and detail lines, joined by orthogonal arrows."""

    def __init__(self):
        self.fig = Figure()
        self.ax = self.fig.add_subplot()
        self.boxes: dict[str, tuple[float, float, float]] = {}  # key -> x, y (centre), height

    def box(self, key: str, x: float, y: float, title: str, lines: list[str], kind: str) -> None:
        h = TITLE_H + LINE_H * len(lines)
        self.boxes[key] = (x, y, h)
        self.ax.add_patch(
            FancyBboxPatch(
                (x - BOX_W / 2, y - h / 2),
                BOX_W,
                h,
                boxstyle="round,pad=0,rounding_size=0.15",
                facecolor=COLORS[kind],
                edgecolor="#555555",
                linewidth=0.9,
            )
        )
        self.ax.text(x, y + h / 2 - 0.1, title, ha="center", va="top", fontsize=8.2, fontweight="bold")
        self.ax.text(x, y + h / 2 - 0.4, "\n".join(lines), ha="center", va="top", fontsize=7.2, linespacing=1.25)

    def edge(self, key: str, side: str) -> tuple[float, float]:
        x, y, h = self.boxes[key]
        dx, dy = {"top": (0, h / 2), "bottom": (0, -h / 2), "left": (-BOX_W / 2, 0), "right": (BOX_W / 2, 0)}[side]
        return x + dx, y + dy

    def arrow(self, points: list[tuple[float, float]], style: str = "-", color: str = "#333333", label: str = ""):
        """A polyline through ``points`` with an arrowhead at the last one."""
        xs, ys = zip(*points)
        self.ax.plot(xs, ys, linestyle=style, color=color, linewidth=1.1, zorder=0)
        self.ax.annotate(
            "",
            xy=points[-1],
            xytext=points[-2],
            arrowprops=dict(arrowstyle="-|>", color=color, linewidth=1.1, mutation_scale=11, shrinkA=0, shrinkB=0),
        )
        if label and abs(points[-1][0] - points[-2][0]) > 2.5:  # on a long horizontal last segment only
            (x0, y0), (x1, y1) = points[-2], points[-1]
            self.ax.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.1, label, ha="center", va="bottom", fontsize=7, color=color)

    def down(self, upper: str, lower: str) -> None:
        self.arrow([self.edge(upper, "bottom"), self.edge(lower, "top")])

    def up(self, lower: str, upper: str) -> None:
        self.arrow([self.edge(lower, "top"), self.edge(upper, "bottom")])


def _stage_lines(stage: StageInfo, first: str) -> list[str]:
    ffn = f"FFN {stage.ffn_hidden}" if stage.ffn_hidden else "no FFN"
    return [
        first,
        f"width C = {stage.width}, {ffn}",
        f"SS2D: D_in {stage.d_inner}, N {stage.d_state}, {stage.directions} scan directions",
        f"tokens {hwc(stage.shape, channels_last=True)}",
    ]


def _draw_input_side(canvas: Canvas, w: Walk) -> None:
    """Left column above the finest scale: input, (bicubic), padding, patch embedding; and the
    shallow convolution beside it."""
    c0, p, scales = w.encoder[0].width, w.patch_size, len(w.encoder)
    rows = [
        (
            "embed",
            "Patch embedding",
            [
                f"Conv {p}\u00d7{p}, stride {p}, {w.in_chans}\u2192{c0}; LayerNorm",
                f"tokens {hwc(w.embed_shape, channels_last=True)}",
            ],
            "pre",
        ),
        (
            "pad",
            f"Pad to a multiple of {w.pad_multiple}",
            [
                f"patch {p} \u00d7 $2^{{{scales - 1}}}$ (one halving per scale)",
                f"{_pad_mode(w)}: {hwc(w.padded_shape)}",
            ],
            "pre",
        ),
    ]
    if w.upscale > 1 and w.upsampler == "interpolate":
        rows.append(
            (
                "bicubic",
                f"Bicubic \u00d7{w.upscale}",
                ["upsampler interpolate: restore", f"at full size, {hwc(_upsampled(w))}"],
                "pre",
            )
        )
    rows.append(("input", "Input", [hwc(w.input_shape), "values in [0, img_range]"], "io"))
    for i, (key, title, lines, kind) in enumerate(rows):
        canvas.box(key, X_LEFT, CHAIN_START + (i + 1) * ROW, title, lines, kind)
    for (lower, *_), (upper, *_) in zip(rows, rows[1:]):
        canvas.down(upper, lower)

    y_pad = canvas.boxes["pad"][1]
    canvas.box(
        "shallow",
        X_MID,
        y_pad,
        "Shallow conv 3\u00d73",
        [f"{w.in_chans}\u2192{c0} on the padded input", hwc(w.shallow_shape)],
        "pre",
    )
    canvas.arrow([canvas.edge("pad", "right"), canvas.edge("shallow", "left")])


def _upsampled(w: Walk) -> tuple[int, ...]:
    return (1, w.in_chans, w.input_shape[2] * w.upscale, w.input_shape[3] * w.upscale)


def _pad_mode(w: Walk) -> str:
    """The padding ``pad_to_multiple`` uses for this input: reflect unless the image is too small."""
    before = _upsampled(w) if w.upscale > 1 and w.upsampler == "interpolate" else w.input_shape
    pads = [after - size for after, size in zip(w.padded_shape[2:], before[2:])]
    if not any(pads):
        return "no padding needed"
    return "reflect" if all(pad < size for pad, size in zip(pads, before[2:])) else "replicate"


def _draw_output_side(canvas: Canvas, w: Walk) -> None:
    """Right column above the finest scale: tokens back to pixels, the shallow features added,
    (the PixelShuffle upsampler), the last conv with the global residual, the output."""
    c0, p = w.encoder[0].width, w.patch_size
    _, h, wd, pc = w.unembed_shape
    rows = [
        (
            "unembed",
            "Tokens to pixels",
            [
                f"LayerNorm, Linear {c0}\u2192{pc} ({p}\u00b2 \u00d7 {c0}),",
                f"pixel shuffle \u00d7{p}:",
                f"{h}\u00d7{wd}\u00d7{pc} \u2192 {h * p}\u00d7{wd * p}\u00d7{pc // (p * p)}",
            ],
            "post",
        ),
        ("add_shallow", "+ shallow features, crop", ["the padding is cropped off:", hwc(w.cropped_shape)], "post"),
    ]
    if w.upscale > 1 and w.upsampler == "nearest+conv":
        n = w.upscale.bit_length() - 1
        steps = f"{n} \u00d7 (nearest \u00d72, Conv 3\u00d73, LeakyReLU),"
        rows.append(
            (
                "upsample",
                f"nearest+conv upsampler \u00d7{w.upscale}",
                ["Conv 3\u00d73, LeakyReLU, then", steps, f"Conv 3\u00d73, LeakyReLU: {hwc(w.upsample_shape)}"],
                "post",
            )
        )
    elif w.upsample_factors:
        f = w.upsample_factors[0]  # PixelShuffleUpsampler repeats one factor (2 for 2^n, or a single 3)
        steps = f"{len(w.upsample_factors)} \u00d7 (Conv 3\u00d73 \u2192 {f * f}C, PixelShuffle \u00d7{f})"
        rows.append(
            (
                "upsample",
                f"PixelShuffle upsampler \u00d7{w.upscale}",
                ["Conv 3\u00d73, LeakyReLU, then", steps, hwc(w.upsample_shape)],
                "post",
            )
        )
    if w.residual:
        rows.append(
            (
                "conv_last",
                f"Conv 3\u00d73 \u2192 {w.out_chans}, + global residual",
                ["zero-initialised, so an untrained", "network returns the (upsampled) input"],
                "post",
            )
        )
    else:
        rows.append(
            (
                "conv_last",
                f"Conv 3\u00d73 \u2192 {w.out_chans}",
                ["no global residual", "(in_chans \u2260 out_chans)"],
                "post",
            )
        )
    rows.append(("output", "Output", [hwc(w.output_shape), f"\u00d7{w.upscale} the input"], "io"))
    for i, (key, title, lines, kind) in enumerate(rows):
        canvas.box(key, X_RIGHT, CHAIN_START + (i + 1) * ROW, title, lines, kind)
    for (lower, *_), (upper, *_) in zip(rows, rows[1:]):
        canvas.up(lower, upper)

    # The shallow features join at full resolution.
    x_turn = X_RIGHT - BOX_W / 2 - 0.3
    y_from, y_to = canvas.boxes["shallow"][1], canvas.boxes["add_shallow"][1]
    canvas.arrow(
        [canvas.edge("shallow", "right"), (x_turn, y_from), (x_turn, y_to), canvas.edge("add_shallow", "left")]
    )

    if not w.residual:
        return
    # The global residual: the bicubic-upsampled input (the input itself at upscale 1), on the row
    # of the last conv. Under pixelshuffle the bicubic image serves the residual only.
    y_last = canvas.boxes["conv_last"][1]
    if "bicubic" in canvas.boxes:
        source = "bicubic"
    elif w.upscale > 1:
        canvas.box(
            "bicubic",
            X_MID,
            y_last,
            f"Bicubic \u00d7{w.upscale}",
            ["of the input, for the global", f"residual only: {hwc(_upsampled(w))}"],
            "pre",
        )
        x_in, y_in = canvas.edge("input", "top")
        canvas.arrow([(x_in, y_in), (x_in, y_last), canvas.edge("bicubic", "left")])
        source = "bicubic"
    else:
        source = "input"
    start, end = canvas.edge(source, "right"), canvas.edge("conv_last", "left")
    if abs(start[1] - end[1]) > 1e-6:  # rows differ: turn in the gap before the right column
        x_turn = X_RIGHT - BOX_W / 2 - 0.3
        points = [start, (x_turn, start[1]), (x_turn, end[1]), end]
    else:
        points = [start, end]
    canvas.arrow(points, style="--", color="#8a5a00", label="global residual")


def _draw_u(canvas: Canvas, w: Walk) -> None:
    """Encoder stages down the left, the coarsest stage in the middle, the decoder up the right,
    with skips across."""
    scales = len(w.encoder)
    y_scale = [-s * SCALE_ROW for s in range(scales)]
    for s, stage in enumerate(w.encoder):
        coarsest = s == scales - 1
        title = f"Encoder stage {s}" + (" (coarsest)" if coarsest and scales > 1 else "")
        canvas.box(
            f"enc{s}",
            X_MID if coarsest else X_LEFT,
            y_scale[s],
            title,
            _stage_lines(stage, f"{stage.depth} \u00d7 Serpent block"),
            "encoder",
        )
    if scales > 1:
        canvas.down("embed", "enc0")
    else:  # a single scale sits in the middle
        x_e, y_e = canvas.edge("embed", "bottom")
        canvas.arrow([(x_e, y_e), (x_e, y_scale[0]), canvas.edge("enc0", "left")])
        x_u, y_u = canvas.edge("unembed", "bottom")
        canvas.arrow([canvas.edge("enc0", "right"), (x_u, y_scale[0]), (x_u, y_u)])

    for s, (shape_in, shape_out) in enumerate(w.merges):
        c = shape_in[-1]
        canvas.box(
            f"merge{s}",
            X_LEFT,
            y_scale[s] - SCALE_ROW / 2,
            "PatchMerging (2\u00d7 down)",
            [
                f"2\u00d72 neighbours, LN({4 * c}), Linear {4 * c}\u2192{2 * c}",
                f"{hwc(shape_in, True)} \u2192 {hwc(shape_out, True)}",
            ],
            "resample",
        )
        canvas.down(f"enc{s}", f"merge{s}")
        if s + 1 < scales - 1:
            canvas.down(f"merge{s}", f"enc{s + 1}")
        else:
            x_m, y_m = canvas.edge(f"merge{s}", "bottom")
            canvas.arrow([(x_m, y_m), (x_m, y_scale[s + 1]), canvas.edge(f"enc{s + 1}", "left")])

    for j, (stage, (shape_in, shape_out), (f_in, f_out)) in enumerate(zip(w.decoder, w.expands, w.fuses)):
        s = scales - 2 - j  # the decoder runs coarsest first
        c = shape_in[-1]
        canvas.box(
            f"expand{s}",
            X_RIGHT,
            y_scale[s] - SCALE_ROW / 2,
            "PatchExpanding (2\u00d7 up)",
            [
                f"Linear {c}\u2192{2 * c}, pixel shuffle 2, LN({c // 2})",
                f"{hwc(shape_in, True)} \u2192 {hwc(shape_out, True)}",
            ],
            "resample",
        )
        canvas.box(
            f"dec{s}",
            X_RIGHT,
            y_scale[s],
            f"Decoder stage {s}",
            _stage_lines(stage, f"concat skip, Linear {f_in}\u2192{f_out}; {stage.depth} \u00d7 block"),
            "decoder",
        )
        canvas.up(f"expand{s}", f"dec{s}")
        if s + 1 == scales - 1:
            x_b, y_b = canvas.edge(f"enc{s + 1}", "right")
            x_x, y_x = canvas.edge(f"expand{s}", "bottom")
            canvas.arrow([(x_b, y_b), (x_x, y_b), (x_x, y_x)])
        else:
            canvas.up(f"dec{s + 1}", f"expand{s}")
        canvas.arrow(
            [canvas.edge(f"enc{s}", "right"), canvas.edge(f"dec{s}", "left")],
            style="--",
            color="#6a3d9a",
            label=f"skip {hwc(w.encoder[s].shape, True)}",
        )
    if scales > 1:
        canvas.up("dec0", "unembed")


def draw(w: Walk, out: str, dpi: int = 150) -> None:
    """Draw the U-Net of :func:`walk`'s result into ``out`` (any format matplotlib writes)."""
    canvas = Canvas()
    _draw_input_side(canvas, w)
    _draw_output_side(canvas, w)
    _draw_u(canvas, w)

    upsampler = w.upsampler if w.upscale > 1 else "none (upscale 1)"
    canvas.ax.set_title(
        f"Serpent '{w.preset}': {w.params / 1e6:.2f}M parameters, upscale \u00d7{w.upscale}, upsampler {upsampler}, "
        f"input {hwc(w.input_shape)}\nshapes are height \u00d7 width \u00d7 channels of one image, read from a "
        "forward pass of the built network",
        fontsize=9,
    )
    bottom_box = min(y - h / 2 for _, y, h in canvas.boxes.values())
    canvas.ax.text(
        (X_LEFT + X_RIGHT) / 2,
        bottom_box - 0.3,
        "Serpent block: x = x + DropPath(SS2D(LN(x))), then x = x + DropPath(FFN(LN(x))).\n"
        "SS2D: Linear C\u21922 D_in gives x and the gate z; x: depthwise conv, SiLU, cross-scan into K sequences,\n"
        "selective scan, cross-merge, LayerNorm; \u00d7 SiLU(z); Linear D_in\u2192C.  Details: docs/architecture.md",
        ha="center",
        va="top",
        fontsize=7.2,
        color="#333333",
    )
    top = max(y + h / 2 for _, y, h in canvas.boxes.values()) + 0.2
    bottom = bottom_box - 1.3
    x0, x1 = X_LEFT - BOX_W / 2 - 0.2, X_RIGHT + BOX_W / 2 + 0.2
    canvas.ax.set_xlim(x0, x1)
    canvas.ax.set_ylim(bottom, top)
    canvas.ax.set_aspect("equal")
    canvas.ax.axis("off")
    canvas.fig.set_size_inches((x1 - x0) * UNIT_INCH, (top - bottom) * UNIT_INCH + 0.5)
    if not out.lower().endswith(".png"):
        canvas.fig.savefig(out, dpi=dpi, bbox_inches="tight")
        return
    # A few flat colours and anti-aliased text: a 96-colour palette keeps the picture as it is and
    # makes the committed file about 3x smaller than matplotlib's RGBA.
    buffer = io.BytesIO()
    canvas.fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    Image.open(buffer).convert("RGB").quantize(96).save(out, optimize=True)


def _parse_set(entries: list[str]) -> dict:
    options = {}
    for entry in entries:
        key, sep, value = entry.partition("=")
        if not sep or not key:
            raise SystemExit(f"draw_architecture: --set {entry!r}: expected KEY=VALUE (a network_g option)")
        options[key.strip()] = yaml.safe_load(value)
    return options


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="tiny", help="Serpent preset (basicsr presets lists them)")
    parser.add_argument("--upscale", type=int, default=4, help="super-resolution factor (1: same-size restoration)")
    parser.add_argument("--upsampler", default=None, help="interpolate, pixelshuffle or nearest+conv (default: preset)")
    parser.add_argument("--size", type=int, nargs="+", default=[64], help="input H [W] in pixels (default 64)")
    parser.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE", help="other network_g options")
    parser.add_argument("--out", required=True, help="image file to write (.png, .svg, .pdf)")
    parser.add_argument("--dpi", type=int, default=150)
    args = parser.parse_args(argv)
    if len(args.size) not in (1, 2) or min(args.size) < 1:
        parser.error(f"--size: expected H or H W, positive, got {args.size}")
    size = (args.size[0], args.size[-1])
    net_opt = dict(type="Serpent", preset=args.preset, upscale=args.upscale)
    if args.upsampler:
        net_opt["upsampler"] = args.upsampler
    net_opt.update(_parse_set(args.set))
    try:
        walked = walk(net_opt, size)
    except NetworkOptionError as err:  # e.g. --preset huge: the network's own message
        parser.error(str(err))
    draw(walked, args.out, args.dpi)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
