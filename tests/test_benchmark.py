"""Tests of the network benchmark: FLOP counting with the scan formula, memory tracking, the CLI."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import serpent_arch  # noqa: F401  (before basicsr: compat fixes)
from serpent_arch.archs import Serpent
from serpent_arch.archs.ss2d import SS2D
from serpent_arch.benchmark import __main__ as dispatcher
from serpent_arch.benchmark.network import NETWORKS, main
from serpent_arch.measure.flops import count_flops, scan_flops
from serpent_arch.measure.memory import TensorMemoryTracker, cpu_allocator_peak, cpu_memory_method


@pytest.fixture
def single_thread():
    """One torch thread: on a shared, busy CPU multi-threaded forwards stall and the tests would crawl."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


class ChannelsFirstSS2D(nn.Module):
    """One SS2D taking an image-shaped (B, C, H, W) input, so count_flops can drive it."""

    def __init__(self, dim: int, **kwargs):
        super().__init__()
        self.ss2d = SS2D(dim, **kwargs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ss2d(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def test_scan_flops_formula():
    # 8 FLOPs per state element; per channel step 1 (bias) + 3 (softplus) + 2 (D) + 5 (gate)
    assert scan_flops(2, 3, 5, 16) == 2 * 3 * 5 * 8 * 16
    assert scan_flops(2, 3, 5, 16, delta_bias=True, delta_softplus=True, D=True, z=True) == 2 * 3 * 5 * (128 + 11)


@pytest.mark.parametrize("directions", [1, 4])
def test_scan_part_matches_formula_for_known_shape(directions):
    dim, d_state, h, w = 8, 4, 5, 6
    model = ChannelsFirstSS2D(dim, d_state=d_state, ssm_ratio=2.0, scan_directions=directions)
    flops = count_flops(model, (h, w), in_chans=dim)
    # SS2D calls the scan once over K * D_in channels, with delta_bias, softplus and D, no gate
    expected = scan_flops(1, directions * 2 * dim, h * w, d_state, delta_bias=True, delta_softplus=True, D=True)
    assert flops.scan == expected
    assert flops.dense > 0


def test_counter_includes_scan():
    model = Serpent(preset="tiny").eval()
    with_scan = count_flops(model, 64)
    without = count_flops(model, 64, include_scan=False)
    assert without.scan == 0
    assert with_scan.dense == without.dense
    assert with_scan.total > without.total
    assert with_scan.total == with_scan.dense + with_scan.scan


def test_meta_count_equals_real_forward(single_thread):
    # counting runs on the meta device; a real CPU forward must give the same dense and scan counts
    model = Serpent(preset="tiny").eval()
    meta = count_flops(model, 32)
    real = count_flops(model, 32, device="cpu")
    assert (meta.dense, meta.scan) == (real.dense, real.scan)


@pytest.mark.parametrize("preset", ["tiny", "base"])
def test_serpent_flops_linear_in_pixels(variant, single_thread):
    model = Serpent(preset=variant).eval()
    ratio = count_flops(model, 128).total / count_flops(model, 64).total
    assert ratio == pytest.approx(4.0, rel=0.03)


def test_swinir_baseline_configuration(single_thread):
    model = NETWORKS["swinir"]()
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert params == pytest.approx(11.5, abs=0.1)
    # docs/architecture.md, section 1 (Variants): 400 GFLOPs at 128x128 by torch's counter
    assert count_flops(model, 128).total / 1e9 == pytest.approx(400, rel=0.01)


def test_rrdbnet_restores_at_same_size(single_thread):
    model = NETWORKS["rrdbnet"]().eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_peak_memory_tracker_counts_live_allocations():
    existing = torch.ones(1000)
    tracker = TensorMemoryTracker()
    with tracker:
        view = existing.view(10, 100)  # view of a pre-existing tensor: no new memory
        a = torch.ones(1000)  # 4000 B
        b = a + 1  # 8000 B live
        del a
        c = b * 2  # 8000 B live again (a was freed)
        c.add_(1)  # in place: nothing new
        del b
    assert tracker.peak_bytes == 8000
    assert tracker.current_bytes == 4000  # c is still alive
    del view, c


def test_cpu_allocator_peak_sees_temporaries():
    if cpu_memory_method() != "allocator":
        pytest.skip("this torch's profiler records no allocation events")

    def work():
        a = torch.ones(1000)  # 4000 B
        b = a + 1  # 8000 B live
        del a
        return b * 2  # 8000 B live again

    assert 8000 <= cpu_allocator_peak(work) <= 8100  # + a few bytes: the Python scalars become tensors
    # a convolution's internal buffers are invisible to the storage tracker but not to the allocator
    conv, x = nn.Conv2d(8, 8, 3, padding=1), torch.rand(1, 8, 64, 64)
    with torch.no_grad():
        tracker = TensorMemoryTracker()
        with tracker:
            conv(x)
        assert cpu_allocator_peak(lambda: conv(x)) >= tracker.peak_bytes >= 8 * 64 * 64 * 4


def test_quick_run_writes_outputs(tmp_path):
    threads = torch.get_num_threads()
    paths = main(["--quick", "--repeats", "1", "--threads", "1", "--out", str(tmp_path)])
    assert torch.get_num_threads() == threads  # main restores the caller's setting
    assert paths["md"].name == "network_cpu_1threads_quick.md"
    for ext in ("md", "csv", "png"):
        assert paths[ext].exists() and paths[ext].stat().st_size > 0
    text = paths["md"].read_text()
    assert "serpent-tiny" in text and "rrdbnet" in text
    assert "selective scan backend:" in text
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    lines = paths["csv"].read_text().strip().splitlines()
    assert len(lines) == 1 + 4  # header + 2 networks x 2 sizes


def test_dispatcher(capsys):
    assert dispatcher.main([]) == 2
    assert dispatcher.main(["nonsense"]) == 2
    with pytest.raises(SystemExit) as exc:
        dispatcher.main(["network", "--help"])
    assert exc.value.code == 0
    assert "--max-gflops" in capsys.readouterr().out


def _sr_run_and_photo_folder(tmp_path, net):
    """An experiment folder holding ``net``'s option file (tiny, x4, nearest+conv) and EMA weights, and an empty
    photo folder: what ``benchmark contrast`` and ``benchmark spectrum`` read."""
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

    from serpent_arch.benchmark.contrast import gains
    from serpent_arch.benchmark.contrast import main as contrast_main

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

    from serpent_arch.benchmark.spectrum import band_errors
    from serpent_arch.benchmark.spectrum import main as spectrum_main

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
