"""End to end through the real `basicsr` command: train, test, auto-resume, a BasicSR network.

Marked ``slow`` (about a minute in all on 2 cores); CI runs them.
"""

import json

import cv2
import pytest
from e2e_util import basicsr, make_workdir, train_options, write_options

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return make_workdir(tmp_path_factory.mktemp("e2e"))


def test_train_test_and_auto_resume(workdir):
    name = "serpent_e2e"
    basicsr(workdir, "train", "-opt", write_options(workdir / "train.yml", train_options(name, 4)))
    exp = workdir / "experiments" / name
    for ckpt in ("net_g_2.pth", "net_g_4.pth", "net_g_latest.pth"):
        assert (exp / "models" / ckpt).is_file(), ckpt
    assert (exp / "training_states" / "4.state").is_file()
    records = [json.loads(line) for line in (exp / "val_metrics.jsonl").read_text().splitlines()]
    # every val_freq iterations; BasicSR's validation after the loop, on the weights of iteration 4, is left out
    assert [r["iter"] for r in records] == [2, 4]
    assert records[0]["metrics"]["psnr"] > 15 and "psnr" in records[0]["baseline"]
    assert (exp / "visualization" / "img0" / "img0_2.png").is_file()

    # `basicsr test` reads the checkpoint (EMA weights) and writes images and metrics.
    test_opt = train_options(name, 4)
    test_opt["name"] = name + "_test"
    test_opt["datasets"] = {"test_1": test_opt["datasets"]["val"]}
    test_opt["path"] = {"pretrain_network_g": f"experiments/{name}/models/net_g_4.pth", "param_key_g": "params_ema"}
    test_opt["val"].update(suffix=None, tile=16, tile_overlap=8)
    del test_opt["train"], test_opt["logger"]
    basicsr(workdir, "test", "-opt", write_options(workdir / "test.yml", test_opt))
    results = workdir / "results" / (name + "_test")
    metrics = json.loads((results / "metrics.json").read_text())["tiny_val"]
    assert metrics["metrics"]["psnr"] > 15
    saved = cv2.imread(str(results / "visualization" / "tiny_val" / f"img0_{name}_test.png"))
    assert saved.shape == (38, 50, 3)  # full size restored from a 19x25 input

    # --auto_resume continues from the last saved iteration, on CPU.
    proc = basicsr(
        workdir, "train", "-opt", write_options(workdir / "train6.yml", train_options(name, 6)), "--auto_resume"
    )
    log = proc.stdout + proc.stderr + "".join(p.read_text() for p in exp.glob("train_*.log"))
    assert "Resuming training from epoch" in log and "iter: 4" in log
    assert (exp / "models" / "net_g_6.pth").is_file()


def test_basicsr_network_option_file_runs_unchanged(workdir):
    """An option file written for BasicSR's own EDSR (GPU settings and all) trains through the command."""
    opt = {
        "name": "EDSR_Mx2_tiny",
        "model_type": "SRModel",
        "scale": 2,
        "num_gpu": 1,  # BasicSR's files assume a GPU; without CUDA the run moves to the CPU
        "manual_seed": 10,
        "datasets": {
            "train": {
                "name": "pairs",
                "type": "PairedImageDataset",
                "dataroot_gt": "val/HR",
                "dataroot_lq": "val/LR",
                "filename_tmpl": "{}",
                "io_backend": {"type": "disk"},
                "gt_size": 24,
                "use_hflip": True,
                "use_rot": True,
                "num_worker_per_gpu": 0,
                "batch_size_per_gpu": 2,
                "dataset_enlarge_ratio": 2,
                "prefetch_mode": None,
            }
        },
        "network_g": {
            "type": "EDSR",
            "num_in_ch": 3,
            "num_out_ch": 3,
            "num_feat": 16,
            "num_block": 2,
            "upscale": 2,
            "res_scale": 1,
            "img_range": 255.0,
            "rgb_mean": [0.4488, 0.4371, 0.4040],
        },
        "path": {"pretrain_network_g": None, "strict_load_g": True, "resume_state": None},
        "train": {
            "ema_decay": 0.999,
            "optim_g": {"type": "Adam", "lr": 1e-4, "weight_decay": 0, "betas": [0.9, 0.99]},
            "scheduler": {"type": "MultiStepLR", "milestones": [2], "gamma": 0.5},
            "total_iter": 2,
            "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
        },
        "logger": {"print_freq": 1, "save_checkpoint_freq": 2, "use_tb_logger": False},
    }
    basicsr(workdir, "train", "-opt", write_options(workdir / "edsr.yml", opt))
    assert (workdir / "experiments" / "EDSR_Mx2_tiny" / "models" / "net_g_2.pth").is_file()


def test_bad_option_file_fails_fast_with_a_named_key(workdir):
    opt = train_options("bad", 2)
    opt["network_g"]["preset"] = "gigantic"
    del opt["num_gpu"]
    proc = basicsr(workdir, "train", "-opt", write_options(workdir / "bad.yml", opt), check=False)
    assert proc.returncode == 2
    assert "unknown preset 'gigantic'" in proc.stderr and "num_gpu" in proc.stderr
    assert "Traceback" not in proc.stderr
