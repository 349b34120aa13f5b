"""keep_freed_memory: freed host memory is reused instead of faulting in fresh pages; the user's settings win.

Each check runs in a fresh interpreter: malloc's settings are the whole process's.
"""

import os
import platform
import subprocess
import sys

import pytest

from serpent_arch.host_memory import keep_freed_memory

GLIBC = platform.libc_ver()[0] == "glibc"

# faults of four 64 MiB allocations (above glibc's largest dynamic mmap threshold, 32 MiB) after four others, as
# each step of a job allocates its tensors again (the first few may still fault while torch's thread pool and the
# heap settle)
_PROBE = """
import resource, sys
import torch
from serpent_arch.host_memory import keep_freed_memory
print(keep_freed_memory() if sys.argv[1] == "keep" else "defaults")
def allocate():
    x = torch.empty(16 << 20).fill_(1.0)
    del x
for _ in range(4):
    allocate()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    allocate()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _probe(mode: str, **env) -> tuple[str, int]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES", "SERPENT_KEEP"))}
    out = subprocess.run([sys.executable, "-c", _PROBE, mode], env={**clean, **env}, capture_output=True, text=True,
                         check=True).stdout.strip().splitlines()  # fmt: skip
    return out[0], int(out[1])


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
def test_freed_memory_is_reused():
    said, faults = _probe("keep")
    assert "freed memory kept for reuse" in said
    _, default_faults = _probe("defaults")
    # 64 MiB is 16,384 pages of 4 KiB: glibc's defaults map them afresh each time, kept memory is touched already
    assert default_faults > 4 * 8000, default_faults
    assert faults < default_faults / 10, (faults, default_faults)


@pytest.mark.skipif(not GLIBC, reason="mallopt is glibc's")
@pytest.mark.parametrize("env", [{"SERPENT_KEEP_FREED_MEMORY": "0"}, {"MALLOC_TRIM_THRESHOLD_": "131072"}])
def test_the_users_settings_win(env):
    said, faults = _probe("keep", **env)
    assert "left as" in said and list(env)[0] in said
    assert faults > 4 * 8000, faults  # glibc's defaults: fresh pages


def test_bad_thresholds_are_named():
    if not GLIBC:
        pytest.skip("mallopt is glibc's")
    code = "from serpent_arch.host_memory import keep_freed_memory as k; k(mmap_mib=0)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode != 0 and "thresholds must be 1 to 2047 MiB" in proc.stderr


def test_calling_twice_is_harmless():
    assert keep_freed_memory() == keep_freed_memory()
