"""Named Serpent networks (timm style): a preset is a complete network, every structural argument of
:class:`~serpent_arch.archs.serpent_arch.Serpent` given a value. ``network_g: {type: Serpent, preset: NAME}``
builds it; any key set beside the preset overrides that key alone.

Two families:

* ``unet``: the paper's full-resolution U-Net (4x4 patches, four scales). It restores at the image size, or
  resizes the input bicubically first for SR (``upsampler: interpolate``, how U-Net restorers do 8x face SR).
  For deblurring, denoising and the FFHQ x8 tasks.
* ``sr``: super-resolution at the LR size (one token per LR pixel embedded from its 3x3 neighbourhood, two
  scales, a depthwise 3x3 conv in every feed-forward network, the input's 15x15 local mean taken off, no
  LayerNorm after the embedding or before the output, ESRGAN's nearest x2 + conv upsampler, the global residual
  enlarged with MATLAB's bicubic kernel, the one SR's LR images are made with). The structure
  the equal-budget study (``study/README.md``) found best on CPU; the larger members scale its width and
  depth for GPU training on DF2K.

``basicsr presets`` prints the table of parameters and GFLOPs (``serpent_arch.presets_table``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Every structural argument and its value in the paper's ``base`` network. A preset lists what differs.
STRUCTURE: dict = dict(
    patch_size=4,
    embed_kernel=None,  # = patch_size
    embed_dim=64,
    depths=(2, 2, 2, 2),
    depths_decoder=None,  # = depths mirrored
    d_state=16,
    ssm_ratio=2.0,
    d_conv=3,
    dt_rank="auto",
    mlp_ratio=2.0,
    ffn_conv=0,
    embed_norm=True,
    out_norm=True,
    scale_norm=True,
    contrast_norm=0,
    contrast_norm_scale=True,
    resize_kernel="torch",
    upsampler="interpolate",
    upsampler_channels=None,  # = embed_dim
    scan_directions=4,
    drop_path_rate=0.1,
)

# The SR family's structure (the equal-budget study's leader, ``serpent-cffn-nc-amp-lmn15-e3-*``).
_SR = dict(
    patch_size=1,
    embed_kernel=3,
    embed_dim=48,
    ssm_ratio=1.0,
    mlp_ratio=4.0,
    ffn_conv=3,
    embed_norm=False,
    out_norm=False,
    contrast_norm=15,
    contrast_norm_scale=False,
    resize_kernel="matlab",
    upsampler="nearest+conv",
    drop_path_rate=0.0,
)


@dataclass(frozen=True)
class Preset:
    """One named network: its family, what it is for, and the structural arguments that differ from
    :data:`STRUCTURE`."""

    family: str
    use: str
    changes: dict = field(default_factory=dict)

    @property
    def structure(self) -> dict:
        """Every structural argument of this network."""
        return {**STRUCTURE, **self.changes}


PRESETS: dict[str, Preset] = {
    "tiny": Preset("unet", "CPU demos and tests", dict(embed_dim=24, depths=(1, 1, 1), depths_decoder=(1, 1))),
    "small": Preset("unet", "deblurring, denoising, FFHQ x8", dict(embed_dim=48)),
    "base": Preset("unet", "deblurring, denoising, FFHQ x8 (the paper's comparison with SwinIR)"),
    "large": Preset("unet", "deblurring, denoising, FFHQ x8", dict(embed_dim=96, depths=(2, 2, 4, 4))),
    "sr-tiny": Preset("sr", "the quick start (x4 SR on CPU in minutes)", dict(_SR, depths=(1, 1))),
    "sr-small": Preset("sr", "SR on CPU (the study's 10-minute leader)", dict(_SR, depths=(2, 1), depths_decoder=(1,))),
    "sr-base": Preset("sr", "lightweight SR on DF2K (GPU)", dict(_SR, embed_dim=64, depths=(4, 2))),
    "sr-large": Preset("sr", "classic SR on DF2K (GPU)", dict(_SR, embed_dim=96, depths=(6, 6), ssm_ratio=2.0)),
}
DEFAULT_PRESET = "base"


def preset_structure(name: str | None) -> dict:
    """The structural arguments of preset ``name`` (``None``: :data:`DEFAULT_PRESET`); a clear error for an
    unknown name."""
    name = DEFAULT_PRESET if name is None else name
    if name not in PRESETS:
        raise ValueError(f"Serpent: unknown preset {name!r}; choose one of {', '.join(PRESETS)} (`basicsr presets`).")
    return PRESETS[name].structure
