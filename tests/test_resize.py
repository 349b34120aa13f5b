"""The global residual's enlargement: MATLAB's bicubic kernel against BasicSR's imresize, and the option."""

import numpy as np
import pytest
import torch

import serpent_arch  # noqa: F401  (BasicSR's imports need the compatibility layer first)
from serpent_arch.archs import Serpent
from serpent_arch.archs.resize import matlab_bicubic_upscale, phase_taps, upscale


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
@pytest.mark.parametrize("shape", [(13, 17), (5, 4), (1, 3), (2, 1), (1, 1)])
def test_matlab_kernel_equals_imresize(scale, shape):
    """Every pixel, borders included, as BasicSR's MATLAB imresize enlarges the image (float32 rounding)."""
    from basicsr.utils.matlab_functions import imresize

    img = np.random.default_rng(sum(shape) + scale).random((*shape, 3)).astype(np.float32)
    ref = imresize(img, scale)
    got = matlab_bicubic_upscale(torch.from_numpy(img).permute(2, 0, 1)[None].double(), scale)
    got = got[0].permute(1, 2, 0).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, atol=5e-6)


def test_taps_reproduce_quadratics():
    """Keys' a = -0.5 kernel reproduces quadratics (PyTorch's a = -0.75 does not even keep ramps exact)."""
    x = torch.arange(20, dtype=torch.float64)
    for poly in (lambda t: 3 + 0 * t, lambda t: 0.5 * t - 2, lambda t: 0.01 * t**2 - 0.1 * t):
        image = poly(x)[None, None, :, None].repeat(1, 1, 1, 3)
        out = matlab_bicubic_upscale(image, 4)[0, 0, 8:-8, 1]  # away from the symmetric borders
        centres = (torch.arange(80, dtype=torch.float64) + 0.5) / 4 - 0.5
        torch.testing.assert_close(out, poly(centres[8:-8]), rtol=0, atol=1e-12)
    torch.testing.assert_close(phase_taps(4).sum(dim=1), torch.ones(4, dtype=torch.float64))
    ramp = x[None, None, :, None].repeat(1, 1, 1, 3)
    torch_out = upscale(ramp, 4, "torch")[0, 0, 8:-8, 1]
    assert (torch_out - ((torch.arange(80) + 0.5) / 4 - 0.5)[8:-8]).abs().max() > 1e-3


def test_serpent_resize_kernel_option():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 6, 5)
    fresh = Serpent(preset="sr-tiny", upscale=4, resize_kernel="matlab").eval()  # the last conv starts at zero
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), matlab_bicubic_upscale(x, 4))
    assert Serpent(preset="sr-tiny", upscale=4).resize_kernel == "matlab"  # the SR presets: MATLAB's kernel
    assert Serpent(preset="tiny", upscale=4).resize_kernel == "torch"  # the U-Net presets: PyTorch's
    with pytest.raises(ValueError, match="resize_kernel must be one of torch, matlab, got 'lanczos'"):
        Serpent(preset="sr-tiny", upscale=4, resize_kernel="lanczos")
