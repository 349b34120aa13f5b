"""What a CPU benchmark ran on: CPU model, vector extensions, threads, the scan kernel's build and
the instruction sets torch itself was allowed to use, as one markdown line for every report.

An AVX2-only machine can be reproduced on a newer one: ``SERPENT_CPU_MARCH=haswell`` builds the
scan kernel as such a machine builds it, and :data:`AVX2_ENV` limits torch's own kernels (ATen's
vectorized ops, oneDNN convolutions, MKL matrix products) to AVX2. :func:`describe` reports which
of these limits were in effect, so a result never hides that it was emulated.
"""

from __future__ import annotations

import os
import platform

import torch

# environment of an emulated AVX2-only machine (read by torch / oneDNN / MKL when they load)
AVX2_ENV = {
    "SERPENT_CPU_MARCH": "haswell",
    "ATEN_CPU_CAPABILITY": "avx2",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "MKL_ENABLE_INSTRUCTIONS": "AVX2",
}
# /proc/cpuinfo flags worth naming, in order of the x86 generations (others: all flags are kept)
VECTOR_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16",
                "amx_bf16", "asimd", "sve", "sve2")  # fmt: skip


def _cpuinfo_field(*keys: str) -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.split(":", 1)[0].strip() in keys:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_model() -> str:
    """``model name`` from /proc/cpuinfo, else what ``platform`` knows."""
    return _cpuinfo_field("model name") or platform.processor() or platform.machine()


def vector_extensions() -> list[str]:
    """The SIMD extensions among the CPU's /proc/cpuinfo flags, e.g. ``['sse4_2', 'avx', 'avx2', 'fma']``."""
    flags = set(_cpuinfo_field("flags", "Features").split())
    return [f for f in VECTOR_FLAGS if f in flags]


def emulation() -> str:
    """The instruction-set limits set in the environment, e.g. ``ATEN_CPU_CAPABILITY=avx2``; '' if none."""
    return ", ".join(f"{k}={os.environ[k]}" for k in AVX2_ENV if os.environ.get(k))


def describe() -> str:
    """One line: CPU, vector extensions, threads, torch and its CPU capability, limits in effect."""
    limits = emulation()
    return (
        f"{cpu_model()} ({platform.machine()}; vector extensions: {' '.join(vector_extensions()) or 'unknown'}), "
        f"{torch.get_num_threads()} torch threads, torch {torch.__version__} "
        f"(ATen CPU capability {torch.backends.cpu.get_cpu_capability()})"
        + (f"; instruction sets limited by {limits}" if limits else "")
    )
