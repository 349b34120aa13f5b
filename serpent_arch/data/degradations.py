"""Composable image degradations (blur, bicubic downsampling, Gaussian noise, JPEG) built from YAML.

Images follow BasicSR's convention: ``numpy.float32`` arrays of shape ``(H, W, C)``, BGR channel
order, values in ``[0, 1]`` (``C`` is 3, or 1 for ``color: y`` datasets). A pipeline is described
by a list of steps, applied in the order given::

    degradations:
      - {type: blur, kernel_size: 21, sigma: [0.2, 3.0]}
      - {type: bicubic_down}
      - {type: noise, sigma: 25}
      - {type: jpeg, quality: [30, 95]}

A number-or-``[min, max]`` option is sampled uniformly per image (integers for ``quality``).
All randomness comes from the ``numpy.random.Generator`` passed to the pipeline, so a seeded
generator reproduces an LQ image bit for bit; :func:`deterministic_rng` derives such a generator
from ``(seed, image key)`` for validation and test sets.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from numbers import Real

import cv2
import numpy as np

__all__ = [
    "DEGRADATION_TYPES",
    "DegradationPipeline",
    "build_degradations",
    "deterministic_rng",
]

# type -> (required keys, optional keys with defaults); "type" itself is always required.
_SPECS: dict[str, tuple[tuple[str, ...], dict]] = {
    "blur": (("sigma",), {"kernel_size": 21}),
    "bicubic_down": ((), {"scale": None}),
    "noise": (("sigma",), {"clip": False}),
    "jpeg": (("quality",), {}),
}
DEGRADATION_TYPES = tuple(_SPECS)


def deterministic_rng(seed: int, key: str) -> np.random.Generator:
    """Generator seeded from ``(seed, key)`` with a stable hash.

    Python's ``hash()`` of a string changes between processes (PYTHONHASHSEED), so SHA-256 is used:
    the same seed and image key give the same LQ image in every run, process and DataLoader worker.
    """
    digest = hashlib.sha256(f"{int(seed)}\0{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _gaussian_kernel(kernel_size: int, sigma: float) -> np.ndarray:
    """Normalized isotropic Gaussian kernel, shape ``(kernel_size, kernel_size)``, float32.

    ``sigma == 0`` gives the identity (a centred delta); cv2.getGaussianKernel would instead
    derive a sigma from the size, which is not what ``sigma: 0`` in a config means.
    """
    kernel = np.zeros((kernel_size, kernel_size), np.float64)
    if sigma == 0:
        kernel[kernel_size // 2, kernel_size // 2] = 1.0
        return kernel.astype(np.float32)
    x = np.arange(kernel_size, dtype=np.float64) - kernel_size // 2
    g = np.exp(-(x**2) / (2.0 * sigma**2))
    kernel = np.outer(g, g)
    return (kernel / kernel.sum()).astype(np.float32)


def _sample(value, rng: np.random.Generator, integer: bool = False):
    """A fixed value as is, or a uniform draw from ``(min, max)`` (inclusive ints for ``integer``)."""
    if isinstance(value, tuple):
        low, high = value
        if integer:
            return int(rng.integers(low, high + 1))
        return float(rng.uniform(low, high))
    return value


def _keep_channels(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """cv2 drops a trailing channel axis of size 1; put it back so ``(H, W, 1)`` stays ``(H, W, 1)``."""
    if out.ndim == 2 and like.ndim == 3:
        out = out[:, :, None]
    return out


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class _Blur:
    kernel_size: int
    sigma: float | tuple[float, float]

    def context(self) -> int:
        return self.kernel_size // 2

    def apply(self, img, rng):
        sigma = _sample(self.sigma, rng)
        kernel = _gaussian_kernel(self.kernel_size, sigma)
        out = cv2.filter2D(img, -1, kernel, borderType=cv2.BORDER_REFLECT)
        return _keep_channels(out, img), {"type": "blur", "kernel_size": self.kernel_size, "sigma": sigma}


@dataclass(frozen=True)
class _BicubicDown:
    scale: int
    index: int

    def context(self) -> int:
        # MATLAB's antialiased cubic kernel is 4 output pixels wide, i.e. reaches 2 * scale input
        # pixels to each side; +1 covers the rounding of the window start.
        return 2 * self.scale + 1

    def apply(self, img, rng):
        if self.scale == 1:
            return img.copy(), {"type": "bicubic_down", "scale": 1}
        h, w = img.shape[:2]
        if h % self.scale or w % self.scale:
            raise ValueError(
                f"degradations[{self.index}] (bicubic_down): image size {h}x{w} is not divisible by "
                f"scale {self.scale}; mod-crop the image first (DegradedImageDataset does)."
            )
        # Local import: basicsr may only be imported after serpent_arch.compat.apply().
        from basicsr.utils.matlab_functions import imresize

        out = imresize(np.ascontiguousarray(img, dtype=np.float32), 1.0 / self.scale)
        return _keep_channels(np.asarray(out, np.float32), img), {"type": "bicubic_down", "scale": self.scale}


@dataclass(frozen=True)
class _Noise:
    sigma: float | tuple[float, float]
    clip: bool

    def context(self) -> int:
        return 0

    def apply(self, img, rng):
        sigma = _sample(self.sigma, rng)
        noise = rng.standard_normal(img.shape, dtype=np.float32) * np.float32(sigma / 255.0)
        out = img + noise
        if self.clip:
            out = np.clip(out, 0.0, 1.0)
        return out.astype(np.float32, copy=False), {"type": "noise", "sigma": sigma, "clip": self.clip}


@dataclass(frozen=True)
class _Jpeg:
    quality: int | tuple[int, int]

    def context(self) -> int:
        return 0

    def apply(self, img, rng):
        quality = _sample(self.quality, rng, integer=True)
        # JPEG stores 8-bit values, so the round trip clips to [0, 1] and quantizes to k / 255.
        ok, buf = cv2.imencode(".jpg", _to_uint8(img), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError(f"cv2.imencode('.jpg') failed for an image of shape {img.shape}")
        out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
        out = _keep_channels(out, img).astype(np.float32) / np.float32(255.0)
        return out, {"type": "jpeg", "quality": quality}


class DegradationPipeline:
    """An ordered list of degradation steps; build it with :func:`build_degradations`.

    Attributes:
        steps: the validated steps, in application order.
        scale (int): total downscaling factor (product of the ``bicubic_down`` scales): an input of
            shape ``(H, W, C)`` gives an output of shape ``(H / scale, W / scale, C)``.
        last_params (list[dict] | None): parameters sampled by the latest ``__call__`` (e.g. the
            drawn blur sigma and JPEG quality), for logging.
    """

    def __init__(self, steps: list, config: list[dict]):
        self.steps = list(steps)
        self.config = config
        self.scale = math.prod(s.scale for s in self.steps if isinstance(s, _BicubicDown))
        self.last_params: list[dict] | None = None

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, list[dict]]:
        """Degrade ``img`` and also return the sampled parameters.

        Args:
            img: float32 ``(H, W, C)`` BGR image in ``[0, 1]``; H and W divisible by :attr:`scale`.
            rng: source of all randomness (range sampling and noise).

        Returns:
            ``(lq, params)``: lq is float32 ``(H / scale, W / scale, C)`` (values may leave [0, 1]
            after unclipped noise), params one dict per step.
        """
        if img.ndim != 3:
            raise ValueError(f"degradation input must be an (H, W, C) image, got shape {img.shape}")
        out = np.asarray(img, dtype=np.float32)
        params = []
        for step in self.steps:
            out, p = step.apply(out, rng)
            params.append(p)
        if out is img:  # an empty pipeline must not alias the caller's array
            out = out.copy()
        return out, params

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Degrade ``img`` (see :meth:`apply`); the sampled parameters go to :attr:`last_params`."""
        out, self.last_params = self.apply(img, rng)
        return out

    @property
    def context_margin(self) -> int:
        """GT pixels on each side of a region that influence the degraded region (a multiple of scale).

        Training crops are degraded with this much surrounding image (when available) so that patch
        borders look like the inside of a fully degraded test image rather than reflected padding.
        """
        margin, factor = 0, 1  # factor: GT pixels per pixel at the current step's input
        for step in self.steps:
            margin += step.context() * factor
            if isinstance(step, _BicubicDown):
                factor *= step.scale
        return -(-margin // self.scale) * self.scale

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self) -> str:
        return f"DegradationPipeline({self.config!r}, scale={self.scale})"


