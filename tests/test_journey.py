"""The DF2K journey of a new user, replayed without a hand-written option file (issue 33).

Natural photos laid out as datasets/DF2K/HR, cut and packed by the documented scripts; a custom
4-image set prepared as Set5; a trial of the shipped DF2K x4 training file (with a tiny network);
`basicsr test` of that experiment on the shipped x4 test file, whose Set5 count does not fit the custom
set until the flag the error names is given; `basicsr leaderboard`; `basicsr infer -e`. Every step
runs the real command in a fresh folder laid out as a clone, and every error names the user's files.
"""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from e2e_util import basicsr, dataset_script, write_photos

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
TRAIN = "options/train/train_Serpent_DF2K_SRx4.yml"
TEST = "options/test/test_Serpent_DF2K_SRx4.yml"


def test_df2k_journey_from_photos_to_restored_images(tmp_path, monkeypatch):
    for file in (TRAIN, TEST):
        (tmp_path / file).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / file, tmp_path / file)
    monkeypatch.chdir(tmp_path)  # the scripts run in-process, from the clone's root, as documented

    # Data: 8 photos as DF2K, cut into sub-images (smaller than the documented 480 for photos this small)
    write_photos(tmp_path / "datasets/DF2K/HR", 8, 160, 192)
    extract = ["datasets/DF2K/HR", "datasets/DF2K/HR_sub", "--crop-size", "96", "--step", "48"]
    assert dataset_script("extract_subimages").main(extract) == 0
    assert dataset_script("make_lmdb").main(["datasets/DF2K/HR_sub", "datasets/DF2K/DF2K_HR_sub.lmdb"]) == 0
    write_photos(tmp_path / "my_set", 4, 96, 120, offset=8)  # a custom set of 4, in the place of Set5
    prepare = dataset_script("prepare_benchmark")
    assert prepare.main(["--set", "Set5", "--src", "my_set", "--allow-count-mismatch"]) == 0

    # Train: a trial of the shipped file, with the quick start's network
    proc = basicsr(tmp_path, "train", "-opt", TRAIN, "--trial", "--force_yml", "network_g:preset=sr-tiny")
    assert "train:total_iter: 500000 -> 40" in proc.stdout and "optimizer.step()" not in proc.stderr
    exp = Path("experiments/trial_Serpent_sr-base_DF2K_SRx4")
    resolved = yaml.safe_load((exp / "options_resolved.yml").read_text())
    assert resolved["network_g"]["preset"] == "sr-tiny" and resolved["train"]["total_iter"] == 40
    records = [json.loads(line) for line in (exp / "val_metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in records] == [20, 40]  # not again after "End of training"

    # Test: the experiment's network and weights on the shipped test file; Set5's count does not fit
    proc = basicsr(tmp_path, "test", "-opt", TEST, "-e", str(exp), check=False)
    assert proc.returncode == 2 and "test_2 (Set14): datasets/benchmark/Set14/HR" in proc.stderr  # skipped
    assert f"error: option file '{TEST}'" in proc.stderr and "4 images, expected 5 (num_images)" in proc.stderr
    assert "--remove_yml datasets:test_1:num_images" in proc.stderr and "basicsr_test_" not in proc.stderr
    basicsr(tmp_path, "test", "-opt", TEST, "-e", str(exp), "--remove_yml", "datasets:test_1:num_images")
    record = json.loads(Path(f"results/{exp.name}/metrics.json").read_text())["Set5"]
    assert record["num_images"] == 4 and record["network_g"]["preset"] == "sr-tiny"

    board = basicsr(tmp_path, "leaderboard")
    assert f"| {exp.name} | 0.34 |" in board.stdout and "Set5 (4 images)" in board.stdout

    # Infer: the same network and weights from the experiment folder, the same mean PSNR as the test
    lr, hr = "datasets/benchmark/Set5/LR_bicubic/X4", "datasets/benchmark/Set5/HR"
    proc = basicsr(tmp_path, "infer", "-e", str(exp), "-i", lr, "-o", "results/mine", "--gt", hr)
    assert f"weights {exp}/models/net_g_latest.pth [params_ema]" in proc.stdout
    mean = float(proc.stdout.split("mean Y-PSNR of 4 with ground truth ")[1].split(" dB")[0])
    assert mean == pytest.approx(record["metrics"]["psnr"], abs=0.01)
    assert len(list(Path("results/mine").glob("*.png"))) == 4

    # A mistake names the user's folder
    proc = basicsr(tmp_path, "infer", "-e", "experiments/trial_typo", "-i", lr, "-o", "out", check=False)
    assert proc.returncode == 2 and "-e experiments/trial_typo: no such experiment folder" in proc.stderr
