"""Host memory kept for reuse between the steps of a CPU job (glibc only).

Every operator of a CPU forward or backward allocates its output afresh. glibc's malloc hands
allocations above its mmap threshold (128 KiB, rising with use to at most 32 MiB) to the kernel
and returns them on free, and it gives the top of its heap back above a trim threshold: a tensor
of the next step then arrives as fresh pages, each a page fault and a page zeroed by the kernel.
On the 2-core development VM that was about 50,000 page faults and 90 ms of system time per 256x256 training
step of Serpent ``base``, and 5.4 million faults in one 2048x2048 forward. With the freed memory kept
(``keep_freed_memory``) they are nearly gone: in ``python -m serpent_arch.benchmark fused`` the 2048x2048
forward took 10.9 s native and 11.5 s AVX2-limited against 13.4 and 22.2 s with glibc's defaults (two runs
at the same load, docs/benchmarks/fused_scan_host_memory.md and fused_scan_glibc_malloc.md), for a peak
resident memory of 2.3 and 2.6 GiB against 2.2 (what is freed is kept for the next allocation, not given
back: the peak grows by what fragmentation leaves unused).

``basicsr train``, ``test`` and ``infer`` call it at start (and ``SerpentModel`` on a CPU, which logs
the result); call it yourself when you drive a long CPU job from Python. ``SERPENT_KEEP_FREED_MEMORY=0``
turns it off, and a user's own ``MALLOC_*`` or ``GLIBC_TUNABLES`` settings win: with any of them in
the environment nothing is changed. Elsewhere than on glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

# mallopt parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

MMAP_THRESHOLD_MIB = 128  # allocations below this come from the heap and are reused
TRIM_THRESHOLD_MIB = 1024  # free memory at the heap's top kept up to this

_applied: str | None = None


def keep_freed_memory(mmap_mib: int = MMAP_THRESHOLD_MIB, trim_mib: int = TRIM_THRESHOLD_MIB) -> str:
    """Keep freed host memory in the process for the next allocations (glibc's ``mallopt``).

    Returns what was done, in words (for the log): the thresholds set, or why nothing was changed.
    Safe to call more than once; settings made by an earlier call stay.
    """
    global _applied
    if _applied is not None:
        return _applied
    if os.environ.get("SERPENT_KEEP_FREED_MEMORY", "1") == "0":
        _applied = "host memory: malloc settings left as they are (SERPENT_KEEP_FREED_MEMORY=0)"
        return _applied
    user = sorted(name for name in os.environ if name.startswith("MALLOC_") or name == "GLIBC_TUNABLES")
    if user:
        _applied = f"host memory: malloc settings left as the environment sets them ({', '.join(user)})"
        return _applied
    libc_name, _ = platform.libc_ver()
    if libc_name != "glibc":
        return f"host memory: malloc settings unchanged (not glibc: {platform.system()} {libc_name or 'libc'})"
    if not (0 < mmap_mib < 2048 and 0 < trim_mib < 2048):
        raise ValueError(f"keep_freed_memory: thresholds must be 1 to 2047 MiB, got {mmap_mib} and {trim_mib}")
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    # the mmap threshold first: glibc may refuse it (above its heap size limit), and the trim threshold
    # set alone would fix the mmap threshold at its 128 KiB start, worse than glibc's default
    if libc.mallopt(_M_MMAP_THRESHOLD, ctypes.c_int(mmap_mib << 20)) != 1:
        return "host memory: malloc settings unchanged (glibc refused the mmap threshold)"
    libc.mallopt(_M_TRIM_THRESHOLD, ctypes.c_int(trim_mib << 20))
    _applied = f"host memory: freed memory kept for reuse (malloc mmap threshold {mmap_mib} MiB, trim {trim_mib} MiB)"
    return _applied
