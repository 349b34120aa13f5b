"""`basicsr infer` (serpent_arch.infer), run in-process on the CPU with a tiny Serpent x2.

The network gets random non-zero weights: its last conv starts at zero (an untrained Serpent
returns the bicubic baseline), so without the perturbation every check below would only see
bicubic upscaling.
"""

# serpent_arch before torch: it sets a short OpenMP spin-wait, without which this file ran 9x slower
# on a 2-core machine busy with other jobs (see serpent_arch/__init__.py).
import serpent_arch  # noqa: F401

# isort: split
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from skimage import data

from serpent_arch.archs.serpent_arch import Serpent
from serpent_arch.infer import COMPARE_GAP, main

REPO = Path(__file__).resolve().parents[1]
SCALE = 2
NET_OPT = {"type": "Serpent", "preset": "tiny", "upscale": SCALE, "drop_path_rate": 0.0}


def write_options(path: Path, **network_args) -> Path:
    network_g = {**NET_OPT, **network_args}
    path.write_text(yaml.safe_dump({"name": "infer_test", "scale": SCALE, "network_g": network_g}))
    return path


def perturbed_serpent(seed: int, **network_args) -> Serpent:
    args = {key: value for key, value in {**NET_OPT, **network_args}.items() if key != "type"}
    torch.manual_seed(seed)
    net = Serpent(**args).eval()
    with torch.no_grad():
        for param in net.parameters():
            param.add_(0.02 * torch.randn_like(param))
    return net


def photo_crop(top: int, left: int, height: int, width: int) -> np.ndarray:
    """A crop of scikit-image's astronaut, (H, W, 3) uint8 BGR."""
    return np.ascontiguousarray(data.astronaut()[top : top + height, left : left + width, ::-1])


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """Option file and checkpoint: ``params_ema`` is a perturbed tiny Serpent, ``params`` an
    untouched one saved with a DataParallel ``module.`` prefix (so it returns plain bicubic)."""
    root = tmp_path_factory.mktemp("infer_model")
    net = perturbed_serpent(seed=0)
    torch.manual_seed(1)
    untrained = Serpent(**{k: v for k, v in NET_OPT.items() if k != "type"})
    checkpoint = {
        "params": {f"module.{key}": value for key, value in untrained.state_dict().items()},
        "params_ema": net.state_dict(),
    }
    torch.save(checkpoint, root / "net_g.pth")
    return {"opt": write_options(root / "opt.yml"), "weights": root / "net_g.pth", "net": net}


def infer(model, images, out, *flags, opt=None, weights=None) -> int:
    opt, weights = opt or model["opt"], weights or model["weights"]
    return main(["-opt", str(opt), "--weights", str(weights), "-i", str(images), "-o", str(out), *flags])


def expected_output(net, bgr: np.ndarray) -> np.ndarray:
    """The network on a [0, 1] (H, W, 3) BGR float image, as (sH, sW, 3) BGR float."""
    x = torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = net(x)[0].permute(1, 2, 0).numpy()
    return np.clip(y[..., ::-1], 0, 1)


def to_float(img: np.ndarray) -> np.ndarray:
    return img.astype(np.float32) / (65535.0 if img.dtype == np.uint16 else 255.0)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int64) - b.astype(np.int64)).max())


