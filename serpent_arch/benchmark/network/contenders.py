"""The networks the benchmark compares: a builder for each (Serpent variants, SwinIR, RRDBNet) and the
default selections."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

SWINIR_EXPECTED_PARAMS_M = 11.5


def build_serpent(variant: str) -> Callable[[], nn.Module]:
    """Builder for a Serpent variant restoring at the input size."""

    def build() -> nn.Module:
        from serpent_arch.archs import Serpent

        return Serpent(preset=variant, upscale=1)

    return build


def build_swinir() -> nn.Module:
    """BasicSR's SwinIR in its ~11.5M-parameter restoration configuration (upscale 1, window 8).

    ``img_size=64`` is the training patch; at other sizes SwinIR recomputes its shift masks, so
    it only affects bookkeeping, not the FLOPs of a forward.
    """
    from basicsr.archs.swinir_arch import SwinIR

    return SwinIR(
        upscale=1,
        img_size=64,
        window_size=8,
        img_range=1.0,
        depths=[6] * 6,
        embed_dim=180,
        num_heads=[6] * 6,
        mlp_ratio=2,
        upsampler="",
        resi_connection="1conv",
    )


def build_rrdbnet() -> nn.Module:
    """ESRGAN's generator from BasicSR at scale 1: it pixel-unshuffles by 4, runs 23 RRDBs, upsamples 4x."""
    from basicsr.archs.rrdbnet_arch import RRDBNet

    return RRDBNet(num_in_ch=3, num_out_ch=3, scale=1, num_feat=64, num_block=23)


NETWORKS: dict[str, Callable[[], nn.Module]] = {
    "serpent-tiny": build_serpent("tiny"),
    "serpent-small": build_serpent("small"),
    "serpent-base": build_serpent("base"),
    "serpent-large": build_serpent("large"),
    "swinir": build_swinir,
    "rrdbnet": build_rrdbnet,
}
DEFAULT_SIZES = (128, 256, 512, 1024)
QUICK_NETWORKS = ("serpent-tiny", "rrdbnet")
QUICK_SIZES = (32, 64)
# Pair compared in the summary (Serpent first), as in the paper's claims.
DEFAULT_PAIR = ("serpent-base", "swinir")
QUICK_PAIR = ("serpent-tiny", "rrdbnet")
