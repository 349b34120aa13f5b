"""The Serpent configurations of the equal-budget study (study/README.md, "Making Serpent win").

Every variant tried keeps its entry, so each row of the log (study/README.md) keeps its name and its
``network_g``, and can be rerun by name (``python -m study budget --networks NAME``); the comment above an
entry says what it tests. ``study.contenders`` adds BasicSR's networks and writes the option files.

Serpent has since lost the switches and upsamplers the study rejected (``REMOVED_OPTIONS``,
``REMOVED_UPSAMPLERS``). The candidates that used one are record-only (``RECORD_ONLY``): their recorded runs,
throughput, parameters and GFLOPs still fill the tables, but the budget command refuses to train, test or
time them (``refuse_record_only``).
"""

from __future__ import annotations


def _serpent_lr(upsampler: str = "pixelshuffle", **structure) -> dict:
    """x4 Serpent at the LR size: tiny's hierarchy, one token per LR pixel, conv + PixelShuffle at the end.

    ``nearest+conv`` candidates run their upsampler as written (``upsampler_fused: false``) unless they say
    otherwise: their times per iteration were recorded before the fused upsampler existed, and a later
    sitting times a new network beside a recorded one, which must still run the code its record timed.
    """
    if upsampler == "nearest+conv":
        structure = {"upsampler_fused": False, **structure}
    return dict(
        type="Serpent",
        preset="tiny",
        patch_size=1,
        **structure,
        upscale=4,
        upsampler=upsampler,
        drop_path_rate=0.0,
    )


def _cffn(upsampler: str = "pixelshuffle", **changes) -> dict:
    """serpent-cffn-lr's structure (C 48, a depthwise 3x3 conv in every FFN, the inner width in the FFN:
    ssm_ratio 1, mlp_ratio 4) with ``upsampler`` and ``changes``."""
    return _serpent_lr(upsampler, **{"embed_dim": 48, "ssm_ratio": 1.0, "mlp_ratio": 4.0, "ffn_conv": 3, **changes})


def _amp(upsampler: str = "nearest+conv", **changes) -> dict:
    """serpent-cffn-nc-amp-lr's structure (serpent-cffn-lr with ``nearest+conv``, no embedding or output
    LayerNorm) with ``upsampler`` and ``changes``."""
    return _cffn(upsampler, embed_norm=False, out_norm=False, **changes)


def _lmn15(upsampler: str = "nearest+conv", **changes) -> dict:
    """serpent-cffn-nc-amp-lmn15-lr's structure (amp reading ``x - mean`` of 15x15 LR neighbourhoods) with
    ``upsampler`` and ``changes``."""
    return _amp(upsampler, contrast_norm=15, contrast_norm_scale=False, **changes)