def test_folder_of_odd_gray_rgba_and_16_bit_images(model, tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    odd = photo_crop(100, 150, 37, 53)
    gray = cv2.cvtColor(photo_crop(20, 200, 29, 31), cv2.COLOR_BGR2GRAY)
    rgba = np.dstack([photo_crop(60, 60, 24, 40), np.tile(np.linspace(0, 255, 40).astype(np.uint8), (24, 1))])
    deep = (
        photo_crop(300, 300, 20, 22).astype(np.uint16) * 257 + np.arange(22, dtype=np.uint16)[None, :, None]
    ).astype(np.uint16)
    for name, img in (("odd", odd), ("gray", gray), ("rgba", rgba), ("deep", deep)):
        assert cv2.imwrite(str(images / f"{name}.png"), img)
    (images / "notes.txt").write_text("not an image extension: the folder scan skips it")

    assert infer(model, images, tmp_path / "out") == 0
    assert "4 restored, 0 failed" in capsys.readouterr().out
    read = {name: cv2.imread(str(tmp_path / "out" / f"{name}.png"), cv2.IMREAD_UNCHANGED) for name in ("odd", "gray")}
    read.update(
        {name: cv2.imread(str(tmp_path / "out" / f"{name}.png"), cv2.IMREAD_UNCHANGED) for name in ("rgba", "deep")}
    )
    net = model["net"]

    # odd size, colour: exactly the network's output (RGB order, params_ema loaded), rounded
    assert read["odd"].shape == (37 * SCALE, 53 * SCALE, 3) and read["odd"].dtype == np.uint8
    assert max_abs_diff(read["odd"], np.rint(expected_output(net, to_float(odd)) * 255)) <= 1

    # gray: replicated into the 3-channel network, written back as one channel (luma weights)
    assert read["gray"].shape == (29 * SCALE, 31 * SCALE)
    restored = expected_output(net, np.repeat(to_float(gray)[..., None], 3, axis=2))
    assert max_abs_diff(read["gray"], np.rint(cv2.cvtColor(restored, cv2.COLOR_BGR2GRAY) * 255)) <= 1

    # RGBA: colour through the network, alpha kept and enlarged bicubically
    assert read["rgba"].shape == (24 * SCALE, 40 * SCALE, 4)
    alpha = cv2.resize(to_float(rgba[..., 3]), (40 * SCALE, 24 * SCALE), interpolation=cv2.INTER_CUBIC)
    assert max_abs_diff(read["rgba"][..., 3], np.rint(np.clip(alpha, 0, 1) * 255)) <= 1
    assert max_abs_diff(read["rgba"][..., :3], np.rint(expected_output(net, to_float(rgba[..., :3])) * 255)) <= 1

    # 16-bit in, 16-bit out, at 16-bit precision
    assert read["deep"].dtype == np.uint16 and read["deep"].shape == (20 * SCALE, 22 * SCALE, 3)
    assert max_abs_diff(read["deep"], np.rint(expected_output(net, to_float(deep)) * 65535)) <= 2


def test_broken_files_are_named_and_the_others_restored(model, tmp_path, capsys):
    images = tmp_path / "in"
    images.mkdir()
    cv2.imwrite(str(images / "good.png"), photo_crop(0, 0, 16, 16))
    (images / "broken.png").write_bytes(b"this is not a PNG" * 10)
    (images / "empty.jpg").write_bytes(b"")
    cv2.imwrite(str(images / "good.jpg"), photo_crop(0, 0, 16, 16))  # same stem as good.png: same output name

    assert infer(model, images, tmp_path / "out") == 1
    captured = capsys.readouterr()
    assert (tmp_path / "out" / "good.png").is_file()
    assert not (tmp_path / "out" / "broken.png").exists()
    broken_line = next(line for line in captured.err.splitlines() if "broken.png" in line)
    assert "cannot be decoded" in broken_line
    assert any("empty.jpg" in line and "empty" in line for line in captured.err.splitlines())
    assert any("good.png" in line and "same stem as" in line for line in captured.err.splitlines())
    assert "1 restored, 3 failed" in captured.out


def test_colour_image_into_a_gray_network_is_a_channel_mismatch(tmp_path, capsys):
    opt = write_options(tmp_path / "gray.yml", in_chans=1)
    torch.save({"params": perturbed_serpent(seed=2, in_chans=1).state_dict()}, tmp_path / "gray.pth")
    images = tmp_path / "in"
    images.mkdir()
    cv2.imwrite(str(images / "colour.png"), photo_crop(0, 0, 16, 20))
    cv2.imwrite(str(images / "gray.png"), cv2.cvtColor(photo_crop(0, 0, 16, 20), cv2.COLOR_BGR2GRAY))

    assert (
        main(["-opt", str(opt), "--weights", str(tmp_path / "gray.pth"), "-i", str(images), "-o", str(tmp_path)]) == 1
    )
    err = capsys.readouterr().err
    assert "colour.png" in err and "channel mismatch" in err and "in_chans" in err
    assert cv2.imread(str(tmp_path / "gray.png"), cv2.IMREAD_UNCHANGED).shape == (16 * SCALE, 20 * SCALE)


def test_weights_of_another_preset_stop_before_any_image(model, tmp_path, capsys):
    opt = write_options(tmp_path / "small.yml", preset="small")
    cv2.imwrite(str(tmp_path / "a.png"), photo_crop(0, 0, 16, 16))

    assert infer(model, tmp_path / "a.png", tmp_path / "out", opt=opt) == 2
    err = capsys.readouterr().err
    assert str(model["weights"]) in err and str(opt) in err and "preset 'small'" in err
    assert "fit preset 'tiny'" in err  # the hint names the preset they were trained as
    assert not (tmp_path / "out" / "a.png").exists()


def test_param_key_module_prefix_and_cpu_precision(model, tmp_path, capsys):
    lq = photo_crop(200, 200, 20, 24)
    cv2.imwrite(str(tmp_path / "lq.png"), lq)
    # the untrained `params` (saved with a `module.` prefix) return exactly the bicubic baseline
    assert infer(model, tmp_path / "lq.png", tmp_path / "plain", "--param-key", "params") == 0
    x = torch.from_numpy(to_float(lq)).permute(2, 0, 1)[None]
    bicubic = F.interpolate(x, scale_factor=SCALE, mode="bicubic", align_corners=False)[0].permute(1, 2, 0).numpy()
    assert max_abs_diff(cv2.imread(str(tmp_path / "plain" / "lq.png")), np.rint(np.clip(bicubic, 0, 1) * 255)) <= 1

    # a bare state dict, in bf16 autocast on the CPU (as val.amp: bf16): within 2 levels of fp32
    torch.save(model["net"].state_dict(), tmp_path / "bare.pth")
    flags = ("--device", "cpu", "--precision", "bf16", "--suffix", "_x2")
    assert infer(model, tmp_path / "lq.png", tmp_path / "out", *flags, weights=tmp_path / "bare.pth") == 0
    out = capsys.readouterr().out
    assert "cpu bf16;" in out and "selective scan: " in out and " on cpu (" in out
    written = cv2.imread(str(tmp_path / "out" / "lq_x2.png"))
    assert max_abs_diff(written, np.rint(expected_output(model["net"], to_float(lq)) * 255)) <= 2

    assert infer(model, tmp_path / "lq.png", tmp_path / "out", "--param-key", "params_old") == 2
    assert "no entry 'params_old'" in capsys.readouterr().err


def test_tiled_and_self_ensemble_stay_close_to_whole_image(model, tmp_path):
    cv2.imwrite(str(tmp_path / "img.png"), photo_crop(100, 150, 64, 64))
    assert infer(model, tmp_path / "img.png", tmp_path / "whole") == 0
    assert infer(model, tmp_path / "img.png", tmp_path / "tiled", "--tile", "32", "--tile-overlap", "16") == 0
    assert infer(model, tmp_path / "img.png", tmp_path / "ensemble", "--self-ensemble") == 0
    whole, tiled, ensemble = (cv2.imread(str(tmp_path / d / "img.png")) for d in ("whole", "tiled", "ensemble"))

    def psnr(a, b):
        return 10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))

    # Each Serpent scan runs over the whole image (tile), so a tile sees less context and tiled
    # output cannot equal the whole-image one; the blending keeps the difference small.
    assert not np.array_equal(tiled, whole)
    assert psnr(tiled, whole) > 40
    # A random network is not flip/rotation-equivariant: the ensemble differs, but stays near.
    assert not np.array_equal(ensemble, whole) and psnr(ensemble, whole) > 20


