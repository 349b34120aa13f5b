"""The equal-budget benchmark's tasks, contenders and option files (``options/budget/``).

Every contender of a task gets the same option file except ``network_g`` (and the learning rate,
which the budget command sweeps with ``--force_yml``): same data (the built-in sample set), batch,
patch, loss, optimizer, schedule shape, EMA (0.999 with SerpentModel's warm-up) and validation.
The networks are BasicSR's registered classes, unmodified, in their published configurations.

    python -m serpent_arch.benchmark.contenders    # rewrite options/budget/ from this module
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

OPTIONS_DIR = Path("options/budget")
SAMPLE = "datasets/sample"

# The blur of options/train/train_Serpent_FFHQ*_deblur.yml.
DEBLUR_DEGRADATIONS = [{"type": "blur", "kernel_size": 61, "sigma": 3.0}, {"type": "noise", "sigma": 1}]

TASKS: dict[str, dict] = {
    "sr": dict(
        title="x4 super-resolution (MATLAB bicubic)",
        scale=4,
        gt_size=64,
        batch=8,
        degradations=[{"type": "bicubic_down"}],
        metric=dict(crop_border=4, test_y_channel=True),
    ),
    "deblur": dict(
        title="Gaussian deblurring at full resolution (61x61, sigma 3, noise 1/255)",
        scale=1,
        gt_size=128,
        batch=4,
        degradations=DEBLUR_DEGRADATIONS,
        metric=dict(crop_border=0, test_y_channel=False),
        # Full-resolution attention costs ~10 s per 256x256 forward here: evaluate photo centres.
        eval_crop=256,
    ),
}

SWINIR_LIGHT = dict(
    type="SwinIR",
    in_chans=3,
    window_size=8,
    img_range=1.0,
    depths=[6, 6, 6, 6],
    embed_dim=60,
    num_heads=[6, 6, 6, 6],
    mlp_ratio=2,
    resi_connection="1conv",
)


def _serpent_lr(upsampler: str = "pixelshuffle", **structure) -> dict:
    """x4 Serpent at the LR size: tiny's hierarchy, one token per LR pixel, conv + PixelShuffle at the end."""
    return dict(
        type="Serpent", variant="tiny", patch_size=1, **structure, upscale=4, upsampler=upsampler,
        drop_path_rate=0.0,
    )


def _cffn(upsampler: str = "pixelshuffle", **changes) -> dict:
    """serpent-cffn-lr's structure (C 48, a depthwise 3x3 conv in every FFN, the inner width in the FFN:
    ssm_ratio 1, mlp_ratio 4) with ``upsampler`` and ``changes``."""
    return _serpent_lr(upsampler, **{"embed_dim": 48, "ssm_ratio": 1.0, "mlp_ratio": 4.0, "ffn_conv": 3, **changes})


def _amp(**changes) -> dict:
    """serpent-cffn-nc-amp-lr's structure (serpent-cffn-lr with ``nearest+conv``, no embedding or output
    LayerNorm) with ``changes``."""
    return _cffn("nearest+conv", embed_norm=False, out_norm=False, **changes)


def _lmn15(**changes) -> dict:
    """serpent-cffn-nc-amp-lmn15-lr's structure (amp reading ``x - mean`` of 15x15 LR neighbourhoods) with
    ``changes``."""
    return _amp(contrast_norm=15, contrast_norm_scale=False, **changes)