def _is_number(value) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _is_int(value) -> bool:
    return _is_number(value) and float(value).is_integer()


class _StepError:
    """Formats ``degradations[i] (type): ...`` messages."""

    def __init__(self, index: int, kind: str):
        self.prefix = f"degradations[{index}] ({kind})"

    def __call__(self, message: str) -> ValueError:
        return ValueError(f"{self.prefix}: {message}")


def _number_or_range(value, key: str, err: _StepError, *, integer: bool, low: float, high: float | None):
    """Validate a number or ``[min, max]``; returns the number or a ``(min, max)`` tuple."""
    kind = "an integer" if integer else "a number"
    check = _is_int if integer else _is_number
    bound = f">= {low}" if high is None else f"in {low}..{high}"
    if isinstance(value, (list, tuple)):
        if len(value) != 2 or not all(check(v) for v in value):
            raise err(f"{key} must be {kind} or [min, max] of two, got {value!r}")
        values = [int(v) if integer else float(v) for v in value]
        for v in values:
            if v < low or (high is not None and v > high):
                raise err(f"{key} must be {bound}, got {v:g} in {value!r}")
        if values[0] > values[1]:
            raise err(f"{key} range must be [min, max] with min <= max, got {value!r}")
        return tuple(values)
    if not check(value):
        raise err(f"{key} must be {kind} or [min, max], got {value!r}")
    value = int(value) if integer else float(value)
    if value < low or (high is not None and value > high):
        raise err(f"{key} must be {bound}, got {value:g}")
    return value


