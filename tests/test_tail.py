"""The full-resolution tail in row bands (inference on large images) against the whole-image tail."""

import pytest
import torch

from serpent_arch.archs import Serpent, tail
from serpent_arch.archs.serpent_arch import pad_to_multiple

CASES = [
    dict(preset="tiny"),  # the U-Net: 4x4 patches, no upsampler
    dict(preset="tiny", patch_size=2, upscale=2),  # enlarged bicubically first (upsampler interpolate)
    dict(preset="sr-tiny", upscale=4),  # nearest+conv, two 2x steps
    dict(preset="sr-tiny", upscale=3),  # nearest+conv, one 3x step
    dict(preset="sr-tiny", upscale=2, upsampler="pixelshuffle", contrast_norm_scale=True),
    dict(preset="sr-tiny", upscale=4, upsampler_channels=8, upsampler_fused=False),
]


def _network(kwargs: dict, dtype=torch.float64) -> Serpent:
    torch.manual_seed(0)
    net = Serpent(scan_backend="torch", **kwargs).eval().to(dtype)
    for module in net.modules():  # the last conv starts at zero: give every conv weights that show
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.normal_(module.weight, std=0.1)
    return net


def _both(net: Serpent, x: torch.Tensor, monkeypatch) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        monkeypatch.setattr(tail, "BAND_ELEMENTS", 1 << 40)
        whole = net(x)
        monkeypatch.setattr(tail, "BAND_ELEMENTS", 1)  # bands of one patch row: every band boundary is tested
        padded, (h, w) = pad_to_multiple(x, net.pad_multiple)
        assert tail.use_bands(net, net.restore_tokens(padded), h, w) or h <= net.patch_size
        banded = net(x)
    return whole, banded


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(f"{v}" for v in k.values()))
@pytest.mark.parametrize("shape", [(1, 3, 37, 45), (2, 3, 24, 17), (1, 3, 5, 9), (1, 3, 1, 6)])
def test_bands_compute_the_whole_image_function(kwargs, shape, monkeypatch):
    """In float64 the banded tail equals the whole one to rounding: every kept row sees the same inputs and the
    zero padding only at the image's own top and bottom (odd sizes, padded and cropped; one-row images)."""
    net = _network(kwargs)
    x = torch.rand(shape, dtype=torch.float64)
    whole, banded = _both(net, x, monkeypatch)
    assert banded.shape == whole.shape
    torch.testing.assert_close(banded, whole, rtol=1e-12, atol=1e-12)


def test_bands_in_float32(monkeypatch):
    net = _network(dict(preset="sr-tiny", upscale=4), torch.float32)
    whole, banded = _both(net, torch.rand(1, 3, 33, 20), monkeypatch)
    torch.testing.assert_close(banded, whole, rtol=1e-5, atol=1e-5)


def test_bands_only_for_inference_on_large_images(monkeypatch):
    net = _network(dict(preset="tiny"))
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    tokens = net.restore_tokens(x)
    monkeypatch.setattr(tail, "BAND_ELEMENTS", 1)
    assert not tail.use_bands(net, tokens, 32, 32)  # autograd on: the whole tail, so gradients are as before
    with torch.no_grad():
        assert tail.use_bands(net, tokens, 32, 32)
        monkeypatch.setattr(tail, "BAND_ELEMENTS", 1 << 24)
        assert not tail.use_bands(net, tokens, 32, 32)  # one band would hold it all
        # the default bands of a 2048x2048 base U-Net: feature maps of at most 64 MiB, a multiple of the patch
        base = Serpent(preset="base")
        rows = tail.band_rows(base, torch.empty(1, 512, 512, 64), 2048)
        assert rows % 4 == 0 and rows * 2048 * 64 <= 1 << 24 and rows >= 64


def test_gradients_pass_the_whole_tail():
    net = _network(dict(preset="sr-tiny", upscale=2))
    x = torch.rand(1, 3, 12, 10, dtype=torch.float64, requires_grad=True)
    net(x).square().sum().backward()
    assert x.grad is not None and net.shallow.weight.grad is not None and net.unembed.weight.grad is not None
