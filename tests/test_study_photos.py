"""The study's photo analyses (``python -m study contrast``, ``python -m study spectrum``): a trained x4 SR
network's gain at lower contrast and in gray, and where in frequency its error sits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import serpent_arch  # noqa: F401  (before basicsr: compat fixes)
from serpent_arch.archs import Serpent


def _sr_run_and_photo_folder(tmp_path, net):
    """An experiment folder holding ``net``'s option file (tiny, x4, nearest+conv) and EMA weights, and an empty
    photo folder: what ``python -m study contrast`` and ``spectrum`` read."""
    import yaml

    exp = tmp_path / "experiments" / "run"
    (exp / "models").mkdir(parents=True)
    (exp / "run.yml").write_text(yaml.safe_dump({"scale": 4, "network_g": {
        "type": "Serpent", "preset": "tiny", "patch_size": 1, "upscale": 4, "upsampler": "nearest+conv"}}))
    torch.save({"params_ema": net.state_dict()}, exp / "models" / "net_g_latest.pth")
    photos = tmp_path / "photos"
    photos.mkdir()
    return exp, photos


def test_contrast_gains(tmp_path, capsys, single_thread):
    """An untrained Serpent returns its (linear, torch) bicubic: the same gain at every contrast; a
    network that adds the full-contrast photo's correction whatever its input gains there and loses
    once the contrast drops; the command reads an experiment folder and prints the table."""
    import numpy as np
    from basicsr.utils.matlab_functions import imresize

    from study.contrast import gains
    from study.contrast import main as contrast_main

    rng = np.random.default_rng(0)
    photo = np.clip(0.5 + 0.3 * np.sin(np.arange(32)[:, None] / 2.0) * np.cos(np.arange(32)[None] / 3.0), 0, 1)
    photo = np.repeat(photo[..., None], 3, -1).astype(np.float32) + rng.normal(0, 0.01, (32, 32, 3)).astype(np.float32)
    net = Serpent(preset="tiny", patch_size=1, upscale=4, upsampler="nearest+conv").eval()
    untrained = gains(net, [photo], 4, [1.0, 0.5])
    assert set(untrained) == {"contrast 1", "contrast 0.5", "gray"}
    assert untrained["contrast 1"] == pytest.approx(untrained["contrast 0.5"], abs=1e-3)

    correction = torch.from_numpy(photo - imresize(imresize(photo, 0.25), 4)).permute(2, 0, 1)[None]

    class FixedCorrection(nn.Module):  # bicubic + the full-contrast photo's correction, whatever the input
        def forward(self, x):
            return torch.from_numpy(imresize(x[0].permute(1, 2, 0).numpy(), 4)).permute(2, 0, 1)[None] + correction

    result = gains(FixedCorrection(), [photo], 4, [1.0, 0.5])
    assert result["contrast 1"] > 20 and result["contrast 0.5"] < 0.5 * result["contrast 1"]

    exp, photos = _sr_run_and_photo_folder(tmp_path, net)
    import cv2

    cv2.imwrite(str(photos / "a.png"), (photo[..., ::-1] * 255).round().clip(0, 255).astype(np.uint8))
    assert contrast_main(["--experiment", str(exp), "--photos", str(photos), "--contrasts", "1,0.25"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| run |"))
    values = [float(v) for v in row.strip("| ").split(" | ")[1:]]
    assert len(values) == 3 and values[0] == pytest.approx(untrained["contrast 1"], abs=0.05) and "contrast 0.25" in out
    # per photo: a column for each photo's gain at full contrast (one photo here: the mean itself)
    assert contrast_main(["--experiment", str(exp), "--photos", str(photos), "--contrasts", "1", "--per-photo"]) == 0
    out = capsys.readouterr().out
    assert "| experiment | contrast 1 | gray | a (c 1) |" in out
    row = next(line for line in out.splitlines() if line.startswith("| run |"))
    values = [float(v) for v in row.strip("| ").split(" | ")[1:]]
    assert values[2] == pytest.approx(values[0], abs=1e-6)
    # in tiles: the untrained network is bicubic wherever it runs, so the tiles change nothing
    assert contrast_main(["--experiment", str(exp), "--photos", str(photos), "--contrasts", "1", "--tile", "8"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("| run |"))
    assert float(row.strip("| ").split(" | ")[1]) == pytest.approx(values[0], abs=0.05) and "8x8 LR tiles" in out
    with pytest.raises(SystemExit):
        contrast_main(["--experiment", str(tmp_path / "missing"), "--photos", str(photos)])
    assert "expected an option file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        contrast_main(["--experiment", str(exp), "--photos", str(tmp_path / "nowhere")])
    assert "nowhere: not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        contrast_main(["--experiment", str(exp), "--photos", str(photos), "--contrasts", "1,half"])
    assert "expected comma-separated numbers" in capsys.readouterr().err


def test_spectrum_rings_add_up_to_the_mse_and_score_the_detail(tmp_path, capsys, single_thread):
    """The rings' errors add up to the photo's Y MSE; a network that returns the photo itself has no error and
    the right detail (corr 1) in every ring, bicubic has none of it; the command reads an experiment folder,
    prints a row per photo and names a malformed --bands."""
    import cv2
    import numpy as np
    from basicsr.utils.color_util import rgb2ycbcr
    from basicsr.utils.matlab_functions import imresize

    from study.spectrum import band_errors
    from study.spectrum import main as spectrum_main

    rng = np.random.default_rng(1)
    photo = np.clip(rng.normal(0.5, 0.15, (48, 40, 3)), 0, 1).astype(np.float32)
    photo = cv2.GaussianBlur(photo, (0, 0), 1.0)  # detail at every frequency, more at the low ones
    edges = [0, 0.0625, 0.125, 0.25, 0.5]
    net = Serpent(preset="tiny", patch_size=1, upscale=4, upsampler="nearest+conv").eval()
    nn.init.normal_(net.conv_last.weight, std=0.01)  # not the bicubic identity of a fresh network
    rows = band_errors(net, photo, 4, edges)
    with torch.no_grad():
        out = net(torch.from_numpy(imresize(photo, 0.25).astype(np.float32)).permute(2, 0, 1)[None])[0]
    y = [rgb2ycbcr(np.clip(v, 0, 1).astype(np.float32), y_only=True).astype(np.float64)[4:-4, 4:-4] * 255
         for v in (out.permute(1, 2, 0).numpy(), photo)]
    assert sum(e for e, _ in rows) == pytest.approx(((y[0] - y[1]) ** 2).mean(), rel=1e-6)
    assert all(-1 <= c <= 1 for _, c in rows)

    class Oracle(nn.Module):  # returns the photo whatever its input
        def forward(self, x):
            return torch.from_numpy(photo).permute(2, 0, 1)[None]

    class Bicubic(nn.Module):  # MATLAB bicubic, the baseline the detail is measured from
        def forward(self, x):
            return torch.from_numpy(imresize(x[0].permute(1, 2, 0).numpy(), 4)).permute(2, 0, 1)[None]

    oracle = band_errors(Oracle(), photo, 4, edges)
    assert all(e < 1e-6 and c == pytest.approx(1.0, abs=1e-6) for e, c in oracle)
    bicubic = band_errors(Bicubic(), photo, 4, edges)
    assert all(np.isnan(c) for _, c in bicubic) and sum(e for e, _ in bicubic) > sum(e for e, _ in rows) * 0.5

    exp, photos = _sr_run_and_photo_folder(tmp_path, net)
    for name in ("a", "b"):
        cv2.imwrite(str(photos / f"{name}.png"), (photo[..., ::-1] * 255).round().astype(np.uint8))
    assert spectrum_main(["--experiment", str(exp), "--photos", str(photos), "--bands", "0,0.125,0.5"]) == 0
    out = capsys.readouterr().out
    assert "| experiment | photo | MSE | [0, 0.125) | [0.125, 0.5) |" in out
    assert sum(line.startswith("| run | ") for line in out.splitlines()) == 2
    with pytest.raises(SystemExit):
        spectrum_main(["--experiment", str(exp), "--photos", str(photos), "--bands", "0.1,0.5"])
    assert "expected increasing ring edges starting at 0" in capsys.readouterr().err


def test_edges_images_and_gains(tmp_path, capsys, single_thread):
    """``python -m study edges``: every family drawn at the contrast asked (8-bit, gray and colour); an
    untrained Serpent is torch's bicubic, so its gains are those of torch's bicubic against the MATLAB bicubic
    baseline; the command reads an experiment and writes its table."""
    import numpy as np

    from study import edges

    made = edges.images(64, 0.6)
    assert set(made) == set(edges.FAMILIES)
    assert len(made["straight"]) == 2 * len(edges.ANGLES) and len(made["curved"]) == 2 * len(edges.RADII)
    gray_edge = made["straight"][0][..., 0]  # 0 degrees: the left half dark, the right half bright
    assert gray_edge.min() == pytest.approx(round(0.2 * 255) / 255) and gray_edge.max() == pytest.approx(0.8)
    assert np.all(np.round(gray_edge * 255) == gray_edge * 255)  # 8-bit levels
    colour = made["curved"][1]
    assert np.ptp(colour[..., 0]) > np.ptp(colour[..., 2])  # the colour scales each channel's contrast

    net = Serpent(preset="tiny", patch_size=1, upscale=4, upsampler="nearest+conv").eval()
    result = edges.gains(net, 4, 64, [0.3])
    assert set(result) == {f"{family} 0.3" for family in edges.FAMILIES}

    class TorchBicubic(nn.Module):
        def forward(self, x):
            return nn.functional.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False)

    assert result == pytest.approx(edges.gains(TorchBicubic(), 4, 64, [0.3]), abs=1e-3)

    exp, _ = _sr_run_and_photo_folder(tmp_path, net)
    out = tmp_path / "edges.md"
    assert edges.main(["--experiment", str(exp), "--size", "64", "--contrasts", "0.9", "--out", str(out)]) == 0
    text = out.read_text()
    assert "| run |" in text and "straight 0.9" in text and "python -m study edges --experiment" in text