def _build_step(index: int, cfg, scale: int):
    if not isinstance(cfg, dict):
        raise ValueError(f"degradations[{index}]: expected a mapping like {{type: blur, ...}}, got {cfg!r}")
    if "type" not in cfg:
        raise ValueError(f"degradations[{index}]: missing key 'type'; expected one of {', '.join(_SPECS)}")
    kind = cfg["type"]
    if kind not in _SPECS:
        raise ValueError(f"degradations[{index}]: unknown type {kind!r}; expected one of {', '.join(_SPECS)}")
    err = _StepError(index, kind)
    required, optional = _SPECS[kind]
    missing = [k for k in required if k not in cfg]
    if missing:
        raise err(f"missing key {missing[0]!r} (required: {', '.join(required)})")
    allowed = {"type", *required, *optional}
    unknown = sorted(k for k in cfg if k not in allowed)
    if unknown:
        raise err(f"unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(allowed))}")
    opts = {**optional, **cfg}

    if kind == "blur":
        size = opts["kernel_size"]
        if not _is_int(size) or size < 1 or int(size) % 2 == 0:
            raise err(f"kernel_size must be an odd integer >= 1, got {size!r}")
        sigma = _number_or_range(opts["sigma"], "sigma", err, integer=False, low=0, high=None)
        return _Blur(int(size), sigma)
    if kind == "bicubic_down":
        step_scale = scale if opts["scale"] is None else opts["scale"]
        if step_scale is None:
            raise err("no scale: give the step its own `scale` or set the default (dataset `scale`, --scale)")
        if not _is_int(step_scale) or step_scale < 1:
            source = (
                "scale" if opts["scale"] is not None else "scale (the default from the dataset's `scale`)"
            )
            raise err(f"{source} must be an integer >= 1, got {step_scale!r}")
        return _BicubicDown(int(step_scale), index)
    if kind == "noise":
        sigma = _number_or_range(opts["sigma"], "sigma", err, integer=False, low=0, high=None)
        if not isinstance(opts["clip"], bool):
            raise err(f"clip must be true or false, got {opts['clip']!r}")
        return _Noise(sigma, opts["clip"])
    quality = _number_or_range(opts["quality"], "quality", err, integer=True, low=1, high=100)
    return _Jpeg(quality)


def build_degradations(config: list[dict] | None, scale: int | None = None) -> DegradationPipeline:
    """Validate a list of step dicts and build the pipeline.

    Args:
        config: steps like ``[{type: blur, kernel_size: 21, sigma: 2.0}, {type: bicubic_down}]``;
            ``[]`` is the identity.
        scale: default factor of ``bicubic_down`` steps without their own ``scale`` (required
            when there is such a step).

    Raises:
        ValueError: naming the step index, its type, the key and what was expected, e.g.
            ``degradations[1] (noise): sigma must be >= 0, got -5``.
    """
    if config is None:
        config = []
    if not isinstance(config, (list, tuple)):
        raise ValueError(
            "degradations: expected a list of steps like [{type: bicubic_down}], "
            f"got {type(config).__name__}"
        )
    steps = [_build_step(i, cfg, scale) for i, cfg in enumerate(config)]
    return DegradationPipeline(steps, [dict(c) for c in config])