# name -> {task: network_g}. A network absent from a task does not take part in it.
SERPENT_CANDIDATES: dict[str, dict[str, dict]] = {
    "serpent-tiny": {
        "sr": dict(type="Serpent", preset="tiny", upscale=4, upsampler="interpolate", drop_path_rate=0.0),
        "deblur": dict(type="Serpent", preset="tiny", upscale=1, drop_path_rate=0.0),
    },
    # A new variant (study/README.md, "Making Serpent win"): the tiny hierarchy at the LR size, one token per
    # LR pixel (patch 1), ending with conv + PixelShuffle like the SR CNNs; no bicubic-upsampled path.
    "serpent-tiny-lr": {"sr": _serpent_lr()},
    # Candidates for the time of EDSR-baseline's iteration (study/README.md, "Making Serpent win"): the
    # LR-size tiny hierarchy twice as wide, or 4/3 as wide and twice as deep.
    "serpent-wide-lr": {"sr": _serpent_lr(embed_dim=48)},
    "serpent-deep-lr": {"sr": _serpent_lr(embed_dim=32, depths=[2, 2, 2], depths_decoder=[2, 2])},
    # With local mixing: a depthwise 3x3 convolution in every feed-forward network (ffn_conv), the
    # inner width moved from the scan (ssm_ratio 1) to the FFN (mlp_ratio 4); then deeper, then wider.
    "serpent-cffn-lr": {"sr": _cffn()},
    "serpent-cffn-deep-lr": {
        "sr": _serpent_lr(embed_dim=48, depths=[2, 2, 2], depths_decoder=[2, 2], ssm_ratio=1.0, ffn_conv=3)
    },
    "serpent-cffn-wide-lr": {"sr": _cffn(embed_dim=64)},
    # Depth where the pixels are: two blocks at the LR scale (encoder and decoder), one below.
    "serpent-cffn-top-lr": {"sr": _cffn(depths=[2, 1, 1], depths_decoder=[1, 2])},
    # A residual dense 3x3 convolution closing every stage (stage_conv, SwinIR's "1conv").
    "serpent-cffn-sc-lr": {"sr": _cffn(stage_conv=True)},
    # The non-linear upsampler of ESRGAN and SwinIR's real-world SR (nearest x2 + conv + LeakyReLU).
    "serpent-cffn-nc-lr": {"sr": _cffn("nearest+conv")},
    "serpent-cffn-top-nc-lr": {"sr": _cffn("nearest+conv", depths=[2, 1, 1], depths_decoder=[1, 2])},
    # The same with a narrower upsampler (upsampler_channels 32, SwinIR's num_feat): its output-size
    # convolutions cost 0.44x, so more iterations fit the budget; then the body at C 64 with it; then
    # a wider one (64, MSRResNet's and SwinIR's width there).
    "serpent-cffn-nc-u32-lr": {"sr": _cffn("nearest+conv", upsampler_channels=32)},
    "serpent-cffn-wide-nc-u32-lr": {"sr": _cffn("nearest+conv", upsampler_channels=32, embed_dim=64)},
    "serpent-cffn-nc-u64-lr": {"sr": _cffn("nearest+conv", upsampler_channels=64)},
    # serpent-cffn-nc-lr with state size 8 (the CPU scan's backward has an N = 8 copy; the budget's record
    # gives it 0.86x serpent-cffn-nc-lr's time per training iteration).
    "serpent-cffn-nc-ds8-lr": {"sr": _cffn("nearest+conv", d_state=8)},
    # serpent-cffn-nc-lr embedding every LR pixel with its 3x3 neighbourhood (embed_kernel 3, SwinIR's
    # first conv) instead of its colour alone; and without the LayerNorm after its 1x1 embedding.
    "serpent-cffn-nc-e3-lr": {"sr": _cffn("nearest+conv", embed_kernel=3)},
    "serpent-cffn-nc-nn-lr": {"sr": _cffn("nearest+conv", embed_norm=False)},
    # Neither the embedding's nor the output's LayerNorm: a token's amplitude (the local contrast) reaches the
    # output through the residual stream, where the norms made the restored detail contrast-blind.
    "serpent-cffn-nc-amp-lr": {"sr": _amp()},
    # The same without the LayerNorms between the scales (patch merging and expanding) as well.
    "serpent-cffn-nc-amp2-lr": {"sr": _amp(scale_norm=False)},
    # serpent-cffn-nc-amp-lr inside a local contrast normalisation (contrast_norm 7): it reads every LR pixel's 7x7
    # neighbourhood scaled to unit contrast and its correction is scaled back, so a gray or low-contrast photo gets
    # the correction of the colour, full-contrast photos it trains on, where amp still lost to MSRResNet.
    "serpent-cffn-nc-amp-lcn-lr": {"sr": _amp(contrast_norm=7)},
    # The same reading the LR image itself beside the normalised one (contrast_norm_raw): its correction is still
    # in units of the local contrast, but brightness, colour and contrast are not hidden from it.
    "serpent-cffn-nc-amp-lcnr-lr": {"sr": _amp(contrast_norm=7, contrast_norm_raw=True)},
    # Only the local mean taken off (contrast_norm_scale false): the detail at its own contrast, without the
    # neighbourhood's brightness and colour cast, which a gray photo lacks and every training photo has.
    "serpent-cffn-nc-amp-lmn-lr": {"sr": _amp(contrast_norm=7, contrast_norm_scale=False)},
    # Both over 15x15 LR neighbourhoods (the whole 16x16 training patch) instead of 7x7: a region's brightness,
    # colour cast and contrast are taken off, the variations inside it are left to the network.
    "serpent-cffn-nc-amp-lcn15-lr": {"sr": _amp(contrast_norm=15)},
    "serpent-cffn-nc-amp-lmn15-lr": {"sr": _lmn15()},
    # lmn15 with 1-homogeneous blocks: every block's update scaled by the amplitude of the token it read.
    "serpent-cffn-nc-amp-lmn15-br-lr": {"sr": _lmn15(block_rescale=True)},
    # lmn15 with SRResNet's upsampler (conv + PixelShuffle + LeakyReLU steps, one conv at the output size):
    # non-linear steps like nearest+conv, one 48-channel conv at 64x64 fewer.
    "serpent-cffn-psc-amp-lmn15-lr": {"sr": _lmn15("pixelshuffle+conv")},
    # lmn15 scanning rows only, both ways (scan_directions 2): an ablation of the four-direction scan at
    # equal time (half the scan's cost, so more iterations), not a candidate (the cross-scan is Serpent's core).
    "serpent-cffn-nc-amp-lmn15-d2-lr": {"sr": _lmn15(scan_directions=2)},
    # lmn15 with a 5x5 depthwise conv in every FFN: more local reach where the pixels are mixed.
    "serpent-cffn-nc-amp-lmn15-k5-lr": {"sr": _lmn15(ffn_conv=5)},
    # lmn15 embedding every LR pixel with its 3x3 neighbourhood (SwinIR's, EDSR's and MSRResNet's first conv): with
    # a 1x1 embedding a gray pixel becomes a rank-1 token (one value times a fixed vector); in gray photos, where
    # the Serpents lost more than MSRResNet, the 3x3 one still gives every token a 9-value input.
    "serpent-cffn-nc-amp-lmn15-e3-lr": {"sr": _lmn15(embed_kernel=3)},
    # ... and with its 5x5 neighbourhood (25 values per token, a 2-pixel reach before the first block).
    "serpent-cffn-nc-amp-lmn15-e5-lr": {"sr": _lmn15(embed_kernel=5)},
    # lmn15 with channel attention closing every FFN (squeeze 16; MambaIR's block closes its convolutional
    # branch with RCAN's): a per-channel gain from the whole patch's statistics.
    "serpent-cffn-nc-amp-lmn15-ca-lr": {"sr": _lmn15(channel_attention=16)},
    # Capacity where it is cheap: lmn15 with a second block at the coarsest scale (4x4 tokens of a training patch,
    # 0.47M more parameters for a few % more time), or with the body 7/6 as wide (C 56; the upsampler stays at 48).
    # At 10 minutes MSRResNet (1.52M parameters, all at the LR size) pulls ahead of lmn15 (1.11M) on the pick photos.
    "serpent-cffn-nc-amp-lmn15-deepc-lr": {"sr": _lmn15(depths=[1, 1, 2], depths_decoder=[1, 1])},
    "serpent-cffn-nc-amp-lmn15-w56-lr": {"sr": _lmn15(embed_dim=56, upsampler_channels=48)},
    # Depth where the pixels are, paid for by the coarsest scale: e3 with three blocks at the LR scale (two in the
    # encoder, one in the decoder) and one at half of it, no third scale. The third scale (4x4 tokens of a training
    # patch at 192 channels) holds 0.73M of e3's 1.11M parameters; the budget's record gives f3 0.97x e3's time
    # per iteration.
    "serpent-cffn-nc-amp-lmn15-e3-f3-lr": {"sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[1])},
    # f3 with a fourth block at the LR scale (two in the decoder; 1.07x e3's time), or at C 64 with the upsampler
    # kept at 48 channels (1.15x): what the third scale's time buys when spent where the pixels are.
    "serpent-cffn-nc-amp-lmn15-e3-f4-lr": {"sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[2])},
    "serpent-cffn-nc-amp-lmn15-e3-f3-w64-lr": {
        "sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[1], embed_dim=64, upsampler_channels=48)
    },
    # f3 with one block fewer at the LR scale (one in the encoder, one in the decoder): f4 (one more) was
    # behind f3 at equal seconds, so is the optimum below three?
    "serpent-cffn-nc-amp-lmn15-e3-f2-lr": {"sr": _lmn15(embed_kernel=3, depths=[1, 1], depths_decoder=[1])},
    # f2 with its upsampler's nearest x2 + conv steps run as transposed convolutions (upsampler_fused, the
    # default since): the same network, weights and arithmetic up to rounding, in less time per iteration, so
    # more iterations fit the budget. Timed beside f2, which still runs them as written.
    "serpent-cffn-nc-amp-lmn15-e3-f2-tc-lr": {
        "sr": _lmn15(embed_kernel=3, depths=[1, 1], depths_decoder=[1], upsampler_fused=True)
    },
    # f3 and f4 with the fused upsampler, timed beside f3: at 10 minutes f3 was the best Serpent, where f2 (best at
    # 5 minutes) fell behind, so the time the fusion saves may buy the most in the deeper networks.
    "serpent-cffn-nc-amp-lmn15-e3-f3-tc-lr": {
        "sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[1], upsampler_fused=True)
    },
    "serpent-cffn-nc-amp-lmn15-e3-f4-tc-lr": {
        "sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[2], upsampler_fused=True)
    },
    # f3-tc with its upsampling steps' taps untied (upsampler transposed+conv): each nearest x2 + conv is a stride-2
    # 4x4 transposed conv that starts with the taps f3-tc folds and may then give each output phase its own 2x2
    # filter, at f3-tc's arithmetic. At 10 minutes MSRResNet (sub-pixel convs, free per phase) still led on the
    # portrait, in the band just above the LR image's Nyquist frequency.
    "serpent-cffn-dc-amp-lmn15-e3-f3-lr": {
        "sr": _lmn15("transposed+conv", embed_kernel=3, depths=[2, 1], depths_decoder=[1])
    },
    # f3 with its output-size convolutions on channels-last tensors (upsampler_channels_last): the same network and
    # arithmetic, in the layout oneDNN's convolutions run fastest in on CPU (python -m study layout).
    "serpent-cffn-nc-amp-lmn15-e3-f3-cl-lr": {
        "sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[1], upsampler_channels_last=True)
    },
    # f3 with a learned per-channel scale on every block's residual stream (MambaIR's skip scale), and f3
    # whose blocks read their tokens unnormalised (a per-channel affine instead of LayerNorm, as EDSR left
    # normalisation out of SR CNNs): both at f3's cost.
    "serpent-cffn-nc-amp-lmn15-e3-f3-ss-lr": {
        "sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[1], skip_scale=True)
    },
    "serpent-cffn-nc-amp-lmn15-e3-f3-an-lr": {
        "sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[1], block_norm=False)
    },
    # f3-tc reading the image itself, without its 15x15 local mean taken off: the ablation of lmn15 where f3-tc
    # lost most (`python -m study edges`: smooth fields and ramps). Trained at f3-tc's 10-minute count.
    "serpent-cffn-nc-amp-e3-f3-tc-lr": {
        "sr": _amp(embed_kernel=3, depths=[2, 1], depths_decoder=[1], upsampler_fused=True)
    },
    # f3-tc with MATLAB's bicubic kernel (a = -0.5) for its global residual instead of PyTorch's (a = -0.75): on
    # smooth fields and ramps f3-tc's correction matched the difference of the two kernels (study edges_breakdown).
    "serpent-cffn-nc-amp-lmn15-e3-f3-tc-mk-lr": {
        "sr": _lmn15(embed_kernel=3, depths=[2, 1], depths_decoder=[1], upsampler_fused=True, resize_kernel="matlab")
    },
    # The mean of 31x31 LR neighbourhoods (at test, regions of 124x124 output pixels) taken off instead.
    "serpent-cffn-nc-amp-lmn31-lr": {"sr": _amp(contrast_norm=31, contrast_norm_scale=False)},
    # Dense local mixing as the SR CNNs have it: every FFN a dense 3x3 conv C -> 2C, GELU, Linear 2C -> C
    # (ffn_dense, SAFMN's convolutional channel mixer) instead of Linear + depthwise 3x3 at 4C.
    "serpent-cffn-nc-ccm-lr": {"sr": _cffn("nearest+conv", mlp_ratio=2.0, ffn_dense=True)},
    # Deblurring counterpart: tiny with 2x2 instead of 4x4 patches (4x the tokens at the finest scale).
    "serpent-tiny-p2": {
        "deblur": dict(type="Serpent", preset="tiny", patch_size=2, upscale=1, drop_path_rate=0.0),
    },
    "serpent-small": {
        "sr": dict(type="Serpent", preset="small", upscale=4, upsampler="interpolate", drop_path_rate=0.0),
        "deblur": dict(type="Serpent", preset="small", upscale=1, drop_path_rate=0.0),
    },
}


# Constructor arguments and upsamplers Serpent no longer has: the candidates that used them are record-only.
REMOVED_OPTIONS = (
    "block_rescale",
    "block_norm",
    "skip_scale",
    "stage_conv",
    "ffn_dense",
    "channel_attention",
    "contrast_norm_raw",
    "upsampler_channels_last",
)
REMOVED_UPSAMPLERS = ("pixelshuffle+conv", "transposed+conv")


def removed_options(network_g: dict) -> list[str]:
    """What of ``network_g`` Serpent no longer builds: each removed argument it sets, and its upsampler if removed."""
    if network_g.get("type") != "Serpent":
        return []
    removed = [key for key in REMOVED_OPTIONS if key in network_g]
    if network_g.get("upsampler") in REMOVED_UPSAMPLERS:
        removed.append(f"upsampler {network_g['upsampler']}")
    return removed


# name -> the removed options it uses (every task alike): kept for its records, no longer trained.
RECORD_ONLY: dict[str, list[str]] = {
    name: removed
    for name, tasks in SERPENT_CANDIDATES.items()
    if (removed := sorted({option for network_g in tasks.values() for option in removed_options(network_g)}))
}


def refuse_record_only(network: str, what: str = "train") -> None:
    """Stop with a one-line error when ``network`` is record-only (``what``: what the command was about to do)."""
    if network in RECORD_ONLY:
        raise SystemExit(
            f"[budget] cannot {what} {network}: it is record-only, its network_g uses "
            f"{', '.join(RECORD_ONLY[network])}, which Serpent no longer has (its recorded runs still tabulate)"
        )
