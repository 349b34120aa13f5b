"""The Serpent network: a U-shaped hierarchy of 2-D selective state space blocks.

Layout (docs/architecture.md, section 1): patch embedding -> encoder stages of Serpent blocks with patch merging
-> decoder stages with patch expanding and skips -> reconstruction at full resolution with a
global residual from the (upsampled) input. Tokens travel channels-last, (B, H, W, C).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from basicsr.utils.registry import ARCH_REGISTRY
from torch import nn

from serpent_arch.archs import upsamplers
from serpent_arch.archs.blocks import PatchExpanding, PatchMerging, Stage, pixel_shuffle_last
from serpent_arch.archs.contrast_norm import CONTRAST_EPS, local_contrast, local_mean

# Named sizes (timm style): a variant fills the structural arguments the user leaves unset.
# Parameter counts and GFLOPs of each are in the README (`python -m serpent_arch.benchmark`).
VARIANTS: dict[str, dict] = {
    "tiny": dict(patch_size=4, embed_dim=24, depths=(1, 1, 1), depths_decoder=(1, 1)),
    "small": dict(patch_size=4, embed_dim=48, depths=(2, 2, 2, 2), depths_decoder=(2, 2, 2)),
    "base": dict(patch_size=4, embed_dim=64, depths=(2, 2, 2, 2), depths_decoder=(2, 2, 2)),
    "large": dict(patch_size=4, embed_dim=96, depths=(2, 2, 4, 4), depths_decoder=(4, 2, 2)),
}
UPSAMPLERS = {
    "interpolate": None,
    "pixelshuffle": upsamplers.PixelShuffleUpsampler,
    "nearest+conv": upsamplers.NearestConvUpsampler,
    "pixelshuffle+conv": upsamplers.PixelShuffleConvUpsampler,
    "transposed+conv": upsamplers.TransposedConvUpsampler,
}


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom/right up to a multiple of ``multiple``.

    Reflect padding where the image is large enough (no artificial edges), replicate where it
    is not (reflect cannot pad more than the size - 1). Returns the padded tensor and the
    original (H, W) for cropping back.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = (-h) % multiple, (-w) % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < h and pad_w < w else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (h, w)


@ARCH_REGISTRY.register()
class Serpent(nn.Module):
    """Serpent: multi-scale, four-direction selective state space restoration network.

    Input (N, in_chans, H, W) with values in [0, img_range], any H and W; output
    (N, out_chans, H * upscale, W * upscale) in the same range.

    Args:
        variant: named size, ``tiny | small | base | large`` (see ``VARIANTS``). It fills
            ``patch_size``, ``embed_dim``, ``depths`` and ``depths_decoder``; any of those
            given explicitly overrides the variant. Default ``base``.
        in_chans: channels of the input image (1 grayscale, 3 RGB).
        out_chans: channels of the output; defaults to ``in_chans``. The global residual is
            used only when ``in_chans == out_chans``.
        upscale: super-resolution factor; 1 for restoration at the same size.
        upsampler: ``interpolate`` resizes the input bicubically to the target size first and
            restores at full size (how U-Net restorers do 8x face SR); ``pixelshuffle`` runs the
            network at input size and ends with conv + PixelShuffle (SwinIR-style classic SR);
            ``nearest+conv`` runs it at input size too and ends with nearest x2 + conv + LeakyReLU
            steps and a conv at the output size (SwinIR's real-world upsampler, ESRGAN's);
            ``pixelshuffle+conv`` ends with conv + PixelShuffle + LeakyReLU steps and a conv at the
            output size (SRResNet's upsampler); ``transposed+conv`` is ``nearest+conv`` with each step a
            stride-2 4x4 transposed conv whose taps start as a nearest x2 + 3x3 conv's and are then free.
            Ignored when ``upscale == 1``.
        upsampler_channels: width of the upsampler's
            convolutions (SwinIR's ``num_feat``); a conv maps ``embed_dim`` to it first. Default
            ``embed_dim``. Narrower makes the output-size convolutions cheaper.
        upsampler_channels_last: on CPU, run the upsampler and the last convolution on channels-last
            tensors, the layout in which oneDNN's convolutions are often faster (the same arithmetic up
            to rounding; the output is returned in NCHW). Default False: for the two-scale SR Serpent
            of the equal-budget record it saved nothing per training step (docs/equal_budget.md,
            "Memory format").
        upsampler_fused: with ``nearest+conv``, run every nearest x2 + conv step as one stride-2
            transposed convolution whose 4x4 taps are sums of the conv's 3x3 ones
            (:func:`~serpent_arch.archs.upsamplers.nearest_x2_conv`): the same function, weights and
            checkpoints, 4 instead of 9 multiply-adds per output pixel and channel. Default True; False
            runs upsample and conv as written (the reference it is tested against).
        img_range: value range of the images, e.g. 1.0 or 255.0; the network works on x / img_range.
        patch_size: side of the non-overlapping patches of the embedding (1, 2 or 4).
        embed_kernel: with ``patch_size`` 1, the kernel size of the embedding convolution (odd):
            3 embeds every pixel with its 3x3 neighbourhood, as SwinIR's and MambaIR's first conv
            does, instead of its colour alone. Default ``patch_size`` (one patch per token).
        embed_norm: LayerNorm over the channels of the embedded tokens (default True).
        out_norm: LayerNorm over the channels of the tokens leaving the decoder, before they
            return to pixels (default True). With both norms off, a token keeps its amplitude from
            the embedding to the output (the blocks are pre-norm: they normalise only what they read),
            so the restored detail can scale with the input's contrast as a CNN's does.
        scale_norm: LayerNorm in patch merging and patch expanding, between the scales (default True);
            False lets the coarser scales see the amplitude too.
        contrast_norm: side (odd, in input pixels) of a local contrast normalisation around the whole
            network; 0 (default) leaves it out. The network reads ``(x - mean) / std`` of every
            ``contrast_norm`` x ``contrast_norm`` neighbourhood and its correction is multiplied by that
            ``std`` (resized to the output) before the global residual adds the (upsampled) input: the
            output then follows the input's brightness and contrast exactly (``std`` is floored at
            ``CONTRAST_EPS`` of the image range), so a low-contrast or dark photo gets the correction
            its texture gets at full contrast, scaled down, as a piecewise-linear CNN's roughly is.
        contrast_norm_raw: with ``contrast_norm``, the network reads the input itself beside the normalised
            one (its first convolutions take 2 * in_chans channels), so it can still respond to brightness,
            colour and contrast; its correction is still in units of the local contrast. Default False.
        contrast_norm_scale: with ``contrast_norm``, False subtracts the local mean only: the network reads
            ``x - mean`` (the local detail at its own contrast, without the brightness and colour cast of the
            neighbourhood) and its correction is not rescaled. Default True.
        block_rescale: multiply every block's two updates by the standard deviation of the token
            their LayerNorm read (:class:`~serpent_arch.archs.blocks.SerpentBlock`), so each block
            is 1-homogeneous: its update scales with the token's amplitude. Default False.
        block_norm: False replaces the blocks' LayerNorms with a learned per-channel scale and shift
            (ResMLP's Affine), so every branch reads the token at its own amplitude. Default True.
        skip_scale: a learned per-channel scale (initialised to 1) on the residual stream of every
            block, s * x + update (MambaIR's skip scale). Default False.
        embed_dim: token width C of the finest scale; scale i has width C * 2**i.
        depths: number of Serpent blocks per encoder stage; its length is the number of scales.
        depths_decoder: blocks per decoder stage, in the order the decoder runs (coarsest
            first); length ``len(depths) - 1``. Defaults to the encoder's depths mirrored.
        d_state: state size N of the selective scan.
        ssm_ratio: inner width of SS2D as a multiple of the block width.
        d_conv: kernel size of SS2D's depthwise convolution.
        dt_rank: rank of the step-size projection; ``auto`` is ceil(width / 16).
        mlp_ratio: hidden width of the feed-forward network as a multiple of the block width;
            0 removes the feed-forward networks.
        ffn_conv: kernel size of a depthwise convolution inside every feed-forward network (local
            mixing beside the global scan); 0 (default) keeps the token-wise MLP.
        ffn_dense: make the feed-forward network's first layer a dense ``ffn_conv`` x ``ffn_conv``
            convolution (width -> hidden) instead of Linear + depthwise conv; default False.
        channel_attention: squeeze factor of a channel attention closing every feed-forward network
            (RCAN's, as in MambaIR's block); 0 (default) leaves it out.
        stage_conv: close every encoder and decoder stage with a residual dense 3x3 convolution
            (as SwinIR closes each residual group); default False.
        scan_directions: 1 (row-major), 2 (row-major both ways) or 4 (rows and columns both
            ways, the paper's cross-scan).
        drop_path_rate: stochastic depth rate, rising linearly to this value over the blocks.
        use_checkpoint: gradient checkpointing per block (less memory, ~30% more compute).
        scan_backend: selective scan implementation (see ``serpent_arch.ops.selective_scan``);
            ``auto`` picks the fastest available for the tensors' device.
    """

    def __init__(
        self,
        variant: str | None = None,
        in_chans: int = 3,
        out_chans: int | None = None,
        upscale: int = 1,
        upsampler: str = "interpolate",
        upsampler_channels: int | None = None,
        upsampler_channels_last: bool = False,
        upsampler_fused: bool = True,
        img_range: float = 1.0,
        patch_size: int | None = None,
        embed_kernel: int | None = None,
        embed_norm: bool = True,
        out_norm: bool = True,
        scale_norm: bool = True,
        contrast_norm: int = 0,
        contrast_norm_raw: bool = False,
        contrast_norm_scale: bool = True,
        block_rescale: bool = False,
        block_norm: bool = True,
        skip_scale: bool = False,
        embed_dim: int | None = None,
        depths: Sequence[int] | None = None,
        depths_decoder: Sequence[int] | None = None,
        d_state: int = 16,
        ssm_ratio: float = 2.0,
        d_conv: int = 3,
        dt_rank: int | str = "auto",
        mlp_ratio: float = 2.0,
        ffn_conv: int = 0,
        ffn_dense: bool = False,
        channel_attention: int = 0,
        stage_conv: bool = False,
        scan_directions: int = 4,
        drop_path_rate: float = 0.1,
        use_checkpoint: bool = False,
        scan_backend: str = "auto",
    ):
        super().__init__()
        config = resolve_config(variant, patch_size, embed_dim, depths, depths_decoder)
        patch_size, embed_dim = config["patch_size"], config["embed_dim"]
        depths, depths_decoder = config["depths"], config["depths_decoder"]
        out_chans = in_chans if out_chans is None else out_chans
        _check_args(in_chans, out_chans, upscale, upsampler, img_range, drop_path_rate)
        if upsampler_channels is not None and (not isinstance(upsampler_channels, int) or upsampler_channels < 1):
            raise ValueError(f"Serpent: upsampler_channels must be a positive integer, got {upsampler_channels!r}.")
        _check_contrast_norm(contrast_norm, contrast_norm_raw, contrast_norm_scale)

        self.variant = variant
        self.in_chans, self.out_chans = in_chans, out_chans
        self.upscale, self.upsampler = upscale, upsampler
        self.upsampler_channels_last = bool(upsampler_channels_last)
        self.img_range = float(img_range)
        self.patch_size = patch_size
        self.contrast_norm, self.contrast_eps = contrast_norm, CONTRAST_EPS
        self.contrast_norm_raw, self.contrast_norm_scale = bool(contrast_norm_raw), bool(contrast_norm_scale)
        body_chans = 2 * in_chans if contrast_norm_raw else in_chans
        self.num_scales = len(depths)
        self.pad_multiple = patch_size * 2 ** (self.num_scales - 1)
        widths = [embed_dim * 2**i for i in range(self.num_scales)]

        block_kw = dict(
            mlp_ratio=mlp_ratio,
            ffn_conv=ffn_conv,
            ffn_dense=ffn_dense,
            channel_attention=channel_attention,
            rescale=bool(block_rescale),
            norm=bool(block_norm),
            skip_scale=bool(skip_scale),
            d_state=d_state,
            ssm_ratio=ssm_ratio,
            d_conv=d_conv,
            dt_rank=dt_rank,
            scan_directions=scan_directions,
            scan_backend=scan_backend,
        )
        # Stochastic depth rises linearly over the encoder blocks; the decoder mirrors it.
        probs = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        enc_probs = [probs[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(self.num_scales)]

        self.shallow = nn.Conv2d(body_chans, embed_dim, 3, 1, 1)
        self.patch_embed = _patch_embedding(body_chans, embed_dim, patch_size, embed_kernel)
        self.embed_norm = nn.LayerNorm(embed_dim) if embed_norm else nn.Identity()

        self.encoder = nn.ModuleList()
        self.merges = nn.ModuleList()
        for i in range(self.num_scales):
            self.encoder.append(Stage(widths[i], depths[i], enc_probs[i], use_checkpoint, stage_conv, **block_kw))
            if i < self.num_scales - 1:
                self.merges.append(PatchMerging(widths[i], scale_norm))

        self.expands = nn.ModuleList()
        self.fuses = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for j, depth in enumerate(depths_decoder):
            scale_idx = self.num_scales - 2 - j
            width = widths[scale_idx]
            dec_probs = list(reversed(enc_probs[scale_idx]))[:depth]
            dec_probs += [dec_probs[-1] if dec_probs else 0.0] * (depth - len(dec_probs))
            self.expands.append(PatchExpanding(widths[scale_idx + 1], scale_norm))
            self.fuses.append(nn.Linear(2 * width, width))
            self.decoder.append(Stage(width, depth, dec_probs, use_checkpoint, stage_conv, **block_kw))
        self.out_norm = nn.LayerNorm(embed_dim) if out_norm else nn.Identity()

        # Tokens back to a full-resolution feature map, merged with the shallow features.
        self.unembed = nn.Linear(embed_dim, patch_size * patch_size * embed_dim)
        out_width = embed_dim
        if upscale > 1 and UPSAMPLERS[upsampler] is not None:
            out_width = upsampler_channels or embed_dim
            fused = {"fused": bool(upsampler_fused)} if upsampler == "nearest+conv" else {}
            self.upsample = nn.Sequential(
                nn.Conv2d(embed_dim, out_width, 3, 1, 1),
                nn.LeakyReLU(0.2, inplace=True),
                UPSAMPLERS[upsampler](upscale, out_width, **fused),
            )
        else:
            self.upsample = nn.Identity()
        self.conv_last = nn.Conv2d(out_width, out_chans, 3, 1, 1)
        self.apply(_init_weights)
        # Zero-init the last conv: an untrained network returns the (upsampled) input, so training
        # starts at the bicubic / identity baseline instead of below it and only has to learn the residual.
        if in_chans == out_chans:
            nn.init.zeros_(self.conv_last.weight)
            nn.init.zeros_(self.conv_last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, in_chans, H, W) -> (N, out_chans, H * upscale, W * upscale)."""
        if x.ndim != 4 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"Serpent expects input (N, {self.in_chans}, H, W) (in_chans={self.in_chans}), got shape "
                f"{tuple(x.shape)}; set network_g.in_chans to the number of image channels."
            )
        x = x / self.img_range
        if self.upscale > 1:
            mode = "bicubic" if x.shape[-2] > 1 and x.shape[-1] > 1 else "nearest"
            upsampled = F.interpolate(x, scale_factor=self.upscale, mode=mode, align_corners=False)
            if self.upsampler == "interpolate":
                x = upsampled
        else:
            upsampled = x
        out_h, out_w = upsampled.shape[-2:]
        scale = None  # the local contrast the correction is measured in (contrast_norm)
        if self.contrast_norm:
            if self.contrast_norm_scale:
                mean, scale = local_contrast(x, self.contrast_norm, self.contrast_eps)
                detail = (x - mean) / scale
            else:
                detail = x - local_mean(x, self.contrast_norm)
            detail = detail.to(x.dtype)
            x = torch.cat([detail, x], dim=1) if self.contrast_norm_raw else detail

        x, (h, w) = pad_to_multiple(x, self.pad_multiple)
        feat = self.restore_features(x)[..., :h, :w]
        channels_last = self.upsampler_channels_last and feat.device.type == "cpu"
        if channels_last:
            feat = feat.contiguous(memory_format=torch.channels_last)
        feat = self.upsample(feat)
        out = self.conv_last(feat)[..., :out_h, :out_w]
        if channels_last:
            out = out.contiguous()
        if scale is not None:
            if scale.shape[-2:] != out.shape[-2:]:
                scale = F.interpolate(scale, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = out * scale.to(out.dtype)
        if self.in_chans == self.out_chans:
            out = out + upsampled
        return out * self.img_range

    def restore_features(self, x: torch.Tensor) -> torch.Tensor:
        """Padded image (N, C_in, H, W) -> full-resolution features (N, embed_dim, H, W)."""
        tokens = self.embed_norm(self.patch_embed(x).permute(0, 2, 3, 1))
        skips = []
        for i, stage in enumerate(self.encoder):
            tokens = stage(tokens)
            if i < self.num_scales - 1:
                skips.append(tokens)
                tokens = self.merges[i](tokens)
        for expand, fuse, stage in zip(self.expands, self.fuses, self.decoder):
            tokens = fuse(torch.cat([expand(tokens), skips.pop()], dim=-1))
            tokens = stage(tokens)
        tokens = self.unembed(self.out_norm(tokens))
        feat = pixel_shuffle_last(tokens, self.patch_size).permute(0, 3, 1, 2)
        return feat + self.shallow(x)


def resolve_config(variant, patch_size, embed_dim, depths, depths_decoder) -> dict:
    """Merge a named variant with explicitly given structural arguments (explicit wins)."""
    if variant is None:
        variant = "base"
    if variant not in VARIANTS:
        raise ValueError(f"Serpent: unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}.")
    config = dict(VARIANTS[variant])
    explicit = dict(patch_size=patch_size, embed_dim=embed_dim, depths=depths, depths_decoder=depths_decoder)
    config.update({k: v for k, v in explicit.items() if v is not None})
    if depths is not None and depths_decoder is None:
        config["depths_decoder"] = tuple(reversed(depths[:-1]))
    config["depths"] = tuple(int(d) for d in config["depths"])
    config["depths_decoder"] = tuple(int(d) for d in config["depths_decoder"])

    if config["patch_size"] not in (1, 2, 4):
        raise ValueError(f"Serpent: patch_size must be 1, 2 or 4, got {config['patch_size']}.")
    if int(config["embed_dim"]) < 1 or config["embed_dim"] % 2:
        raise ValueError(f"Serpent: embed_dim must be a positive even number, got {config['embed_dim']}.")
    if not config["depths"] or min(config["depths"]) < 1:
        raise ValueError(f"Serpent: depths must be a non-empty list of positive ints, got {config['depths']}.")
    if len(config["depths_decoder"]) != len(config["depths"]) - 1 or min(config["depths_decoder"], default=1) < 1:
        raise ValueError(
            f"Serpent: depths_decoder must list {len(config['depths']) - 1} positive ints "
            f"(one per decoder stage, coarsest first), got {config['depths_decoder']}."
        )
    return config


def _patch_embedding(in_chans: int, embed_dim: int, patch_size: int, kernel: int | None) -> nn.Conv2d:
    """The image -> token convolution: non-overlapping ``patch_size`` patches, or with patch 1 an
    odd ``kernel`` x ``kernel`` neighbourhood per pixel."""
    if kernel is None or kernel == patch_size:
        return nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
    if patch_size != 1 or not isinstance(kernel, int) or kernel < 1 or kernel % 2 == 0:
        raise ValueError(
            f"Serpent: embed_kernel must be an odd positive kernel size with patch_size 1 (or equal patch_size), "
            f"got embed_kernel={kernel!r} with patch_size={patch_size}."
        )
    return nn.Conv2d(in_chans, embed_dim, kernel, 1, kernel // 2)


def _check_args(in_chans, out_chans, upscale, upsampler, img_range, drop_path_rate) -> None:
    if in_chans < 1 or out_chans < 1:
        raise ValueError(f"Serpent: in_chans and out_chans must be >= 1, got {in_chans}, {out_chans}.")
    if int(upscale) != upscale or upscale < 1:
        raise ValueError(f"Serpent: upscale must be a positive integer, got {upscale}.")
    if upsampler not in UPSAMPLERS:
        raise ValueError(f"Serpent: upsampler must be one of {', '.join(UPSAMPLERS)}, got {upsampler!r}.")
    if upscale > 1 and UPSAMPLERS[upsampler] is not None:
        UPSAMPLERS[upsampler](upscale, 1)  # validates the factor
    if img_range <= 0:
        raise ValueError(f"Serpent: img_range must be > 0, got {img_range}.")
    if not 0 <= drop_path_rate < 1:
        raise ValueError(f"Serpent: drop_path_rate must be in [0, 1), got {drop_path_rate}.")


def _check_contrast_norm(window, raw, scale) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 0 or (window and window % 2 == 0):
        raise ValueError(f"Serpent: contrast_norm must be 0 or an odd window side, got {window!r}.")
    if raw and not window:
        raise ValueError("Serpent: contrast_norm_raw needs contrast_norm (the window of the normalisation), got 0.")
    if not scale and not window:
        raise ValueError("Serpent: contrast_norm_scale false needs contrast_norm (the window of the mean), got 0.")


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
