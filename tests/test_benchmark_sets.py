"""Benchmark sets: datasets/prepare_benchmark.py and the benchmark test option files.

The fake sets are made from photos bundled with scikit-image (nothing is downloaded). The last
test runs the real `basicsr test` on a prepared fake Set5 and is marked ``slow`` (CI runs it).
"""

import json
import os
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from e2e_util import basicsr, dataset_script
from skimage import data

import serpent_arch  # noqa: F401  (makes basicsr importable on current torchvision)

REPO = Path(__file__).resolve().parents[1]


prepare = dataset_script("prepare_benchmark")


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    """Five 8-bit photos as cv2 would load them (BGR, or 2-D for the gray `camera`), odd sizes included."""
    rgb = {"astronaut": data.astronaut(), "coffee": data.coffee(), "chelsea": data.chelsea(), "rocket": data.rocket()}
    images = {name: cv2.cvtColor(img, cv2.COLOR_RGB2BGR) for name, img in rgb.items()}
    images["camera"] = data.camera()  # 512x512 grayscale
    return images


def _write(folder: Path, images: dict[str, np.ndarray], name_format: str = "{}.png") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, img in images.items():
        assert cv2.imwrite(str(folder / name_format.format(stem)), img)


def _as_bgr(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img


def _matlab_bicubic_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """Independent recomputation: BasicSR's MATLAB imresize of the HR mod-cropped to ``scale``."""
    from basicsr.data.transforms import mod_crop
    from basicsr.utils.matlab_functions import imresize

    lr = imresize(mod_crop(hr, scale).astype(np.float32) / 255.0, 1 / scale)
    return np.clip(np.rint(lr * 255.0), 0, 255).astype(np.uint8)


def _read(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert img is not None, path
    return img


def _silent(_message: str) -> None:
    pass


# a custom set of other than the standard number of images, prepared without printing
CUSTOM_SET = {"allow_count_mismatch": True, "log": _silent, "warn": _silent}


def test_set5_from_a_folder_matches_matlab_bicubic_and_keeps_gray_as_three_channels(tmp_path, photos):
    download = tmp_path / "download" / "Set5"
    _write(download / "HR", photos)
    _write(download / "LR_bicubic" / "X4", photos, "{}x4.png")  # an archive's own LR files: ignored
    root = tmp_path / "datasets"
    folders = prepare.prepare_set("Set5", str(download), str(root), log=_silent)

    assert folders == [
        str(root / "benchmark/Set5/HR"),
        *(str(root / f"benchmark/Set5/LR_bicubic/X{s}") for s in (2, 3, 4)),
    ]
    for stem, photo in photos.items():
        hr = _read(root / "benchmark/Set5/HR" / f"{stem}.png")
        assert hr.dtype == np.uint8 and hr.shape == (*photo.shape[:2], 3)  # not cropped
        assert np.array_equal(hr, _as_bgr(photo))
        for scale in (2, 3, 4):
            lr = _read(root / f"benchmark/Set5/LR_bicubic/X{scale}/{stem}.png")
            assert lr.shape == (photo.shape[0] // scale, photo.shape[1] // scale, 3)
            assert np.array_equal(lr, _matlab_bicubic_lr(hr, scale)), (stem, scale)
    for folder in folders:
        assert sorted(os.listdir(folder)) == sorted(f"{stem}.png" for stem in photos)


def test_gray_sixteen_bit_and_alpha_images_become_8_bit_bgr():
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4)
    img, note = prepare.to_bgr8(gray, "g.png")
    assert img.shape == (3, 4, 3) and all(np.array_equal(img[..., c], gray) for c in range(3))
    assert note == "gray to 3 channels"
    # The Y channel of the stored image is that of the gray values, as the Y-PSNR assumes.
    from basicsr.utils import bgr2ycbcr

    y = bgr2ycbcr(img.astype(np.float32) / 255.0, y_only=True)
    assert np.allclose(y, (16 + 219 * gray.astype(np.float64) / 255.0) / 255.0, atol=1e-5)

    img, note = prepare.to_bgr8((gray.astype(np.uint16) * 257)[..., None], "g16.png")
    assert np.array_equal(img[..., 0], gray) and img.shape == (3, 4, 3) and "16-bit" in note
    bgra = np.dstack([_as_bgr(gray), np.full_like(gray, 7)])
    img, note = prepare.to_bgr8(bgra, "a.png")
    assert np.array_equal(img, _as_bgr(gray)) and note == "alpha dropped"
    with pytest.raises(prepare.BenchmarkSetError, match="cannot decode broken.png"):
        prepare.to_bgr8(None, "broken.png")


def test_wrong_count_is_an_error_naming_set_expected_and_found(tmp_path, photos, capsys):
    download = tmp_path / "Set5_partial"
    _write(download, dict(list(photos.items())[:4]))
    root = tmp_path / "datasets"
    with pytest.raises(SystemExit) as exit_info:
        prepare.main(["--set", "Set5", "--src", str(download), "--root", str(root)])
    assert exit_info.value.code == 2
    assert f"Set5: expected 5 HR images, found 4 in {download}" in capsys.readouterr().err
    assert not root.exists()  # nothing written for a wrong download

    assert prepare.main(["--set", "Set5", "--src", str(download), "--root", str(root), "--allow-count-mismatch"]) == 0
    captured = capsys.readouterr()
    assert "warning: Set5: expected 5 HR images, found 4" in captured.err
    assert "wrote " in captured.out
    assert len(os.listdir(root / "benchmark/Set5/HR")) == 4

    with pytest.raises(SystemExit):
        prepare.main(["--set", "Set6", "--src", str(download)])
    assert "unknown set 'Set6'" in capsys.readouterr().err


def test_zip_in_the_image_srf_layout(tmp_path, photos):
    """The popular Set5/Set14 zips: image_SRF_<s>/<stem>_SRF_<s>_HR.png plus LR and method outputs."""
    archive = tmp_path / "Set5.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for i, photo in enumerate(photos.values(), start=1):
            for scale in (2, 4):
                h, w = photo.shape[:2]
                cropped = photo[: h - h % scale, : w - w % scale]  # each folder's HR is mod-cropped
                for suffix, img in (("HR", cropped), ("LR", cropped[::scale, ::scale]), ("bicubic", cropped)):
                    name = f"Set5/image_SRF_{scale}/img_{i:03d}_SRF_{scale}_{suffix}.png"
                    zf.writestr(name, cv2.imencode(".png", img)[1].tobytes())
        zf.writestr("__MACOSX/Set5/image_SRF_2/._img_001_SRF_2_HR.png", b"resource fork")
    root = tmp_path / "datasets"
    prepare.prepare_set("Set5", str(archive), str(root), log=_silent)
    names = sorted(os.listdir(root / "benchmark/Set5/HR"))
    assert names == [f"img_{i:03d}.png" for i in range(1, 6)]
    for i, photo in enumerate(photos.values(), start=1):
        h, w = photo.shape[:2]
        hr = _read(root / f"benchmark/Set5/HR/img_{i:03d}.png")
        assert np.array_equal(hr, _as_bgr(photo)[: h - h % 2, : w - w % 2])  # the largest copy


def test_tar_of_several_sets_takes_the_named_one(tmp_path, photos):
    """EDSR's benchmark.tar layout: benchmark/<Set>/HR and LR_bicubic/X<s>/<stem>x<s>.png, all sets."""
    tree = tmp_path / "tree"
    _write(tree / "benchmark/B100/HR", photos)
    _write(tree / "benchmark/B100/LR_bicubic/X2", photos, "{}x2.png")
    _write(tree / "benchmark/Set5/HR", {"other": photos["camera"]})
    archive = tmp_path / "benchmark.tar"
    with tarfile.open(archive, "w") as tf:
        tf.add(tree / "benchmark", arcname="./benchmark")
    root = tmp_path / "datasets"
    warnings = []
    prepare.prepare_set("bsd100", str(archive), str(root), allow_count_mismatch=True, log=_silent, warn=warnings.append)
    assert sorted(os.listdir(root / "benchmark/B100/HR")) == sorted(f"{s}.png" for s in photos)
    assert warnings == [
        f"warning: B100: expected 100 HR images, found 5 in {archive}; preparing them anyway "
        "(--allow-count-mismatch); a test option file's num_images: 100 will not match them (basicsr test says so "
        "and names the flag that leaves the count out: --remove_yml datasets:<section>:num_images)"
    ]


def test_rerun_changes_nothing_and_removes_files_not_in_the_set(tmp_path, photos):
    download = tmp_path / "Set5"
    _write(download, photos)
    root = tmp_path / "datasets"
    prepare.prepare_set("Set5", str(download), str(root), log=_silent)
    files = sorted((root / "benchmark").rglob("*.png"))
    stamps = {p: p.stat().st_mtime_ns for p in files}
    stale = [root / "benchmark/Set5/LR_bicubic/X4/astronautx4.png", root / "benchmark/Set5/HR/old.png"]
    for path in stale:
        path.write_bytes(b"left over from another layout")

    lines = []
    prepare.prepare_set("Set5", str(download), str(root), log=lines.append)
    assert sorted((root / "benchmark").rglob("*.png")) == files
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in stamps.items())  # not rewritten
    assert not any(line.startswith("wrote") for line in lines)
    assert sorted(line for line in lines if line.startswith("removed")) == [
        f"removed {root / 'benchmark/Set5/HR/old.png'} (not part of the set)",
        f"removed {root / 'benchmark/Set5/LR_bicubic/X4/astronautx4.png'} (not part of the set)",
    ]
    assert f"{root / 'benchmark/Set5/HR'}: 5 images (0 written, 5 unchanged, 1 other files removed)" in lines


def test_denoising_set_gets_the_hr_only(tmp_path, photos):
    download = tmp_path / "McMaster"
    _write(download, {str(i): photos["coffee"][:, 100 * i : 100 * i + 200] for i in (1, 2)}, "{}.tif")
    root = tmp_path / "datasets"
    folders = prepare.prepare_set("mcmaster", str(download), str(root), **CUSTOM_SET)
    assert folders == [str(root / "benchmark/McMaster/HR")]
    assert sorted(os.listdir(root / "benchmark/McMaster")) == ["HR"]
    assert np.array_equal(_read(root / "benchmark/McMaster/HR/2.png"), photos["coffee"][:, 200:400])


def test_ffhq_validation_split_at_256_and_512(tmp_path, photos):
    face = cv2.resize(photos["astronaut"], (1024, 1024), interpolation=cv2.INTER_CUBIC)
    download = tmp_path / "images1024x1024"
    _write(download / "68000", {"68999": face})  # a training image: not part of the split
    _write(download / "69000", {"69000": face, "69001": face[:, ::-1]})
    root = tmp_path / "datasets"
    folders = prepare.prepare_set("FFHQ", str(download), str(root), **CUSTOM_SET)
    assert folders == [str(root / "FFHQ/ffhq256_val"), str(root / "FFHQ/ffhq512_val")]
    for size in (256, 512):
        assert sorted(os.listdir(root / f"FFHQ/ffhq{size}_val")) == ["69000.png", "69001.png"]
        out = _read(root / f"FFHQ/ffhq{size}_val/69001.png")
        assert np.array_equal(out, _matlab_bicubic_lr(np.ascontiguousarray(face[:, ::-1]), 1024 // size))

    with pytest.raises(prepare.BenchmarkSetError, match="expected 1000 validation images .69000-69999., found 2"):
        prepare.prepare_set("FFHQ", str(download), str(root), log=_silent)
    _write(download / "69000", {"69002": face[:1000]})
    with pytest.raises(prepare.BenchmarkSetError, match="69002.png .* is 1000x1024; expected a square image"):
        prepare.prepare_set("FFHQ", str(download), str(root), **CUSTOM_SET)


# ---------------------------------------------------------------- the shipped benchmark option files

TEST_FILES = sorted(p.name for p in (REPO / "options" / "test").glob("test_Serpent_*.yml"))
TRAIN_NAMES = {yaml.safe_load(p.read_text())["name"] for p in (REPO / "options" / "train").glob("train_Serpent_*.yml")}
SR_SETS = ["Set5", "Set14", "B100", "Urban100", "Manga109"]
DENOISING_SETS = ["CBSD68", "Kodak24", "McMaster", "Urban100"]


@pytest.mark.parametrize("file_name", TEST_FILES)
def test_benchmark_test_file_follows_the_conventions(file_name):
    opt = yaml.safe_load((REPO / "options" / "test" / file_name).read_text())
    scale = opt["scale"]
    assert opt["model_type"] == "SerpentModel"
    assert opt["val"]["self_ensemble"] is False
    assert opt["path"]["param_key_g"] == "params_ema"
    pretrained = opt["path"]["pretrain_network_g"]
    train_name = pretrained.split("/")[1]
    assert pretrained == f"experiments/{train_name}/models/net_g_latest.pth" and train_name in TRAIN_NAMES
    assert opt["network_g"]["upscale"] == scale

    datasets = list(opt["datasets"].values())
    paired = [ds["type"] == "PairedImageDataset" for ds in datasets]
    metrics = opt["val"]["metrics"]
    if all(paired):  # classic SR: the five sets, Y channel, border = scale, LR files of this scale
        assert [ds["name"] for ds in datasets] == SR_SETS
        assert {(m["crop_border"], m["test_y_channel"]) for m in metrics.values()} == {(scale, True)}
        for ds in datasets:
            assert ds["dataroot_gt"] == prepare.hr_folder("datasets", ds["name"])
            assert ds["dataroot_lq"] == prepare.lr_folder("datasets", ds["name"], scale)
            assert ds["filename_tmpl"] == "{}"
            assert ds["num_images"] == prepare.SETS[ds["name"]].num_images
        return
    assert not any(paired)  # made on the fly: RGB, no border cropped, a fixed seed
    assert {(m["crop_border"], m["test_y_channel"]) for m in metrics.values()} == {(0, False)}
    assert all(ds["seed"] == 0 for ds in datasets)
    if "ColorDN" in file_name:  # every set at every noise level, in the papers' column order
        assert scale == 1 and [ds["name"] for ds in datasets] == [
            f"{name}_sigma{sigma}" for name in DENOISING_SETS for sigma in (15, 25, 50)
        ]
        assert list(opt["datasets"]) == sorted(opt["datasets"])  # BasicSR tests them in sorted key order
        for ds in datasets:
            name, sigma = ds["name"].split("_sigma")
            assert ds["degradations"] == [{"type": "noise", "sigma": int(sigma)}]
            assert ds["dataroot_gt"] == prepare.hr_folder("datasets", name)
            assert ds["num_images"] == prepare.SETS[name].num_images
    else:
        (ds,) = datasets
        size = int(file_name.split("FFHQ")[1][:3])
        assert ds["dataroot_gt"] == prepare.face_folder("datasets", size)
        assert ds["num_images"] == prepare.SETS["FFHQ"].num_images == 1000


def test_every_task_has_its_test_files():
    expected = {f"test_Serpent_DF2K_SRx{s}.yml" for s in (2, 3, 4)}
    expected.add("test_Serpent_DFWB_ColorDN.yml")
    expected |= {f"test_Serpent_FFHQ{n}_{task}.yml" for n in (256, 512) for task in ("deblur", "SRx8")}
    assert expected <= set(TEST_FILES)


# ---------------------------------------------------------------- `basicsr test` on a prepared set


@pytest.mark.slow
def test_basicsr_test_on_a_prepared_set5_reports_the_y_psnr(tmp_path, photos):
    """The x4 test file with a tiny network, run by the real command in tmp_path where only Set5 is
    prepared (the other four sets are skipped with a warning), then tabulated by `basicsr leaderboard`."""
    from basicsr.archs import build_network
    from basicsr.metrics import calculate_psnr
    from basicsr.utils import img2tensor, tensor2img

    download = tmp_path / "download"
    _write(download, photos)
    prepare.prepare_set("Set5", str(download), str(tmp_path / "datasets"), log=_silent)

    opt = yaml.safe_load((REPO / "options/test/test_Serpent_DF2K_SRx4.yml").read_text())
    opt["network_g"]["preset"] = "tiny"
    opt["val"]["report_baseline"] = False
    name = opt["name"]
    (tmp_path / "test_x4.yml").write_text(yaml.safe_dump(opt, sort_keys=False))

    torch.manual_seed(0)
    net = build_network(dict(opt["network_g"]))
    with torch.no_grad():  # move off the zero-initialized last conv: not the plain bicubic output
        for param in net.parameters():
            param.add_(0.01 * torch.randn_like(param))
    checkpoint = tmp_path / opt["path"]["pretrain_network_g"]
    checkpoint.parent.mkdir(parents=True)
    torch.save({"params_ema": net.state_dict()}, checkpoint)

    proc = basicsr(tmp_path, "test", "-opt", "test_x4.yml")
    assert "skipping test sets" in proc.stderr
    for absent in ("Set14", "B100", "Urban100", "Manga109"):
        assert f"({absent}): datasets/benchmark/{absent}/HR" in proc.stderr

    record = json.loads((tmp_path / "results" / name / "metrics.json").read_text())["Set5"]
    assert record["num_images"] == 5 and record["scale"] == 4 and record["self_ensemble"] is False
    assert record["metric_opts"]["psnr"] == {"type": "calculate_psnr", "crop_border": 4, "test_y_channel": True}
    psnrs = []
    for stem in photos:
        saved = _read(tmp_path / "results" / name / "visualization" / "Set5" / f"{stem}_{name}.png")
        gt = _read(tmp_path / "datasets/benchmark/Set5/HR" / f"{stem}.png")
        gt = gt[: gt.shape[0] // 4 * 4, : gt.shape[1] // 4 * 4]
        assert saved.shape == gt.shape
        psnrs.append(calculate_psnr(saved, gt, crop_border=4, test_y_channel=True))
    assert record["metrics"]["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-9)

    # The saved image is this checkpoint's output for the prepared LR file (up to float rounding).
    lr = _read(tmp_path / "datasets/benchmark/Set5/LR_bicubic/X4/chelsea.png").astype(np.float32) / 255.0
    with torch.no_grad():
        out = net.eval()(img2tensor(lr, bgr2rgb=True, float32=True)[None])
    saved = _read(tmp_path / "results" / name / "visualization" / "Set5" / f"chelsea_{name}.png")
    assert np.abs(tensor2img(out).astype(int) - saved.astype(int)).max() <= 1

    board = basicsr(tmp_path, "leaderboard", "results")
    header, _, row = [line for line in board.stdout.splitlines() if line.startswith("|")][:3]
    cells = dict(zip(header.split("|"), row.split("|"), strict=True))
    assert cells[" Set5 PSNR "].strip() == f"{np.mean(psnrs):.2f}"
    assert "Bicubic" not in board.stdout  # report_baseline: false
