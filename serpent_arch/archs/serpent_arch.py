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

from serpent_arch.archs import resize, tail, upsamplers
from serpent_arch.archs.blocks import PatchExpanding, PatchMerging, Stage, pixel_shuffle_last
from serpent_arch.archs.contrast_norm import CONTRAST_EPS, local_contrast, local_mean
from serpent_arch.archs.padding import pad_reflect_or_replicate
from serpent_arch.archs.presets import STRUCTURE, preset_structure

UPSAMPLERS = {
    "interpolate": None,
    "pixelshuffle": upsamplers.PixelShuffleUpsampler,
    "nearest+conv": upsamplers.NearestConvUpsampler,
}


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad (N, C, H, W) at the bottom/right up to a multiple of ``multiple``.

    Reflect padding where the image is large enough (no artificial edges), replicate where it
    is not (reflect cannot pad more than the size - 1). Returns the padded tensor and the
    original (H, W) for cropping back.
    """
    h, w = x.shape[-2:]
    # the padded size as multiple * ceil(size / multiple): an exported graph's reshapes see it divide
    pad_h, pad_w = (h + multiple - 1) // multiple * multiple - h, (w + multiple - 1) // multiple * multiple - w
    return pad_reflect_or_replicate(x, 0, pad_h, 0, pad_w), (h, w)


@ARCH_REGISTRY.register()
class Serpent(nn.Module):
    """Serpent: multi-scale, four-direction selective state space restoration network.

    Input (N, in_chans, H, W) with values in [0, img_range], any H and W; output
    (N, out_chans, H * upscale, W * upscale) in the same range.

    Args:
        preset: a named network (:data:`~serpent_arch.archs.presets.PRESETS`, ``basicsr presets``): the
            U-Net family ``tiny | small | base | large`` or the SR family ``sr-tiny | sr-small | sr-base |
            sr-large``. It gives every structural argument below; each one given explicitly overrides the
            preset's value. Default ``base``.
        variant: the former name of ``preset`` (option files that use it keep working).
        in_chans: channels of the input image (1 grayscale, 3 RGB).
        out_chans: channels of the output; defaults to ``in_chans``. The global residual is
            used only when ``in_chans == out_chans``.
        upscale: super-resolution factor; 1 for restoration at the same size.
        img_range: value range of the images, e.g. 1.0 or 255.0; the network works on x / img_range.
        upsampler_fused: with ``nearest+conv``, run every nearest x2 + conv step as one stride-2
            transposed convolution whose 4x4 taps are sums of the conv's 3x3 ones
            (:func:`~serpent_arch.archs.upsamplers.nearest_x2_conv`): the same function, weights and
            checkpoints, 4 instead of 9 multiply-adds per output pixel and channel. Default True; False
            runs upsample and conv as written (the reference it is tested against).
        use_checkpoint: gradient checkpointing per block (less memory, ~30% more compute).
        scan_backend: selective scan implementation (see ``serpent_arch.ops.selective_scan``);
            ``auto`` picks the fastest available for the tensors' device.

    Structural arguments (``None``: the preset's value):
        upsampler: ``interpolate`` resizes the input bicubically to the target size first and
            restores at full size (how U-Net restorers do 8x face SR); ``pixelshuffle`` runs the
            network at input size and ends with conv + PixelShuffle (SwinIR-style classic SR);
            ``nearest+conv`` runs it at input size too and ends with nearest x2 (x3 for upscale 3) + conv
            + LeakyReLU steps and a conv at the output size (SwinIR's real-world upsampler, ESRGAN's).
            Ignored when ``upscale == 1``.
        upsampler_channels: width of the upsampler's convolutions (SwinIR's ``num_feat``); a conv maps
            ``embed_dim`` to it first. Default ``embed_dim``.
        patch_size: side of the non-overlapping patches of the embedding (1, 2 or 4).
        embed_kernel: with ``patch_size`` 1, the kernel size of the embedding convolution (odd):
            3 embeds every pixel with its 3x3 neighbourhood, as SwinIR's and MambaIR's first conv
            does, instead of its colour alone. Default ``patch_size`` (one patch per token).
        embed_norm: LayerNorm over the channels of the embedded tokens.
        out_norm: LayerNorm over the channels of the tokens leaving the decoder, before they
            return to pixels. With both norms off, a token keeps its amplitude from the embedding to
            the output (the blocks are pre-norm: they normalise only what they read), so the restored
            detail can scale with the input's contrast as a CNN's does.
        scale_norm: LayerNorm in patch merging and patch expanding, between the scales.
        contrast_norm: side (odd, in input pixels) of a local normalisation around the whole network;
            0 leaves it out. The network reads ``(x - mean) / std`` of every ``contrast_norm`` x
            ``contrast_norm`` neighbourhood and its correction is multiplied by that ``std`` (resized to
            the output) before the global residual adds the (upsampled) input (``std`` is floored at
            ``CONTRAST_EPS`` of the image range).
        contrast_norm_scale: with ``contrast_norm``, False subtracts the local mean only: the network
            reads ``x - mean`` (the local detail at its own contrast, without the brightness and colour
            cast of the neighbourhood) and its correction is not rescaled.
        resize_kernel: the bicubic enlargement of the global residual (and of the ``interpolate``
            upsampler's input): ``torch`` is ``F.interpolate``'s (a = -0.75), ``matlab`` MATLAB ``imresize``'s
            (a = -0.5, symmetric borders), the kernel SR's LR images and "bicubic" baselines are made with
            (``archs/resize.py``). Ignored when ``upscale == 1``.
        embed_dim: token width C of the finest scale; scale i has width C * 2**i.
        depths: number of Serpent blocks per encoder stage; its length is the number of scales.
        depths_decoder: blocks per decoder stage, in the order the decoder runs (coarsest
            first); length ``len(depths) - 1``. Defaults to the encoder's depths mirrored (also when
            ``depths`` overrides a preset's).
        d_state: state size N of the selective scan.
        ssm_ratio: inner width of SS2D as a multiple of the block width.
        d_conv: kernel size of SS2D's depthwise convolution.
        dt_rank: rank of the step-size projection; ``auto`` is ceil(width / 16).
        mlp_ratio: hidden width of the feed-forward network as a multiple of the block width;
            0 removes the feed-forward networks.
        ffn_conv: kernel size of a depthwise convolution inside every feed-forward network (local
            mixing beside the global scan); 0 keeps the token-wise MLP.
        scan_directions: 1 (row-major), 2 (row-major both ways) or 4 (rows and columns both
            ways, the paper's cross-scan).
        drop_path_rate: stochastic depth rate, rising linearly to this value over the blocks.
    """

    def __init__(
        self,
        preset: str | None = None,
        in_chans: int = 3,
        out_chans: int | None = None,
        upscale: int = 1,
        img_range: float = 1.0,
        upsampler_fused: bool = True,
        use_checkpoint: bool = False,
        scan_backend: str = "auto",
        variant: str | None = None,
        upsampler: str | None = None,
        upsampler_channels: int | None = None,
        patch_size: int | None = None,
        embed_kernel: int | None = None,
        embed_norm: bool | None = None,
        out_norm: bool | None = None,
        scale_norm: bool | None = None,
        contrast_norm: int | None = None,
        contrast_norm_scale: bool | None = None,
        resize_kernel: str | None = None,
        embed_dim: int | None = None,
        depths: Sequence[int] | None = None,
        depths_decoder: Sequence[int] | None = None,
        d_state: int | None = None,
        ssm_ratio: float | None = None,
        d_conv: int | None = None,
        dt_rank: int | str | None = None,
        mlp_ratio: float | None = None,
        ffn_conv: int | None = None,
        scan_directions: int | None = None,
        drop_path_rate: float | None = None,
    ):
        arguments = dict(locals())  # the structural ones given (not None) override the preset's
        super().__init__()
        given = {key: value for key, value in arguments.items() if key in STRUCTURE and value is not None}
        config = resolve_config(preset, variant, given)
        self.preset = preset if preset is not None else variant
        self.config = config  # every structural argument of this network, for records and reports
        patch_size, embed_dim = config["patch_size"], config["embed_dim"]
        depths, depths_decoder = config["depths"], config["depths_decoder"]
        upsampler, upsampler_channels = config["upsampler"], config["upsampler_channels"]
        drop_path_rate = config["drop_path_rate"]
        out_chans = in_chans if out_chans is None else out_chans
        _check_args(in_chans, out_chans, upscale, upsampler, img_range, drop_path_rate)
        if upsampler_channels is not None and (not isinstance(upsampler_channels, int) or upsampler_channels < 1):
            raise ValueError(f"Serpent: upsampler_channels must be a positive integer, got {upsampler_channels!r}.")
        _check_contrast_norm(config["contrast_norm"], config["contrast_norm_scale"])
        if config["resize_kernel"] not in resize.RESIZE_KERNELS:
            raise ValueError(
                f"Serpent: resize_kernel must be one of {', '.join(resize.RESIZE_KERNELS)}, "
                f"got {config['resize_kernel']!r}."
            )
        self.resize_kernel = config["resize_kernel"]

        self.in_chans, self.out_chans = in_chans, out_chans
        self.upscale, self.upsampler = upscale, upsampler
        self.img_range = float(img_range)
        self.patch_size = patch_size
        self.contrast_norm, self.contrast_eps = config["contrast_norm"], CONTRAST_EPS
        self.contrast_norm_scale = bool(config["contrast_norm_scale"])
        self.num_scales = len(depths)
        self.pad_multiple = patch_size * 2 ** (self.num_scales - 1)
        widths = [embed_dim * 2**i for i in range(self.num_scales)]

        block_kw = dict(
            mlp_ratio=config["mlp_ratio"],
            ffn_conv=config["ffn_conv"],
            d_state=config["d_state"],
            ssm_ratio=config["ssm_ratio"],
            d_conv=config["d_conv"],
            dt_rank=config["dt_rank"],
            scan_directions=config["scan_directions"],
            scan_backend=scan_backend,
        )
        # Stochastic depth rises linearly over the encoder blocks; the decoder mirrors it.
        probs = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        enc_probs = [probs[sum(depths[:i]) : sum(depths[: i + 1])] for i in range(self.num_scales)]

        self.shallow = nn.Conv2d(in_chans, embed_dim, 3, 1, 1)
        self.patch_embed = _patch_embedding(in_chans, embed_dim, patch_size, config["embed_kernel"])
        self.embed_norm = nn.LayerNorm(embed_dim) if config["embed_norm"] else nn.Identity()

        scale_norm = bool(config["scale_norm"])
        self.encoder = nn.ModuleList()
        self.merges = nn.ModuleList()
        for i in range(self.num_scales):
            self.encoder.append(Stage(widths[i], depths[i], enc_probs[i], use_checkpoint, **block_kw))
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
            self.decoder.append(Stage(width, depth, dec_probs, use_checkpoint, **block_kw))
        self.out_norm = nn.LayerNorm(embed_dim) if config["out_norm"] else nn.Identity()

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
            upsampled = resize.upscale(x, self.upscale, self.resize_kernel)
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
            x = detail.to(x.dtype)

        x, (h, w) = pad_to_multiple(x, self.pad_multiple)
        tokens = self.restore_tokens(x)
        if tail.use_bands(self, tokens, h, w):
            out = tail.banded(self, tokens, x, h, w)[..., :out_h, :out_w]
        else:
            feat = self.upsample(self.features_from_tokens(tokens, x)[..., :h, :w])
            out = self.conv_last(feat)[..., :out_h, :out_w]
        if scale is not None:
            if scale.shape[-2:] != out.shape[-2:]:
                scale = F.interpolate(scale, size=out.shape[-2:], mode="bilinear", align_corners=False)
            out = out * scale.to(out.dtype)
        if self.in_chans == self.out_chans:
            out = out + upsampled
        return out * self.img_range

    def restore_features(self, x: torch.Tensor) -> torch.Tensor:
        """Padded image (N, C_in, H, W) -> full-resolution features (N, embed_dim, H, W)."""
        return self.features_from_tokens(self.restore_tokens(x), x)

    def features_from_tokens(self, tokens: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The decoder's tokens (N, H / patch, W / patch, embed_dim) and the padded image (N, C_in, H, W), or
        the same rows of both -> full-resolution features (N, embed_dim, H, W): the tokens unembedded, plus the
        shallow features of the image."""
        feat = pixel_shuffle_last(self.unembed(tokens), self.patch_size).permute(0, 3, 1, 2)
        # feat is channels-last (a view of the tokens' layout): the shallow conv is run in that layout too (its
        # input has a few channels, a cheap copy), so that its backward does not copy the full-resolution
        # gradient into NCHW (16 MiB and ~10 ms per 256x256 training step on two cores)
        return feat + self.shallow(x.contiguous(memory_format=torch.channels_last))

    def restore_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Padded image (N, C_in, H, W) -> the decoder's output tokens (N, H / patch, W / patch, embed_dim),
        after the output norm."""
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
        return self.out_norm(tokens)


def resolve_config(preset: str | None, variant: str | None, given: dict) -> dict:
    """Every structural argument: the preset's (``variant`` is its former name), with those ``given`` explicitly
    winning; checked."""
    if preset is not None and variant is not None and preset != variant:
        raise ValueError(
            f"Serpent: preset {preset!r} and variant {variant!r} both given; variant is the former name of preset."
        )
    config = {**preset_structure(preset if preset is not None else variant), **given}
    if "depths" in given and "depths_decoder" not in given:
        config["depths_decoder"] = None  # mirror the depths given, not the preset's decoder
    if config["depths_decoder"] is None and config["depths"]:
        config["depths_decoder"] = tuple(reversed(config["depths"][:-1]))
    try:
        config["depths"] = tuple(int(d) for d in config["depths"])
        config["depths_decoder"] = tuple(int(d) for d in config["depths_decoder"])
    except (TypeError, ValueError):
        raise ValueError(
            f"Serpent: depths and depths_decoder must be lists of ints, got {config['depths']!r}, "
            f"{config['depths_decoder']!r}."
        ) from None

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


def _check_contrast_norm(window, scale) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 0 or (window and window % 2 == 0):
        raise ValueError(f"Serpent: contrast_norm must be 0 or an odd window side, got {window!r}.")
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