def test_compare_writes_side_by_side_panels_and_psnr(model, tmp_path, capsys):
    (tmp_path / "lq").mkdir()
    (tmp_path / "gt").mkdir()
    hr = photo_crop(120, 180, 40, 56)
    cv2.imwrite(str(tmp_path / "gt" / "face.png"), hr)
    cv2.imwrite(str(tmp_path / "lq" / "face.png"), cv2.resize(hr, (28, 20), interpolation=cv2.INTER_AREA))
    cv2.imwrite(str(tmp_path / "lq" / "alone.png"), photo_crop(0, 0, 20, 28))  # no ground truth

    flags = ("--gt", str(tmp_path / "gt"), "--compare")
    assert infer(model, tmp_path / "lq", tmp_path / "out", *flags) == 0
    out = capsys.readouterr().out
    assert "mean Y-PSNR of 1 with ground truth" in out and "bicubic" in out
    with_gt = cv2.imread(str(tmp_path / "out" / "compare" / "face.png"))
    without_gt = cv2.imread(str(tmp_path / "out" / "compare" / "alone.png"))
    assert with_gt.shape[1] == 3 * 56 + 2 * COMPARE_GAP and with_gt.shape[0] > 40  # caption strip above
    assert without_gt.shape[1] == 2 * 56 + COMPARE_GAP
    # the restored panel (second) holds the restored image, below the caption strip
    restored = cv2.imread(str(tmp_path / "out" / "face.png"))
    panel = with_gt[-40:, 56 + COMPARE_GAP : 2 * 56 + COMPARE_GAP]
    assert np.array_equal(panel, restored)
    assert np.all(with_gt[:, 56 : 56 + COMPARE_GAP] == 255)


