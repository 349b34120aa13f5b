"""Mixed precision, with one meaning for ``train.amp``, ``val.amp`` and ``basicsr infer --precision``.

``bf16`` / ``fp16`` run the network under ``torch.autocast`` (matmuls and convolutions in that
dtype); ``false`` (options) or ``fp32`` (infer) run it in float32. What stays float32 (README,
"Mixed precision"): the selective scan inside every backend, the residual stream of every
stage (and so the LayerNorms that read it), the global image residual, the loss, the weights
and the optimizer. ``fp16`` training also scales the loss (``torch.amp.GradScaler``); ``bf16``
has float32's range and needs no scaling.
"""

from __future__ import annotations

import contextlib

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
OPTION_VALUES = ("bf16", "fp16", False)  # train.amp / val.amp (fp32 is accepted as false, as in infer)


def option_problem(opt_section: dict | None, key: str, where: str) -> str | None:
    """What is wrong with ``opt_section[key]`` as an amp option (``where`` names it), or None."""
    value = (opt_section or {}).get(key, False)
    if value is None or value is False or value == "fp32" or value in DTYPES:
        return None
    return f"'{where}' must be bf16, fp16 or false (float32), got {value!r}"


def dtype_of(value) -> torch.dtype | None:
    """``bf16`` / ``fp16`` -> the dtype; ``false`` / ``None`` / ``fp32`` -> None (float32)."""
    if value is None or value is False or value == "fp32":
        return None
    if value not in DTYPES:
        raise ValueError(f"mixed precision: expected bf16, fp16 or false, got {value!r}")
    return DTYPES[value]


def unsupported(device: torch.device, dtype: torch.dtype | None) -> str | None:
    """Why ``dtype`` autocast cannot run on ``device``, or None when it can."""
    if dtype is None:
        return None
    if device.type == "cuda" and dtype == torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return "this GPU does not support bfloat16; use fp16 (with loss scaling) or fp32"
    is_available = getattr(torch.amp, "is_autocast_available", None)  # torch >= 2.4
    if not (is_available(device.type) if is_available else device.type in ("cuda", "cpu")):
        return f"torch has no autocast for {device.type}"
    return None


def grad_scaler(device: torch.device, enabled: bool):
    """``torch.amp.GradScaler`` for ``device`` (torch >= 2.3), else the CUDA-only older one."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled and device.type == "cuda")


def autocast(device: torch.device, dtype: torch.dtype | None):
    """``torch.autocast`` for ``device`` in ``dtype``; a no-op context for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


def name_of(dtype: torch.dtype | None) -> str:
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")
