"""``basicsr doctor`` / ``python -m serpent_arch.doctor``: what this machine runs, in a few lines to
paste into a bug report.

Versions (python, torch with its CUDA and cuDNN, basicsr, serpent, mamba-ssm and whether its CUDA
kernel is built, triton), the devices, every selective-scan backend on every device (available or
why not) with a short agreement check of each available one against ``reference`` (forward and
every gradient on a small random problem), and the compiler and flags of ``cpu_kernel``.

Exit status 0 when, on every device, the backend ``auto`` picks runs and agrees with the reference;
1 otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import subprocess
import sys
import time

import torch

from serpent_arch.measure import machine
from serpent_arch.ops import backend_report, selective_scan, selective_scan_ref
from serpent_arch.ops.backend_report import package_version
from serpent_arch.ops.selective_scan import MAMBA_SSM_INSTALL, resolve_backend

# relative tolerance of the agreement check (max |error| / max |reference|), float32 inputs;
# backends differ from the reference loop by float32 rounding only (~1e-6 here)
TOLERANCE = 1e-3


def _compiler_version() -> str:
    from serpent_arch.ops._cpu_kernel import _find_compiler

    compiler = _find_compiler()
    if compiler is None:
        return "none found ($CC, gcc, cc)"
    try:
        out = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{compiler} ({exc})"
    return out.splitlines()[0] if out else compiler


def _mamba_ssm_line() -> str:
    version = package_version("mamba-ssm")
    if version is None:
        return f"not installed (the fast CUDA scan: `{MAMBA_SSM_INSTALL}`)"
    if importlib.util.find_spec("selective_scan_cuda") is None:
        return f"{version}, WITHOUT its CUDA kernel (selective_scan_cuda missing): `{MAMBA_SSM_INSTALL}`"
    return f"{version}, CUDA kernel selective_scan_cuda built"


def versions() -> list[tuple[str, str]]:
    cuda = torch.version.cuda or "none (CPU-only build)"
    cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    if cudnn:  # 92400 -> 9.24.0 (cuDNN >= 9 encodes major * 10000 + minor * 100 + patch)
        cudnn = f"{cudnn // 10000}.{cudnn % 10000 // 100}.{cudnn % 100}" if cudnn >= 90000 else str(cudnn)
    return [
        ("python", f"{platform.python_version()} ({platform.platform()})"),
        ("torch", f"{torch.__version__}; CUDA {cuda}; cuDNN {cudnn or '-'}"),
        ("basicsr", package_version("basicsr") or "not installed"),
        ("serpent", package_version("serpent-basicsr") or "not installed (run from a checkout?)"),
        ("mamba-ssm", _mamba_ssm_line()),
        ("triton", package_version("triton") or package_version("pytorch-triton") or "not installed"),
        ("cpu", machine.describe()),
        ("cpu_kernel", f"{backend_report.cpu_kernel_build()}; compiler: {_compiler_version()}"),
    ]


def devices() -> list[torch.device]:
    found = [torch.device("cpu")]
    if torch.cuda.is_available():
        found += [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
    return found


def _describe_device(device: torch.device) -> str:
    if device.type != "cuda":
        return "cpu"
    p = torch.cuda.get_device_properties(device)
    bf16 = "bf16" if torch.cuda.is_bf16_supported() else "no bf16"
    return f"{device} {p.name}, sm_{p.major}{p.minor}, {p.total_memory / 2**30:.0f} GiB, {bf16}"


def _problem(device: torch.device, seed: int = 0) -> dict:
    """A small random scan with every optional input (grouped B/C, D, z, delta_bias, softplus)."""
    gen = torch.Generator().manual_seed(seed)
    batch, dim, L, N, groups = 2, 16, 256, 8, 2
    shapes = {"u": (batch, dim, L), "delta": (batch, dim, L), "B": (batch, groups, N, L), "C": (batch, groups, N, L),
              "D": (dim,), "z": (batch, dim, L), "delta_bias": (dim,)}  # fmt: skip
    args = {k: torch.randn(*shape, generator=gen) for k, shape in shapes.items()}
    args["delta"] = args["delta"] * 0.5 - 1
    args["A"] = -(torch.rand(dim, N, generator=gen) * 2 + 0.2)
    return {k: v.to(device).requires_grad_() for k, v in args.items()}


def _forward_backward(args: dict, backend: str | None) -> list[torch.Tensor]:
    fn = selective_scan_ref if backend is None else (lambda **kw: selective_scan(**kw, backend=backend))
    for t in args.values():
        t.grad = None
    out = fn(**args, delta_softplus=True)
    grad_out = torch.linspace(-1, 1, out.numel(), device=out.device).reshape(out.shape)
    out.backward(grad_out)
    return [out.detach()] + [args[k].grad for k in sorted(args)]


def agreement(backend: str, device: torch.device) -> tuple[bool, str]:
    """Forward and all gradients of ``backend`` against the reference; (ok, summary)."""
    args = _problem(device)
    expected = _forward_backward(args, None)
    start = time.perf_counter()
    try:
        got = _forward_backward(args, backend)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as exc:  # a backend that resolves but fails to run is exactly what to report
        return False, f"FAILED to run: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    seconds = time.perf_counter() - start
    errors = [float((g - e).abs().max() / e.abs().max().clamp_min(1e-12)) for g, e in zip(got, expected, strict=True)]
    worst = max(errors)
    verdict = "agrees with reference" if worst <= TOLERANCE else "DISAGREES with reference"
    return worst <= TOLERANCE, f"{verdict} (max rel. error {worst:.1e}, output and 8 gradients; {seconds:.2f} s)"


def backend_lines(device: torch.device) -> tuple[list[str], bool]:
    """One line per backend on ``device``; True when auto's choice works there."""
    best = resolve_backend("auto", torch.empty(0, device=device))
    lines, best_ok = [], False
    for name in backend_report.concrete_backends():
        ok, reason = backend_report.backend_status(name, device)
        mark = "*" if name == best else " "
        if not ok and not backend_report.for_this_device(reason):
            lines.append(f"  {mark} {name:<11} n/a on {device.type}")
            continue
        if not ok:
            lines.append(f"  {mark} {name:<11} no: {reason}")
            continue
        if name == "reference":
            lines.append(f"  {mark} {name:<11} yes: the ground truth (slow)")
            best_ok = best_ok or name == best
            continue
        works, summary = agreement(name, device)
        lines.append(f"  {mark} {name:<11} yes: {summary}")
        if name == best:
            best_ok = works
    return lines, best_ok


def report() -> tuple[str, bool]:
    lines = ["Serpent for BasicSR: basicsr doctor"]
    lines += [f"{key:<11} {value}" for key, value in versions()]
    all_ok = True
    for device in devices():
        lines.append(f"scan backends on {_describe_device(device)} (* = what auto picks):")
        backend_lines_, ok = backend_lines(device)
        lines += backend_lines_
        all_ok = all_ok and ok
    if not torch.cuda.is_available():
        lines.append("cuda        not available to torch (no GPU, driver or CUDA build of torch)")
    lines.append("status      " + ("OK" if all_ok else "PROBLEM: the backend auto picks fails on some device (above)"))
    return "\n".join(lines), all_ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="basicsr doctor",
        description="Versions, devices and selective-scan backends of this machine, for bug reports. "
        "Exit status 0 when the backend auto picks works on every device.",
    )
    parser.parse_args(argv)
    text, ok = report()
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
