"""Which selective-scan backend runs on a device, and why: the "selective scan: ..." log line of
``basicsr train / test / infer`` and the backend list of ``basicsr doctor``.

Everything here asks :func:`~serpent_arch.ops.selective_scan.resolve_backend`, so a backend added
to ``BACKENDS`` shows up without changes here.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from . import _cpu_kernel, cross_scan
from .selective_scan import BACKENDS, mamba_ssm_status, resolve_backend

# resolve_backend's wording when a backend is for another kind of device (not worth reporting)
_OTHER_DEVICE = re.compile(r"needs \w+ tensors")


def _representative(device: torch.device):
    """An empty float32 tensor on ``device``: all resolve_backend looks at (a seam for CPU tests)."""
    return torch.empty(0, device=device)


def concrete_backends() -> list[str]:
    """Every backend name but ``auto``, in ``BACKENDS`` order (auto's order of preference)."""
    return [name for name in BACKENDS if name != "auto"]


def backend_status(name: str, device: torch.device | str) -> tuple[bool, str]:
    """``(True, "")`` when backend ``name`` can run float32 inputs on ``device``, else ``(False, why)``."""
    try:
        resolve_backend(name, _representative(torch.device(device)))
    except RuntimeError as exc:
        return False, str(exc).removeprefix("selective_scan: ")
    return True, ""


def for_this_device(reason: str) -> bool:
    """False when ``reason`` only says the backend is meant for another kind of device."""
    return not _OTHER_DEVICE.search(reason)


def backend_details(name: str, device: torch.device | str) -> str:
    """A few words on what backend ``name`` is on ``device`` (it must be available)."""
    if name == "mamba_ssm":
        return f"mamba-ssm {mamba_ssm_version()} CUDA kernel"
    if name == "cpu_kernel":
        return f"compiled C kernel, {cpu_kernel_build()}, {torch.get_num_threads()} threads"
    if name == "triton":
        return f"fused Triton kernels, triton {package_version('triton')}"
    if name == "torch":
        return "chunked scan in plain PyTorch"
    if name == "reference":
        return "step-by-step Python loop, slow"
    return f"{name} backend"


def cpu_kernel_build() -> str:
    """Compiler and flags the C kernel was built with, or why it is unavailable."""
    ok, reason = _cpu_kernel.availability()
    if not ok:
        return f"unavailable: {reason.splitlines()[0]}"
    return getattr(_cpu_kernel.load_library(), "serpent_build", "built")


def mamba_ssm_version() -> str:
    return package_version("mamba-ssm") or "(not installed)"


def package_version(dist: str) -> str | None:
    """The installed version of distribution ``dist``, or None."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def explain(requested: str, device: torch.device | str) -> tuple[str, str]:
    """``(backend, why)``: the backend that ``scan_backend: requested`` runs on ``device``, and why.

    Raises ``RuntimeError`` (resolve_backend's message) when an explicitly requested backend cannot run.
    """
    device = torch.device(device)
    name = resolve_backend(requested, _representative(device))
    details = backend_details(name, device)
    if requested != "auto":
        return name, f"scan_backend: {requested} in network_g; {details}"
    passed_over = []
    for other in concrete_backends()[: concrete_backends().index(name)]:
        ok, reason = backend_status(other, device)
        if not ok and for_this_device(reason):
            passed_over.append(reason)
    return name, "; ".join([details, *passed_over])


def scan_log_line(net: nn.Module, device: torch.device | str) -> str:
    """The one line a run logs: the backend each requested ``scan_backend`` of ``net`` runs on ``device``, and
    whether SS2D's four-direction scan runs fused there (``cross_scan.FUSED_BACKENDS``)."""
    device = torch.device(device)
    requested = sorted({m.scan_backend for m in net.modules() if isinstance(getattr(m, "scan_backend", None), str)})
    if not requested:
        return f"selective scan: not used by {type(net).__name__} (on {device})"
    parts = []
    for name in requested:
        try:
            backend, why = explain(name, device)
            fused = "fused" if cross_scan.fused_kernel(backend) is not None else "unfused"
            parts.append(f"{backend} on {device} ({why}), four-direction scan {fused}")
        except RuntimeError as exc:
            parts.append(f"{name} cannot run on {device} ({exc})")
    return "selective scan: " + "; ".join(parts)


__all__ = ["backend_details", "backend_status", "concrete_backends", "explain", "mamba_ssm_status", "scan_log_line"]
