"""Helpers for the tests: run the real command, build a small workspace and option files."""

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml
from skimage import data

import serpent_arch  # noqa: F401  (makes basicsr importable on current torchvision)

REPO = Path(__file__).resolve().parents[1]


def basicsr(cwd, *args, check=True):
    """Run `basicsr ARGS` in ``cwd`` as a user would; return the completed process."""
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "serpent_arch.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"basicsr {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def repo_script(path: str):
    """Import the script at ``path`` (relative to the repository) as a module, as running it would
    (its folder on ``sys.path``); its main(argv) then runs in-process."""
    script = REPO / path
    folder = str(script.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(f"{script.parent.name}_{script.stem}", script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # so multiprocessing can pickle its functions by reference
    spec.loader.exec_module(module)
    return module


def dataset_script(name: str):
    """datasets/<name>.py as a module (see :func:`repo_script`)."""
    return repo_script(f"datasets/{name}.py")


def make_workdir(root):
    """Fill ``root`` with a small GT LMDB (train) and a disk folder of GT/LQ images (val)."""
    from basicsr.utils.lmdb_util import make_lmdb_from_imgs
    from basicsr.utils.matlab_functions import imresize

    photo = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    train_dir = root / "train_png"
    train_dir.mkdir()
    names = []
    for i, (y, x) in enumerate([(0, 0), (100, 200), (250, 120), (300, 300)]):
        names.append(f"crop{i}.png")
        cv2.imwrite(str(train_dir / names[-1]), photo[y : y + 96, x : x + 96])
    make_lmdb_from_imgs(
        str(train_dir), str(root / "train.lmdb"), names, [n[:-4] for n in names], n_thread=1, compress_level=1
    )
    for sub in ("val/HR", "val/LR"):
        (root / sub).mkdir(parents=True)
    for i, (y, x, h, w) in enumerate([(10, 10, 38, 50), (200, 260, 46, 30)]):  # odd-ish sizes
        gt = photo[y : y + h, x : x + w]
        cv2.imwrite(str(root / "val/HR" / f"img{i}.png"), gt)
        lq = imresize(gt.astype(np.float32) / 255.0, 0.5)
        cv2.imwrite(str(root / "val/LR" / f"img{i}.png"), (lq.clip(0, 1) * 255).round().astype(np.uint8))
    return root


def train_options(name, total_iter):
    return {
        "name": name,
        "model_type": "SerpentModel",
        "scale": 2,
        "num_gpu": "auto",
        "manual_seed": 0,
        "datasets": {
            "train": {
                "name": "tiny_train",
                "type": "DegradedImageDataset",
                "dataroot_gt": "train.lmdb",
                "io_backend": {"type": "lmdb"},
                "degradations": [{"type": "bicubic_down"}, {"type": "noise", "sigma": [0, 5]}],
                "gt_size": 32,
                "use_hflip": True,
                "use_rot": True,
                "num_worker_per_gpu": 0,
                "batch_size_per_gpu": 2,
                "dataset_enlarge_ratio": 1,
            },
            "val": {
                "name": "tiny_val",
                "type": "PairedImageDataset",
                "dataroot_gt": "val/HR",
                "dataroot_lq": "val/LR",
                "filename_tmpl": "{}",
                "io_backend": {"type": "disk"},
            },
        },
        "network_g": {"type": "Serpent", "preset": "tiny", "upscale": 2, "upsampler": "pixelshuffle"},
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0.9,
            "optim_g": {"type": "AdamW", "lr": 1e-3, "betas": [0.9, 0.99]},
            "scheduler": {"type": "MultiStepLR", "milestones": [3], "gamma": 0.5},
            "total_iter": total_iter,
            "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
        },
        "val": {
            "val_freq": 2,
            "save_img": True,
            "metrics": {
                "psnr": {"type": "calculate_psnr", "crop_border": 2, "test_y_channel": True},
                "ssim": {"type": "calculate_ssim", "crop_border": 2, "test_y_channel": True},
            },
        },
        "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
    }


def write_options(path, opt):
    path.write_text(yaml.safe_dump(opt, sort_keys=False))
    return str(path.name)


def minimal_options(datasets: dict, scale: int = 1) -> dict:
    """The smallest complete training option file for a tiny Serpent on ``datasets``."""
    return {
        "name": "t",
        "model_type": "SerpentModel",
        "scale": scale,
        "num_gpu": 0,
        "datasets": datasets,
        "network_g": {"type": "Serpent", "preset": "tiny", "upscale": scale},
        "path": {"pretrain_network_g": None},
        "train": {
            "optim_g": {"type": "AdamW", "lr": 1e-3},
            "scheduler": {"type": "MultiStepLR", "milestones": [10], "gamma": 0.5},
            "total_iter": 10,
            "pixel_opt": {"type": "L1Loss"},
        },
        "logger": {"print_freq": 1, "save_checkpoint_freq": 5},
    }


def write_photos(folder, count, height, width, name="{:04d}.png", offset=0):
    """``count`` natural photos of ``height`` x ``width`` (crops of scikit-image's, BGR PNGs) in ``folder``,
    named ``name.format(offset + i)``; the same for the same arguments."""
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), data.immunohistochemistry()]
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        photo = photos[(offset + i) % len(photos)]
        step = (offset + i) // len(photos) + 1
        y = min(photo.shape[0] - height, 37 * step) if photo.shape[0] > height else 0
        x = min(photo.shape[1] - width, 53 * step) if photo.shape[1] > width else 0
        crop = photo[y : y + height, x : x + width]
        if crop.shape[:2] != (height, width):
            crop = cv2.resize(crop, (width, height), interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(folder / name.format(offset + i)), cv2.cvtColor(np.ascontiguousarray(crop), cv2.COLOR_RGB2BGR))
    return folder
