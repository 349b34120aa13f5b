"""The C scan kernel's hot loops are vectorized, at full vector width, on every x86-64 family.

gcc's vectorization report (``-fopt-info-vec-optimized``) is read for the kernel compiled with the
flags the library is built with (``_cpu_kernel.flag_sets``), once per ``-march`` below. Each hot
loop carries a ``/* vec: <name> */`` marker in ``_scan_kernel_body.c`` (the scan) or
``_cross_scan_body.c`` / ``_cross_scan_bwd_body.c`` (the fused four-direction scan) on the line gcc reports
it at (the fused backward's reverse walk is written with vector types, so it has no loop to report). A loop that
stays scalar, or gets narrower vectors than the target has, fails the test, so a code change
cannot silently lose the fast path on one family (this happened: with trapping math, gcc left the
exp loops scalar on every target below AVX-512 and the forward ran 3x slower).

Runs wherever gcc targets x86 (about 2 s: the six compiles run in parallel); skipped otherwise.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from serpent_arch.ops import _cpu_kernel

OPS = Path(_cpu_kernel.__file__).parent
# the plain scan, the fused four-direction scan's forward and backward
BODIES = (OPS / "_scan_kernel_body.c", OPS / "_cross_scan_body.c", OPS / "_cross_scan_bwd_body.c")

# -march -> the widest vector of its ISA in bytes (SSE4.2, AVX2, AVX-512)
TARGETS = {
    "x86-64-v2": 16,
    "haswell": 32,
    "znver1": 32,
    "znver3": 32,
    "skylake-avx512": 64,
    "icelake-server": 64,
}
HOT_LOOPS = (
    "fwd-softplus",
    "fwd-recurrence",
    "fwd-gate",
    "bwd-softplus",
    "bwd-recompute",
    "bwd-output",
    "bwd-gate",
    "bwd-step",
    "bwd-step16",
    "xfwd-softplus",
    "xbwd-softplus",
    "xbwd-recompute",
)
# compiled only for AVX-512 targets (the deferred sums of _scan_kernel.c; AVX2 keeps the per-step sums)
AVX512_ONLY = {"bwd-step16"}
# written with vector types on AVX2 targets without AVX-512 (the table exp of _cross_scan_body.c, xs_softplus):
# these loops exist, and are checked, on the other targets only
NOT_AVX2 = {"xfwd-softplus", "xbwd-softplus"}
REPORT = re.compile(r"(\w+_body\.c):(\d+):\d+: optimized: loop vectorized using (\d+) byte vectors")


def _gcc() -> str:
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc not found: the vectorization report needs gcc")
    machine = subprocess.run([gcc, "-dumpmachine"], capture_output=True, text=True).stdout.strip()
    if not re.match(r"(x86_64|i[3-6]86)", machine):
        pytest.skip(f"gcc targets {machine!r}, not x86: these -march values do not exist there")
    return gcc


def marker_lines() -> dict[str, set[tuple[str, int]]]:
    """Loop name -> (file, line) pairs whose report entries belong to it (a pragma's loop may be
    reported at the pragma, at its `for` on the next line or at the first line of its body)."""
    lines = {}
    for body in BODIES:
        for i, text in enumerate(body.read_text().splitlines(), start=1):
            m = re.search(r"/\* vec: ([\w-]+) \*/", text)
            if m:
                at = {i, i + 1, i + 2} if text.lstrip().startswith("#pragma") else {i}
                lines[m.group(1)] = {(body.name, j) for j in at}
    return lines


def test_every_hot_loop_is_marked():
    assert sorted(marker_lines()) == sorted(HOT_LOOPS), f"markers in {[b.name for b in BODIES]} changed"


@pytest.fixture(scope="module")
def reports() -> dict[str, str]:
    """-march -> gcc's report of the float32 kernel built with the library's flags for it."""
    gcc = _gcc()
    procs = {}
    for march in TARGETS:
        flags = _cpu_kernel.flag_sets(march)[0]
        assert f"-march={march}" in flags
        # float32 only (-DSS_NO_F64): the float64 loops call libm exp by design and share lines
        cmd = [gcc, *flags, "-DSS_NO_F64", "-fopt-info-vec-optimized", "-c", str(OPS / "_scan_kernel.c"),
               "-o", "/dev/null"]  # fmt: skip
        procs[march] = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = {}
    for march, proc in procs.items():
        text, _ = proc.communicate(timeout=120)
        if proc.returncode != 0:
            pytest.skip(f"this gcc cannot compile for -march={march}: {text.strip()[-300:]}")
        out[march] = text
    return out


@pytest.mark.parametrize("march", TARGETS)
def test_hot_loops_vectorized_full_width(reports, march):
    widths: dict[tuple[str, int], set[int]] = {}
    for name, line, width in REPORT.findall(reports[march]):
        widths.setdefault((name, int(line)), set()).add(int(width))
    want = TARGETS[march]
    skip = (AVX512_ONLY if want != 64 else set()) | (NOT_AVX2 if want == 32 else set())
    loops = {name: lines for name, lines in marker_lines().items() if name not in skip}
    found = {name: set().union(*(widths.get(i, set()) for i in lines)) for name, lines in loops.items()}
    bad = {name: sorted(w) or "not vectorized" for name, w in found.items() if max(w, default=0) < want}
    assert not bad, (
        f"-march={march}: hot loops without {want}-byte vectors: {bad} (see `gcc -fopt-info-vec-all` for the reason)"
    )
