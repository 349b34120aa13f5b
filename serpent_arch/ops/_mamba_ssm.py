"""The ``mamba_ssm`` backend's availability: whether mamba-ssm's fused CUDA kernel runs on a device.

"mamba-ssm imports" does not mean its kernel runs: releases after 2.3.2.post1 build the CUDA
extension only with ``MAMBA_KEEP_CUDA_BUILD=TRUE`` and otherwise import fine but raise
``RuntimeError: selective_scan_cuda is not installed`` at the first call. So ``mamba_ssm`` counts as
usable on a device only after a tiny forward and backward there ran and agreed with the reference
(:func:`mamba_ssm_status`, once per process and device). ``selective_scan.resolve_backend`` reads
the result and ``selective_scan.selective_scan`` calls the kernel; both look the names up in this
module at call time, so a test patches them here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable

import torch

from .reference import selective_scan_ref

# What gives mamba-ssm's CUDA kernel (README "GPU install" has the prerequisites): torch must be the
# CUDA build already installed (hence no build isolation), and newer releases skip the extension
# unless MAMBA_KEEP_CUDA_BUILD=TRUE (2.3.2.post1 ignores the variable and builds it anyway).
MAMBA_SSM_INSTALL = "MAMBA_KEEP_CUDA_BUILD=TRUE pip install --no-build-isolation mamba-ssm"


@functools.cache
def _mamba_ssm_import() -> tuple[Callable | None, str]:
    """``(selective_scan_fn, "")`` if mamba-ssm imports, else ``(None, reason)``; cached."""
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except Exception as exc:  # ImportError, but also OSError / RuntimeError from a broken CUDA build
        return None, f"{type(exc).__name__}: {exc}"
    return selective_scan_fn, ""


_mamba_ssm_checked: dict[int, tuple[Callable | None, str]] = {}  # CUDA device index -> status


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def _probe_device(device: torch.device) -> torch.device:
    """Where the probe's tensors live: ``device`` itself (a seam for the CPU tests)."""
    return device


def _check_mamba_ssm_kernel(fn: Callable, device: torch.device) -> str:
    """Run ``fn`` forward and backward on a tiny problem on ``device``; "" if it agrees with the
    reference, else the reason it cannot be used."""
    gen = torch.Generator().manual_seed(0)
    batch, dim, L, N = 1, 4, 16, 4
    shapes = {"u": (batch, dim, L), "delta": (batch, dim, L), "B": (batch, 1, N, L), "C": (batch, 1, N, L),
              "D": (dim,), "z": (batch, dim, L), "delta_bias": (dim,)}  # fmt: skip
    at = _probe_device(device)
    # the first scan may come inside no_grad / inference_mode / autocast; the probe needs none of them
    with torch.inference_mode(False), torch.enable_grad(), torch.autocast(at.type, enabled=False):
        args = {k: torch.randn(*shape, generator=gen).to(at).requires_grad_() for k, shape in shapes.items()}
        args["A"] = (-torch.linspace(0.5, 2.0, dim * N)).reshape(dim, N).to(at).requires_grad_()
        try:
            out = fn(**args, delta_softplus=True)
            out.sum().backward()
            if at.type == "cuda":
                torch.cuda.synchronize(at)
        except Exception as exc:  # RuntimeError "selective_scan_cuda is not installed", no kernel image, ...
            text = str(exc).strip()
            # the first sentence: mamba-ssm's own message goes on with a line of install advice
            first = re.split(r"(?<=\.)\s", text.splitlines()[0])[0] if text else ""
            return f"its kernel does not run on {device} ({type(exc).__name__}: {first})"
        grads = [args[k].grad for k in sorted(args)]
        for t in args.values():
            t.grad = None
        expected = selective_scan_ref(**args, delta_softplus=True)
        expected.sum().backward()
    for name, got, ref in [("output", out, expected)] + [
        (f"d{k}", g, args[k].grad) for k, g in zip(sorted(args), grads, strict=True)
    ]:
        if got is None or not torch.allclose(got.float(), ref.float(), rtol=1e-3, atol=1e-4):
            return f"its kernel runs on {device} but its {name} disagrees with the reference"
    return ""


def mamba_ssm_status(device: torch.device | str) -> tuple[bool, str]:
    """``(True, "")`` when mamba-ssm's kernel runs correctly on CUDA ``device``, else
    ``(False, reason)``. The check (import, then a tiny forward and backward compared with the
    reference) runs once per process and device; the result is cached."""
    device = torch.device(device)
    if device.type != "cuda":
        return False, f"mamba_ssm needs CUDA tensors, got tensors on {device}"
    fn, reason = _mamba_ssm_import()
    if fn is None and "selective_scan_cuda" in reason:  # 2.3.2.post1 built without its kernel
        return False, f"mamba-ssm is installed without its CUDA kernel ({reason})"
    if fn is None:
        return False, f"mamba-ssm cannot be imported ({reason})"
    index = _cuda_index(device)
    if index not in _mamba_ssm_checked:
        problem = _check_mamba_ssm_kernel(fn, torch.device("cuda", index))
        _mamba_ssm_checked[index] = (None, problem) if problem else (fn, "")
    fn, reason = _mamba_ssm_checked[index]
    return fn is not None, reason and f"mamba-ssm is installed but {reason}"


def _mamba_ssm_problem(reason: str) -> str:
    """The same words for auto's warning and for the error of an explicit ``mamba_ssm``."""
    install = f"install its CUDA kernel with `{MAMBA_SSM_INSTALL}` (README: GPU install)"
    return f"backend 'mamba_ssm' cannot run: {reason}; {install}"
