"""``basicsr presets``: the named Serpent networks, their size and cost, as one Markdown table.

    basicsr presets [--family unet|sr]

Parameters are counted on the network the preset builds; GFLOPs are one forward pass counted on the meta
device by :mod:`serpent_arch.measure.flops` (a multiply-add = 2 FLOPs, the selective scan included), at the
size each family is used at: the SR family at x4 from 320x180 to a 1280x720 output (the convention of SR
papers), the U-Net family restoring a 512x512 image at its size (deblurring, denoising).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence

from serpent_arch.archs.presets import PRESETS

# family -> (upscale, input size (H, W), how the size is written in the table)
COUNTED_AT = {"sr": (4, (180, 320), "x4, 320×180 → 1280×720"), "unet": (1, (512, 512), "x1, 512×512")}


def preset_rows(family: str | None = None) -> list[dict]:
    """One row per preset (of ``family``, or all): name, family, parameters, GFLOPs, size counted at, use."""
    from serpent_arch.archs.build import build_network
    from serpent_arch.measure.flops import count_flops

    rows = []
    for name, preset in PRESETS.items():
        if family and preset.family != family:
            continue
        upscale, size, size_text = COUNTED_AT[preset.family]
        net_opt = {"type": "Serpent", "preset": name, "upscale": upscale}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            network = build_network(net_opt, meta=True)
            gflops = count_flops(network, size).total / 1e9
        params = sum(p.numel() for p in network.parameters())
        rows.append(dict(name=name, family=preset.family, params=params, gflops=gflops, at=size_text, use=preset.use))
    return rows


def markdown_table(rows: list[dict]) -> str:
    """The rows as the Markdown table the README shows."""
    lines = ["| preset | family | parameters | GFLOPs | counted at | for |", "|---|---|---:|---:|---|---|"]
    for row in rows:
        lines.append(
            f"| `{row['name']}` | {row['family']} | {row['params'] / 1e6:.2f}M | {row['gflops']:.1f} | {row['at']} "
            f"| {row['use']} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="basicsr presets", description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", choices=sorted({p.family for p in PRESETS.values()}), help="one family only")
    args = parser.parse_args(argv)
    print(markdown_table(preset_rows(args.family)))
    print(
        "\nnetwork_g: {type: Serpent, preset: NAME, upscale: S}; any structural key beside it overrides the "
        "preset's (docs/options.md)."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
