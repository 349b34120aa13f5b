"""The equal-budget study's tasks, contenders and option files (``study/options/``, written, not committed).

Every contender of a task gets the same option file except ``network_g`` (and the learning rate,
which the budget command sweeps with ``--force_yml``): same data (the built-in sample set), batch,
patch, loss, optimizer, schedule shape, EMA (0.999 with SerpentModel's warm-up) and validation.
The networks are BasicSR's registered classes, unmodified, in their published configurations.

    python -m study options [--out study/options]    # write every contender's option files

The budget command writes the two files of a network (``write_network_options``) before it trains or tests
it, so the folder (git-ignored) always holds what this module says.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from study.serpent_candidates import SERPENT_CANDIDATES

OPTIONS_DIR = Path("study/options")
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


# name -> {task: network_g}. A network absent from a task does not take part in it.
NETWORKS: dict[str, dict[str, dict]] = {
    **SERPENT_CANDIDATES,
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
    # A full-resolution U-Net of plain 3x3 convolutions (study/plain_unet.py), sized to cost about what
    # serpent-tiny costs per training iteration: the CNN a user would try for full-resolution deblurring.
    "plain-unet": {
        "deblur": dict(type="PlainUNet", in_ch=3, out_ch=3, widths=[16, 32, 64, 128], convs=2),
    },
}

# The contenders of the full experiment; the other Serpent candidates above run with --networks.
DEFAULT_NETWORKS = {
    "sr": [
        "serpent-tiny",
        "serpent-tiny-lr",
        "serpent-cffn-lr",
        "serpent-cffn-nc-lr",
        "serpent-cffn-nc-amp-lmn15-e3-f3-lr",
        "serpent-small",
        "swinir-light",
        "edsr-baseline",
        "msrresnet",
    ],
    "deblur": ["serpent-tiny", "serpent-tiny-p2", "serpent-small", "swinir-light", "ridnet", "plain-unet"],
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


def write_network_options(task: str, network: str, root: Path = OPTIONS_DIR) -> tuple[Path, Path]:
    """Write the (training, test) option files of ``network`` on ``task`` under ``root``; returns their paths."""
    root.mkdir(parents=True, exist_ok=True)
    train_path, test_path = option_paths(task, network, root)
    header = (
        f"# Equal-budget study, {TASKS[task]['title']}: {network}.\n"
        "# Written by `python -m study options` (study/contenders.py); the files of one task differ only in\n"
        "# network_g. `python -m study budget` sets total_iter, the schedule, the\n"
        "# validation frequency, the seed and the learning rate with --force_yml.\n"
    )
    train_path.write_text(_dump(train_options(task, network), header))
    test_path.write_text(_dump(test_options(task, network), header))
    return train_path, test_path


def write_option_files(root: Path = OPTIONS_DIR) -> list[Path]:
    """Write every contender's option files under ``root``; returns their paths."""
    return [path for network, tasks in NETWORKS.items() for task in tasks
            for path in write_network_options(task, network, root)]


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m study options", description="Write every contender's option files")
    parser.add_argument("--out", type=Path, default=OPTIONS_DIR, help=f"folder of the files (default {OPTIONS_DIR})")
    args = parser.parse_args(argv)
    for path in write_option_files(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
