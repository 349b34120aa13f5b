"""SerpentModel pieces: optimizers, tiled inference, baseline metrics."""

import os
import subprocess
import sys

import pytest
import torch
from torch import nn

import serpent_arch  # noqa: F401
from serpent_arch.forward_passes import tiled_forward
from serpent_arch.models import SerpentModel


def _model(**val):
    opt = {
        "name": "m",
        "num_gpu": 0,
        "dist": False,
        "is_train": False,
        "scale": 2,
        "network_g": {"type": "Serpent", "preset": "tiny", "upscale": 2},
        "path": {},
        "val": val,
    }
    return SerpentModel(opt)


@pytest.mark.parametrize("name", ["Adam", "AdamW", "SGD"])
def test_any_torch_optimizer(name):
    model = _model()
    opt = model.get_optimizer(name, model.net_g.parameters(), lr=1e-3)
    assert type(opt).__name__ == name


def test_unknown_optimizer_is_named():
    model = _model()
    with pytest.raises(ValueError, match="train.optim_g.type: unknown optimizer 'Adamm'"):
        model.get_optimizer("Adamm", model.net_g.parameters(), lr=1e-3)


class _LocalNet(nn.Module):
    """A 2x upsampler whose output pixel depends only on a 5x5 input neighbourhood."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 12, 3, padding=1))
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x):
        return self.shuffle(self.body(x))


@pytest.mark.parametrize("size,tile,overlap", [((45, 61), 16, 8), ((32, 20), 12, 10), ((30, 30), 64, 8)])
def test_tiled_forward_matches_whole_image_for_a_local_network(size, tile, overlap):
    net = _LocalNet().eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        whole = net(x)
    tiled = tiled_forward(net, x, scale=2, tile=tile, overlap=overlap)
    assert tiled.shape == whole.shape
    # The receptive field (2 input px) is within the dropped quarter of the overlap: exact agreement.
    torch.testing.assert_close(tiled, whole, rtol=1e-5, atol=1e-5)


def test_tiled_validation_and_scale_check():
    torch.manual_seed(0)
    model = _model(tile=24, tile_overlap=12)
    x = torch.rand(1, 3, 40, 52)
    with torch.no_grad():
        whole = model.net_g.eval()(x)
    model.lq = x
    model.test()
    assert model.output.shape == whole.shape == (1, 3, 80, 104)
    assert torch.isfinite(model.output).all()
    with pytest.raises(ValueError, match="check the option 'scale'"):
        tiled_forward(model.net_g, x, scale=3, tile=24, overlap=12)
    with pytest.raises(ValueError, match="tile_overlap must be in"):
        tiled_forward(model.net_g, x, scale=2, tile=24, overlap=24)


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    model = _model()
    model.opt["path"] = {"models": str(tmp_path), "training_states": str(tmp_path)}
    model.save_network(model.net_g, "net_g", 5)
    path = tmp_path / "net_g_5.pth"
    saved = torch.load(path)["params"]
    assert set(saved) == set(model.net_g.state_dict())
    before = path.read_bytes()

    # A save that dies half-way (part of the file written, then an error; BasicSR retries and then
    # only warns) leaves the old file, no staging folder and no temporary file.
    real_save = torch.save

    def failing_save(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        with open(f, "r+b") as handle:
            handle.truncate(len(before) // 2)
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr("basicsr.models.base_model.time.sleep", lambda seconds: None)
    model.save_network(model.net_g, "net_g", 5)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net_g_5.pth"]
    assert model.opt["path"]["models"] == str(tmp_path)


def test_stale_temporary_files_of_killed_saves_are_removed(tmp_path):
    from serpent_arch.compat.fixes import remove_stale_temp_files

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"net_g_8.pth.tmp{dead.pid}").write_bytes(b"half")  # its writer is gone
    (tmp_path / f"net_g_9.pth.tmp{os.getpid()}").write_bytes(b"in progress")  # a live writer
    (tmp_path / "net_g_4.pth").write_bytes(b"done")
    (tmp_path / f"saving.tmp{dead.pid}").mkdir()  # the staging folder of a killed save_network
    (tmp_path / f"saving.tmp{dead.pid}" / "net_g_8.pth").write_bytes(b"half")
    remove_stale_temp_files(str(tmp_path), str(tmp_path / "absent"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["net_g_4.pth", f"net_g_9.pth.tmp{os.getpid()}"]


def test_self_ensemble_averages_the_eight_flips_and_rotations():
    from serpent_arch.forward_passes import _dihedral, _dihedral_inverse, self_ensemble_forward

    x = torch.rand(1, 3, 5, 7)
    variants = [_dihedral(x, k) for k in range(8)]
    assert len({tuple(v.flatten().tolist()) for v in variants}) == 8  # all distinct
    for k, v in enumerate(variants):
        assert torch.equal(_dihedral_inverse(v, k), x)

    def position_dependent(t):  # not equivariant, so every transform gives another result
        ramp = torch.arange(t.shape[-1], dtype=t.dtype)
        return t * ramp + t.roll(1, dims=-2)

    expected = sum(_dihedral_inverse(position_dependent(_dihedral(x, k)), k) for k in range(8)) / 8
    torch.testing.assert_close(self_ensemble_forward(position_dependent, x), expected)

    # SerpentModel.test with val.self_ensemble: true gives the ensemble, not the single forward
    model = _model(self_ensemble=True)
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.net_g.parameters():
            p.add_(0.01 * torch.randn_like(p))
    model.lq = torch.rand(1, 3, 16, 20)
    model.test()
    single = model.net_g.eval()(model.lq)
    manual = self_ensemble_forward(model.net_g, model.lq)
    torch.testing.assert_close(model.output, manual)
    assert not torch.allclose(model.output, single)  # the network is not flip-equivariant


def test_ema_decay_warms_up_to_the_configured_decay():
    from serpent_arch.models.serpent_model import ema_decay_at

    assert ema_decay_at(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay_at(0.999, 100) == pytest.approx(101 / 110)
    assert ema_decay_at(0.999, 10**6) == 0.999
    assert ema_decay_at(0.5, 100) == 0.5


@pytest.mark.parametrize("warmup", [True, False])
def test_ema_update_uses_the_iteration_unless_warmup_is_off(warmup):
    model = _model()
    model.opt["train"] = {"ema_warmup": warmup}
    model.net_g_ema = type(model.net_g)(preset="tiny", upscale=2)
    ema, raw = model.net_g_ema.shallow.weight, model.net_g.shallow.weight
    before = ema.detach().clone()
    model._ema_iter = 1
    model.model_ema(decay=0.999)
    decay = 2 / 11 if warmup else 0.999
    torch.testing.assert_close(ema.detach(), decay * before + (1 - decay) * raw.detach())


def test_windowed_networks_are_padded_to_their_window_when_testing():
    """SwinIR (BasicSR's) only takes multiples of its window; SerpentModel pads like SwinIRModel."""
    opt = {
        "name": "m",
        "num_gpu": 0,
        "dist": False,
        "is_train": False,
        "scale": 2,
        "network_g": {
            "type": "SwinIR", "upscale": 2, "in_chans": 3, "img_size": 16, "window_size": 8, "img_range": 1.0,
            "depths": [2], "embed_dim": 12, "num_heads": [2], "mlp_ratio": 2, "upsampler": "pixelshuffledirect",
        },
        "path": {},
        "val": {},
    }
    model = SerpentModel(opt)
    model.lq = torch.rand(1, 3, 19, 13)
    model.test()
    assert model.output.shape == (1, 3, 38, 26)
    padded = torch.nn.functional.pad(model.lq, (0, 3, 0, 5), mode="reflect")
    with torch.no_grad():
        torch.testing.assert_close(model.output, model.net_g.eval()(padded)[..., :38, :26])


class _Loader:
    """A validation loader of ``n`` items (what SerpentModel.validation reads of it)."""

    def __init__(self, n, name="set"):
        self.dataset = type("Set", (), {"opt": {"name": name}, "__len__": lambda self: n})()
        self.items = list(range(n))

    def __len__(self):
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


def test_training_validates_each_set_once_per_weights():
    """BasicSR's loop validates at the last iteration and again after the loop (its counter then past
    total_iter); the second, on the same weights, is left out, and records name the iteration trained."""
    model = _model()
    model.opt["is_train"] = True
    calls = []
    model.nondist_validation = lambda loader, it, *rest: calls.append((loader.dataset.opt["name"], it))
    model._ema_iter = 4
    model.validation(_Loader(2), 4, None)  # in the loop, at val_freq
    model.validation(_Loader(2, "other"), 4, None)  # a second set at the same iteration still runs
    model.validation(_Loader(2), 5, None)  # after the loop: same weights
    assert calls == [("set", 4), ("other", 4)]
    model._ema_iter = 6  # total_iter not a multiple of val_freq: the final validation runs, at iteration 6
    model.validation(_Loader(2), 7, None)
    assert calls[-1] == ("set", 6)
    model.opt["is_train"] = False  # `basicsr test` passes the run's name as the iteration
    model.validation(_Loader(2), "name", None)
    model.validation(_Loader(2), "name", None)
    assert calls[-2:] == [("set", "name")] * 2


def test_val_max_images_validates_on_the_first_images_only():
    from serpent_arch.models.serpent_model import _FirstImages

    limited = _FirstImages(_Loader(5), 2)
    assert len(limited) == 2 and list(limited) == [0, 1] and limited.dataset.opt["name"] == "set"
    assert len(_FirstImages(_Loader(1), 3)) == 1


def test_the_guarded_optimizer_steps_without_a_scheduler_warning(tmp_path):
    """The non-finite guard hooks into the optimizer's step instead of replacing it, so torch's check
    that the scheduler steps after the optimizer sees the step (no UserWarning at iteration 2)."""
    import warnings

    from test_amp import batch, build

    from serpent_arch import nonfinite

    model = build(tmp_path, False)
    nonfinite.guard_optimizer(model.optimizer_g, model)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for it in (1, 2, 3):
            model.update_learning_rate(it)  # BasicSR's order: the scheduler first, from iteration 2
            model.feed_data(batch(it))
            model.optimize_parameters(it)
