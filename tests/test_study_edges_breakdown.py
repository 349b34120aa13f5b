"""``python -m study edges_breakdown``'s measures on made-up restorations (no network)."""

import numpy as np

import serpent_arch  # noqa: F401  (BasicSR's imports need the compatibility layer first)
from study.edges_breakdown import breakdown, family_images


def test_breakdown_separates_offset_frequency_and_grid():
    rng = np.random.default_rng(0)
    gt = family_images(64, 0.9)["smooth"][0]
    bicubic = np.clip(gt + rng.normal(0, 0.002, gt.shape), 0, 1).astype(np.float32)
    same = breakdown(gt, bicubic, bicubic, 4)  # a network that adds nothing
    assert same["correction rms"] == 0 and same["grid rms"] == 0
    assert same["error below Nyquist"] == same["error above Nyquist"] == same["interior / bicubic"] == 1
    grid = np.zeros((64, 64, 1), np.float32)
    grid[0::4, 0::4], grid[2::4, 2::4] = 0.01, -0.01  # fixed to the x4 output grid, zero-mean: above Nyquist
    got = breakdown(gt, bicubic, bicubic + grid, 4)
    assert got["grid rms"] > 1e-3 and got["error above Nyquist"] > 2 and abs(got["error below Nyquist"] - 1) < 1e-4
    smooth = breakdown(gt, bicubic, bicubic + 0.01, 4)  # an offset: all of it below
    assert smooth["grid rms"] < 1e-6 and smooth["error below Nyquist"] > 2
    assert abs(smooth["error above Nyquist"] - 1) < 1e-4
    assert len(family_images(64, 0.5)["ramp"]) == 6 and len(family_images(64, 0.5)["flat"]) == 1