def test_usage_errors_exit_2(model, tmp_path, capsys):
    cv2.imwrite(str(tmp_path / "a.png"), photo_crop(0, 0, 16, 16))
    assert main(["-opt", str(model["opt"]), "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o")]) == 2
    assert "--weights" in capsys.readouterr().err
    assert infer(model, tmp_path / "missing", tmp_path / "o") == 2
    assert "does not exist" in capsys.readouterr().err
    assert infer(model, tmp_path / "a.png", tmp_path / "o", "--tile", "32", "--tile-overlap", "32") == 2
    assert infer(model, tmp_path / "a.png", tmp_path, "--suffix", "") == 2  # would overwrite its input
    assert "overwrite" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert infer(model, tmp_path / "a.png", tmp_path / "o", "--device", "cuda") == 2


def test_basicsr_infer_help_runs_as_a_command():
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run(
        [sys.executable, "-m", "serpent_arch.cli", "infer", "-h"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "--tile-overlap" in proc.stdout and "--compare" in proc.stdout


def _experiment(root: Path, model, name="exp") -> Path:
    """An experiment folder as `basicsr train` leaves it: options_resolved.yml and models/net_g_*.pth."""
    exp = root / "experiments" / name
    (exp / "models").mkdir(parents=True)
    (exp / "options_resolved.yml").write_text(model["opt"].read_text())
    (exp / "models" / "net_g_latest.pth").write_bytes(model["weights"].read_bytes())
    return exp


def test_experiment_folder_gives_the_network_and_its_newest_weights(model, tmp_path, capsys):
    exp = _experiment(tmp_path, model)
    cv2.imwrite(str(tmp_path / "a.png"), photo_crop(0, 0, 16, 20))
    assert main(["-e", str(exp), "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert f"weights {exp / 'models' / 'net_g_latest.pth'} [params_ema]" in out
    expected = cv2.imread(str(tmp_path / "out" / "a.png"))
    assert infer(model, tmp_path / "a.png", tmp_path / "ref") == 0
    assert np.array_equal(expected, cv2.imread(str(tmp_path / "ref" / "a.png")))
    # --force_yml applies to the experiment's options as to a training's: another preset does not fit
    flags = ["-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o2"), "--force_yml", "network_g:preset=small"]
    assert main(["-e", str(exp), *flags]) == 2
    err = capsys.readouterr().err
    assert f"network_g of '{exp / 'options_resolved.yml'}'" in err and "fit preset 'tiny'" in err
    # -e with -opt is ambiguous; a folder without the resolved options says what to give instead
    assert main(["-e", str(exp), "-opt", str(model["opt"]), "-i", str(tmp_path / "a.png"), "-o", "o"]) == 2
    assert "not both" in capsys.readouterr().err
    (exp / "options_resolved.yml").unlink()
    assert main(["-e", str(exp), "-i", str(tmp_path / "a.png"), "-o", str(tmp_path / "o3")]) == 2
    assert "no options_resolved.yml" in capsys.readouterr().err


def test_remove_yml_removes_a_key_and_names_a_missing_one(model, tmp_path, capsys):
    opt = write_options(tmp_path / "drop.yml", drop_path_rate=0.5)
    cv2.imwrite(str(tmp_path / "a.png"), photo_crop(0, 0, 16, 16))
    assert infer(model, tmp_path / "a.png", tmp_path / "o", "--remove_yml", "network_g:drop_path_rate", opt=opt) == 0
    assert infer(model, tmp_path / "a.png", tmp_path / "o", "--remove_yml", "network_g:no_such_key", opt=opt) == 2
    assert "--remove_yml 'network_g:no_such_key': there is no key 'no_such_key' to remove" in capsys.readouterr().err


def test_no_rate_is_shown_for_failed_images(model, tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert infer(model, tmp_path / "bad.png", tmp_path / "o") == 1
    captured = capsys.readouterr()
    assert "img/s" not in captured.err and "images/s" not in captured.out
    assert "0 restored, 1 failed" in captured.out