# name -> {task: network_g}. A network absent from a task does not take part in it.
NETWORKS: dict[str, dict[str, dict]] = {
    "serpent-tiny": {
        "sr": dict(type="Serpent", variant="tiny", upscale=4, upsampler="interpolate", drop_path_rate=0.0),
        "deblur": dict(type="Serpent", variant="tiny", upscale=1, drop_path_rate=0.0),
    },
    # A new variant (README, "Making Serpent win"): the tiny hierarchy at the LR size, one token per
    # LR pixel (patch 1), ending with conv + PixelShuffle like the SR CNNs; no bicubic-upsampled path.
    "serpent-tiny-lr": {"sr": _serpent_lr()},
    # Candidates for the time of EDSR-baseline's iteration (README, "Making Serpent win"): the
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
    "serpent-cffn-psc-amp-lmn15-lr": {
        "sr": _cffn("pixelshuffle+conv", embed_norm=False, out_norm=False, contrast_norm=15, contrast_norm_scale=False)
    },
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
    "serpent-cffn-nc-amp-lmn15-deepc-lr": {
        "sr": _lmn15(depths=[1, 1, 2], depths_decoder=[1, 1])
    },
    "serpent-cffn-nc-amp-lmn15-w56-lr": {
        "sr": _lmn15(embed_dim=56, upsampler_channels=48)
    },
    # The mean of 31x31 LR neighbourhoods (at test, regions of 124x124 output pixels) taken off instead.
    "serpent-cffn-nc-amp-lmn31-lr": {"sr": _amp(contrast_norm=31, contrast_norm_scale=False)},
    # Dense local mixing as the SR CNNs have it: every FFN a dense 3x3 conv C -> 2C, GELU, Linear 2C -> C
    # (ffn_dense, SAFMN's convolutional channel mixer) instead of Linear + depthwise 3x3 at 4C.
    "serpent-cffn-nc-ccm-lr": {"sr": _cffn("nearest+conv", mlp_ratio=2.0, ffn_dense=True)},
    # Deblurring counterpart: tiny with 2x2 instead of 4x4 patches (4x the tokens at the finest scale).
    "serpent-tiny-p2": {
        "deblur": dict(type="Serpent", variant="tiny", patch_size=2, upscale=1, drop_path_rate=0.0),
    },
    "serpent-small": {
        "sr": dict(type="Serpent", variant="small", upscale=4, upsampler="interpolate", drop_path_rate=0.0),
        "deblur": dict(type="Serpent", variant="small", upscale=1, drop_path_rate=0.0),
    },
    # SwinIR lightweight (SwinIR paper, table of lightweight SR): LR-size body, pixelshuffledirect.
    "swinir-light": {
        "sr": dict(SWINIR_LIGHT, upscale=4, img_size=16, upsampler="pixelshuffledirect"),
        "deblur": dict(SWINIR_LIGHT, upscale=1, img_size=128, upsampler=""),
    },
    # EDSR-baseline (EDSR paper; BasicSR's EDSR_Mx4 options): 16 blocks, 64 features, res_scale 1.
    "edsr-baseline": {
        "sr": dict(
            type="EDSR",
            num_in_ch=3,
            num_out_ch=3,
            num_feat=64,
            num_block=16,
            upscale=4,
            res_scale=1,
            img_range=255.0,
            rgb_mean=[0.4488, 0.4371, 0.4040],
        ),
    },
    # MSRResNet (SRResNet without batch norm; BasicSR's MSRResNet_x4 options).
    "msrresnet": {
        "sr": dict(type="MSRResNet", num_in_ch=3, num_out_ch=3, num_feat=64, num_block=16, upscale=4),
    },
    # RIDNet (its paper's configuration: 4 EAM blocks, 64 channels), a full-resolution CNN restorer.
    # img_range 1: BasicSR feeds [0, 1] images, and RIDNet's mean shift is in units of img_range.
    "ridnet": {
        "deblur": dict(type="RIDNet", in_channels=3, mid_channels=64, out_channels=3, num_block=4, img_range=1.0),
    },
}

# The contenders of the full experiment; the other Serpent candidates above run with --networks.
DEFAULT_NETWORKS = {
    "sr": [
        "serpent-tiny",
        "serpent-tiny-lr",
        "serpent-cffn-lr",
        "serpent-cffn-nc-lr",
        "serpent-small",
        "swinir-light",
        "edsr-baseline",
        "msrresnet",
    ],
    "deblur": ["serpent-tiny", "serpent-tiny-p2", "serpent-small", "swinir-light", "ridnet"],
}
DEFAULT_LR = 2e-4

# Training recipes: changes of the training set's options (DegradedImageDataset), the same for every
# network of a run of the budget command (``--recipe``). "base" is the option files as written.
RECIPES: dict[str, dict] = {
    "base": {},
    # a quarter of the training patches gray, a quarter (independently) at 0.25 to 1 times their contrast:
    # the colour training photos at their own contrast never show a gray or faint scene
    "gray-contrast": {
        "datasets:train:gray_prob": 0.25,
        "datasets:train:contrast_prob": 0.25,
        "datasets:train:contrast_range": [0.25, 1.0],
    },
    # BasicSR's linear learning-rate warm-up (train.warmup_iter) over the first 100 iterations, then the cosine
    # schedule: Adam's first steps at the full rate move a zero-initialised last conv (Serpent) or a small one
    # (the CNNs) far at once, which made the top rates start slowly
    "warmup": {"train:warmup_iter": 100},
}


def train_options(task: str, network: str, lr: float = DEFAULT_LR) -> dict:
    """The training option file of ``network`` on ``task`` (a short placeholder schedule:
    the budget command sets ``total_iter``, the schedule, the checkpoints and validation
    frequencies and the learning rate with ``--force_yml``)."""
    t = TASKS[task]
    metric = dict(t["metric"])
    return {
        "name": f"budget_{task}_{network}",
        "model_type": "SerpentModel",
        "scale": t["scale"],
        "num_gpu": "auto",
        "manual_seed": 0,
        "datasets": {
            "train": {
                "name": "sample_train",
                "type": "DegradedImageDataset",
                "dataroot_gt": f"{SAMPLE}/train.lmdb",
                "io_backend": {"type": "lmdb"},
                "auto_prepare": "sample",
                "degradations": copy.deepcopy(t["degradations"]),
                "gt_size": t["gt_size"],
                "use_hflip": True,
                "use_rot": True,
                "num_worker_per_gpu": 1,
                "batch_size_per_gpu": t["batch"],
                "dataset_enlarge_ratio": 1,
                "prefetch_mode": None,
            },
            "val": _evaluation_set(t, "pick", f"{SAMPLE}/val.lmdb", "lmdb"),  # the lr is chosen on it
        },
        "network_g": copy.deepcopy(NETWORKS[network][task]),
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0.999,
            "ema_warmup": True,
            "optim_g": {"type": "AdamW", "lr": lr, "weight_decay": 0, "betas": [0.9, 0.99]},
            "scheduler": {"type": "CosineAnnealingRestartLR", "periods": [100], "restart_weights": [1], "eta_min": 0},
            "total_iter": 100,
            "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
        },
        "val": {
            "val_freq": 50,
            "save_img": False,
            "metrics": {
                "psnr": dict(type="calculate_psnr", **metric),
                "ssim": dict(type="calculate_ssim", **metric),
            },
        },
        "logger": {
            "print_freq": 50,
            "save_checkpoint_freq": 50,
            "use_tb_logger": False,
            "wandb": {"project": None, "resume_id": None},
        },
        "dist_params": {"backend": "nccl", "port": 29500},
    }


def _evaluation_set(t: dict, name: str, root: str, io_backend: str) -> dict:
    """A held-out set of the sample, degraded as task ``t`` degrades (deterministically per image)."""
    return {
        "name": name,
        "type": "DegradedImageDataset",
        "dataroot_gt": root,
        "io_backend": {"type": io_backend},
        "auto_prepare": "sample",
        "degradations": copy.deepcopy(t["degradations"]),
        "seed": 0,
        **({"center_crop": t["eval_crop"]} if t.get("eval_crop") else {}),
    }


def test_options(task: str, network: str) -> dict:
    """The test option file: the report set (photos never trained on nor used for a choice)."""
    t = TASKS[task]
    metric = dict(t["metric"])
    return {
        "name": f"budget_{task}_{network}_test",
        "model_type": "SerpentModel",
        "scale": t["scale"],
        "num_gpu": "auto",
        "manual_seed": 0,
        "datasets": {
            "test_1": _evaluation_set(t, "report", f"{SAMPLE}/report/HR", "disk"),
        },
        "network_g": copy.deepcopy(NETWORKS[network][task]),
        "path": {
            "pretrain_network_g": f"experiments/budget_{task}_{network}/models/net_g_latest.pth",
            "param_key_g": "params_ema",
            "strict_load_g": True,
        },
        "val": {
            "save_img": False,
            "suffix": None,
            "metrics": {
                "psnr": dict(type="calculate_psnr", **metric),
                "ssim": dict(type="calculate_ssim", **metric),
            },
        },
    }


def option_paths(task: str, network: str, root: Path = OPTIONS_DIR) -> tuple[Path, Path]:
    """(training, test) option files of ``network`` on ``task``."""
    return root / f"budget_{task}_{network}.yml", root / f"test_budget_{task}_{network}.yml"


def _dump(opt: dict, header: str) -> str:
    return header + yaml.safe_dump(opt, sort_keys=False, default_flow_style=None, width=110)


def write_option_files(root: Path = OPTIONS_DIR) -> list[Path]:
    """Write every contender's option files under ``root``; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    written = []
    for network, tasks in NETWORKS.items():
        for task in tasks:
            train_path, test_path = option_paths(task, network, root)
            header = (
                f"# Equal-budget benchmark, {TASKS[task]['title']}: {network}.\n"
                "# Written by `python -m serpent_arch.benchmark.contenders`; the files of one task differ only in\n"
                "# network_g. `python -m serpent_arch.benchmark budget` sets total_iter, the schedule, the\n"
                "# validation frequency, the seed and the learning rate with --force_yml.\n"
            )
            train_path.write_text(_dump(train_options(task, network), header))
            test_path.write_text(_dump(test_options(task, network), header))
            written += [train_path, test_path]
    return written


if __name__ == "__main__":
    for path in write_option_files():
        print(path)
