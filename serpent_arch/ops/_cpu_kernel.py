"""The ``cpu_kernel`` backend: a C kernel compiled on first use and called through ctypes.

Build: ``_scan_kernel.c`` (which includes ``_scan_kernel_body.c``) is compiled with the system C compiler
(``$CC``, else ``gcc``, else ``cc``) into ``$SERPENT_CACHE_DIR`` (default
``~/.cache/serpent_arch/``). The library name contains a hash of the sources and of the flags, so
editing the kernel recompiles it, and it is written to a temporary file and moved into place with
``os.replace``, so concurrent processes never load a half-written library. Flags are tried from
fastest to most portable: ``-O3 -fno-trapping-math -fopenmp -march=native`` (plus
``-mprefer-vector-width=512`` on x86), then without ``-march``, then without OpenMP (serial,
still correct). When nothing compiles, or
``SERPENT_DISABLE_CPU_KERNEL=1``, the backend reports itself unavailable with the reason.

``-fno-trapping-math`` is what lets gcc vectorize the hot loops below AVX-512: with trapping math
it may not evaluate the comparisons of the branch-free exp / softplus for every lane, and AVX2 or
SSE have no masked lanes to hide them, so the loops stayed scalar (AVX-512 masks made it work).
The flag only tells the compiler that nobody reads the floating-point exception flags; every
result, NaN and infinity included, is the same (no ``-ffast-math``: that would change results).
``tests/test_vectorization.py`` checks gcc's vectorization report for each x86 family.

``SERPENT_CPU_MARCH`` (default ``native``) sets the kernel's ``-march``, e.g. ``haswell`` to build
exactly what an AVX2-only machine builds; it is part of the library's hash, and a forced target
that does not compile is an error (no silent fallback). :func:`variant` selects another build
(march and extra flags) inside a ``with`` block, for the benchmarks and tests.

Kernels (details in ``_scan_kernel_body.c``):

* forward: OpenMP tasks over (batch, group, block of 16 channels of that group); the 16 channels
  are SIMD lanes (they share B_t, C_t), the N x 16 state stays in thread-private scratch, and the
  loop over L is sequential. exp / softplus / sigmoid are vectorizable polynomial versions
  (float32, <= 2.5 ulp); float64 uses libm.
* backward: tasks over (batch, group, slice of the group's channels); per channel the forward
  states are recomputed into a thread-private (L, N) buffer, then a reverse pass produces every
  gradient (AVX-512 builds with N = 16 leave the sums over the state to a second pass, 16 steps at a
  time; ``-DSS_NO_DEFERRED_SUMS`` turns that off). Each slice accumulates gB/gC into its own (L, N)
  buffer, summed here afterwards, so no two threads ever write the same element.

B and C are transposed here to contiguous (batch, groups, L, N) so each step reads one N-vector.
Threads: ``torch.get_num_threads()``, fewer for small problems. The library links libgomp by
soname, so inside a torch process it shares torch's OpenMP runtime and thread pool. All scratch
memory is allocated as torch tensors (visible to memory accounting), none with malloc.

Autograd: :class:`CpuSelectiveScanFn` runs the C forward and the C backward. Computation is float32
(float64 when any of u/delta/A/B/C is float64); the returned gradients have each input's dtype. The
last state is marked non-differentiable.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch

from .reference import compute_dtype

logger = logging.getLogger(__name__)

_SOURCES = ("_scan_kernel.c", "_scan_kernel_body.c", "_cross_scan_body.c", "_cross_scan_bwd_body.c")
_ABI_VERSION = 6
# no -ffast-math: -fno-trapping-math changes no result (see the module docstring)
OPT_FLAGS = ("-O3", "-fno-trapping-math")
# x86: vectors as wide as the target has. gcc's tuning otherwise stays at 256 bits on AVX-512
# CPUs and at 128 bits for znver1; on this project's AVX-512 machine the forward ran 1.2x faster
# with 512-bit vectors and a znver1 build 1.25x faster with 256-bit ones (forward of the scan
# benchmark's target size, one thread; unmeasured on a real Zen 1, which splits 256-bit
# operations in two)
X86_FLAGS = ("-mprefer-vector-width=512",)
_COMMON_FLAGS = ("-shared", "-fPIC")
MARCH_ENV = "SERPENT_CPU_MARCH"

_lock = threading.Lock()
# (march, extra flags) -> ctypes.CDLL or the error message (str); empty until first use
_state: dict[tuple[str, tuple[str, ...]], object] = {}
_active: list[tuple[str | None, tuple[str, ...]]] = []  # stack of variant() selections


class CpuKernelUnavailable(RuntimeError):
    """The C kernel cannot be used here; the message says why."""


def cache_dir() -> Path:
    """Directory for compiled libraries: ``$SERPENT_CACHE_DIR`` or ``~/.cache/serpent_arch``."""
    env = os.environ.get("SERPENT_CACHE_DIR")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "serpent_arch"


def _disabled() -> bool:
    return os.environ.get("SERPENT_DISABLE_CPU_KERNEL", "").strip().lower() not in ("", "0", "false", "no")


def _find_compiler() -> str | None:
    candidates = [os.environ.get("CC"), "gcc", "cc"]
    for cand in candidates:
        if cand and shutil.which(cand):
            return shutil.which(cand)
    return None


def kernel_march() -> str:
    """The kernel's ``-march``: ``$SERPENT_CPU_MARCH`` or ``native``."""
    return os.environ.get(MARCH_ENV, "").strip() or "native"


def flag_sets(march: str, extra: tuple[str, ...] = ()) -> tuple[tuple[str, ...], ...]:
    """Compiler flag sets to try, fastest first. Only ``native`` falls back to a generic build:
    a target someone asked for either builds or fails, so a benchmark never measures another one."""
    opt = (*OPT_FLAGS, *(X86_FLAGS if is_x86() else ()), *extra)
    sets = [(*opt, "-fopenmp", f"-march={march}")]
    if march == "native":
        sets += [(*opt, "-fopenmp"), opt]
    return tuple(sets)


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i386", "i686")


def _host_tag() -> str:
    """CPU identity, so a shared cache dir never hands a -march=native build to another CPU."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _source_hash(compiler: str, flags: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    here = Path(__file__).parent
    for name in _SOURCES:
        h.update((here / name).read_bytes())
    # compiler and flags are part of the key so that builds with different flags never collide
    h.update(" ".join((compiler, *flags)).encode())
    if "-march=native" in flags:
        h.update(_host_tag().encode())
    return h.hexdigest()[:16]


def _compile(compiler: str, flags: tuple[str, ...], out_dir: Path) -> Path:
    """Compile to ``out_dir/_scan_kernel_<hash>.so`` (atomically); returns the path or raises."""
    src = Path(__file__).with_name("_scan_kernel.c")
    target = out_dir / f"_scan_kernel_{_source_hash(compiler, flags)}.so"
    if target.exists():
        return target
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.stem + ".", suffix=".so.tmp", dir=out_dir)
    os.close(fd)
    try:
        cmd = [compiler, *flags, *_COMMON_FLAGS, str(src), "-o", tmp, "-lm"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise CpuKernelUnavailable(f"`{' '.join(cmd)}` failed:\n{proc.stderr.strip()[-2000:]}")
        os.chmod(tmp, 0o755)  # mkstemp made it private; a shared cache dir needs it readable
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _declare(lib: ctypes.CDLL) -> None:
    p, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    for sfx in ("f32", "f64"):
        fwd = getattr(lib, f"ss_fwd_{sfx}")
        fwd.argtypes = [p] * 8 + [i32] + [i64] * 5 + [p, p, p, i32]
        fwd.restype = None
        getattr(lib, f"ss_fwd_work_per_thread_{sfx}").argtypes = [i64]
        getattr(lib, f"ss_fwd_work_per_thread_{sfx}").restype = i64
        getattr(lib, f"ss_bwd_work_per_thread_{sfx}").argtypes = [i64, i64]
        getattr(lib, f"ss_bwd_work_per_thread_{sfx}").restype = i64
        bwd = getattr(lib, f"ss_bwd_{sfx}")
        bwd.argtypes = [p] * 8 + [i32] + [i64] * 6 + [p] * 10 + [i32]
        bwd.restype = None
        # the fused four-direction scan (_cross_scan_body.c, used by _cpu_cross_scan.py)
        getattr(lib, f"xs_fwd_{sfx}").argtypes = [p] * 4 + [i64] + [p] * 6 + [i32] + [i64] * 7 + [p, p, p, i32]
        getattr(lib, f"xs_fwd_{sfx}").restype = None
        getattr(lib, f"xs_bwd_{sfx}").argtypes = [p] * 4 + [i64] + [p] * 7 + [i32] + [i64] * 7 + [p] * 11 + [i32]
        getattr(lib, f"xs_bwd_{sfx}").restype = None
        getattr(lib, f"xs_fwd_work_per_thread_{sfx}").argtypes = [i64, i64, i64]
        getattr(lib, f"xs_fwd_work_per_thread_{sfx}").restype = i64
        getattr(lib, f"xs_bwd_work_per_thread_{sfx}").argtypes = [i64] * 3
        getattr(lib, f"xs_bwd_work_per_thread_{sfx}").restype = i64
        getattr(lib, f"xs_chunk_steps_{sfx}").argtypes = []
        getattr(lib, f"xs_chunk_steps_{sfx}").restype = i64
    lib.ss_pointwise_f32.argtypes = [i32, p, p, i64]
    lib.ss_pointwise_f32.restype = None
    lib.ss_abi_version.restype = i32
    lib.ss_has_openmp.restype = i32


def _build_and_load(march: str, extra: tuple[str, ...]) -> ctypes.CDLL:
    compiler = _find_compiler()
    if compiler is None:
        raise CpuKernelUnavailable("no C compiler found (tried $CC, gcc, cc)")
    errors = []
    for flags in flag_sets(march, extra):
        try:
            path = _compile(compiler, flags, cache_dir())
            lib = ctypes.CDLL(str(path))
            _declare(lib)
            if lib.ss_abi_version() != _ABI_VERSION:
                raise CpuKernelUnavailable(f"{path} has ABI {lib.ss_abi_version()}, expected {_ABI_VERSION}")
        except (CpuKernelUnavailable, OSError, subprocess.SubprocessError) as exc:
            errors.append(str(exc))
            continue
        lib.serpent_build = " ".join((os.path.basename(compiler), *flags))  # for logs and basicsr doctor
        if not lib.ss_has_openmp():
            logger.warning("serpent_arch cpu_kernel: compiled without OpenMP, the kernel runs on one thread")
        lib.serpent_flags = flags  # what it was built with, for the benchmarks' reports
        return lib
    hint = "" if march == "native" else f" (-march={march} from {MARCH_ENV} or variant(); unset it for native)"
    raise CpuKernelUnavailable(f"compiling the C kernel failed{hint}:\n" + "\n".join(errors))


def _selected() -> tuple[str, tuple[str, ...]]:
    """(march, extra flags) of the build to use now: the innermost :func:`variant`, else the env."""
    march, extra = _active[-1] if _active else (None, ())
    return march or kernel_march(), extra


def load_library() -> ctypes.CDLL:
    """Compile (first time only) and load the selected kernel build; raises :class:`CpuKernelUnavailable`.

    The outcome, success or failure, is remembered per build for the process (see :func:`reset`),
    except for ``SERPENT_DISABLE_CPU_KERNEL``, which is checked on every call.
    """
    if _disabled():
        raise CpuKernelUnavailable("disabled by SERPENT_DISABLE_CPU_KERNEL")
    key = _selected()
    with _lock:
        if key not in _state:
            try:
                _state[key] = _build_and_load(*key)
            except CpuKernelUnavailable as exc:
                _state[key] = str(exc)
        if isinstance(_state[key], str):
            raise CpuKernelUnavailable(str(_state[key]))
        return _state[key]  # type: ignore[return-value]


@contextlib.contextmanager
def variant(march: str | None = None, extra_flags: tuple[str, ...] = ()):
    """Use the kernel built with ``-march=march`` (None: as selected outside) plus ``extra_flags``
    for every cpu_kernel call in the block, forward and backward (benchmarks and tests compare
    builds in one process). Not for concurrent use from several threads."""
    _active.append((march, tuple(extra_flags)))
    try:
        yield load_library()
    finally:
        _active.pop()


def build_info() -> str:
    """``-march`` and flags of the build in use, e.g. ``-O3 -fno-trapping-math -fopenmp -march=haswell``."""
    return " ".join(load_library().serpent_flags)


def availability() -> tuple[bool, str]:
    """``(True, "")`` if the kernel can be used, else ``(False, reason)``. Compiles on first call."""
    try:
        load_library()
    except CpuKernelUnavailable as exc:
        return False, str(exc)
    return True, ""


def reset() -> None:
    """Forget the loaded libraries / failures so the next use rebuilds (for tests)."""
    with _lock:
        _state.clear()


POINTWISE = ("exp", "softplus", "sigmoid", "exp_nonpos", "exp_decay", "softplus_fused", "sigmoid_fused")


def pointwise(name: str, x: torch.Tensor) -> torch.Tensor:
    """The kernel's float32 ``exp`` / ``softplus`` / ``sigmoid`` of the build in use, elementwise (for tests)."""
    x = x.detach().to(torch.float32).contiguous()
    out = torch.empty_like(x)
    load_library().ss_pointwise_f32(POINTWISE.index(name), _ptr(x), _ptr(out), x.numel())
    return out


def _ptr(t: torch.Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def _prep(t: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return None if t is None else t.detach().to(dtype).contiguous()


def _time_major(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """(batch, groups, N, L) -> contiguous (batch, groups, L, N), so the kernel reads N-vectors."""
    return t.detach().to(dtype).transpose(-1, -2).contiguous()


# state updates (batch*dim*L*N) per thread below which extra threads cost more than they save
_MIN_WORK_PER_THREAD = 1 << 18


def _num_threads(batch: int, dim: int, L: int, N: int) -> int:
    """torch.get_num_threads(), reduced for small problems (as torch's own grain size does)."""
    return max(1, min(torch.get_num_threads(), batch * dim * L * N // _MIN_WORK_PER_THREAD))


def _num_parts(batch: int, groups: int, dpg: int, nthreads: int) -> int:
    """Channel slices per group in the backward (gB/gC partial buffers, one per slice).

    Enough tasks to keep every thread busy, but no more: each slice costs a (L, N) buffer.
    """
    return max(1, min(dpg, -(-nthreads // (batch * groups))))


class CpuSelectiveScanFn(torch.autograd.Function):
    """Autograd wrapper around ``ss_fwd_*`` / ``ss_bwd_*``. B and C arrive as (batch, groups, N, L)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state):
        lib = load_library()
        cdt = compute_dtype(u, delta, A, B, C)
        sfx = "f64" if cdt == torch.float64 else "f32"
        batch, dim, L = u.shape
        groups, N = B.shape[1], A.shape[1]
        nthreads = _num_threads(batch, dim, L, N)

        u_, delta_, A_ = _prep(u, cdt), _prep(delta, cdt), _prep(A, cdt)
        D_, z_, bias_ = _prep(D, cdt), _prep(z, cdt), _prep(delta_bias, cdt)
        Bt, Ct = _time_major(B, cdt), _time_major(C, cdt)
        out = torch.empty(batch, dim, L, dtype=cdt)
        last = torch.empty(batch, dim, N, dtype=cdt) if return_last_state else None
        # scratch is a torch tensor (not malloc'ed in C) so allocation tracking sees all memory used
        work = torch.empty(nthreads, getattr(lib, f"ss_fwd_work_per_thread_{sfx}")(N), dtype=cdt)
        getattr(lib, f"ss_fwd_{sfx}")(
            _ptr(u_), _ptr(delta_), _ptr(A_), _ptr(Bt), _ptr(Ct), _ptr(D_), _ptr(z_), _ptr(bias_),
            int(delta_softplus), batch, dim, L, N, groups, _ptr(out), _ptr(last), _ptr(work), nthreads,
        )  # fmt: skip
        # originals are saved (not the converted copies) so half-precision inputs stay small
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        ctx.delta_softplus = delta_softplus
        out = out.to(u.dtype)
        if return_last_state:
            ctx.mark_non_differentiable(last)
            return out, last
        return out

    @staticmethod
    def backward(ctx, gout, *_unused_glast):
        lib = load_library()
        u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
        cdt = compute_dtype(u, delta, A, B, C)
        sfx = "f64" if cdt == torch.float64 else "f32"
        batch, dim, L = u.shape
        groups, N = B.shape[1], A.shape[1]
        nthreads = _num_threads(batch, dim, L, N)
        parts = _num_parts(batch, groups, dim // groups, nthreads)

        u_, delta_, A_ = _prep(u, cdt), _prep(delta, cdt), _prep(A, cdt)
        D_, z_, bias_ = _prep(D, cdt), _prep(z, cdt), _prep(delta_bias, cdt)
        Bt, Ct = _time_major(B, cdt), _time_major(C, cdt)
        gout_ = _prep(gout, cdt)

        gu = torch.empty(batch, dim, L, dtype=cdt)
        gdelta = torch.empty(batch, dim, L, dtype=cdt)
        gA_part = torch.empty(batch, dim, N, dtype=cdt)
        gB_part = torch.zeros(batch, groups, parts, L, N, dtype=cdt)
        gC_part = torch.zeros(batch, groups, parts, L, N, dtype=cdt)
        gD_part = torch.empty(batch, dim, dtype=cdt) if D is not None else None
        gz = torch.empty(batch, dim, L, dtype=cdt) if z is not None else None
        gbias_part = torch.empty(batch, dim, dtype=cdt) if delta_bias is not None else None
        work = torch.empty(nthreads, getattr(lib, f"ss_bwd_work_per_thread_{sfx}")(L, N), dtype=cdt)
        getattr(lib, f"ss_bwd_{sfx}")(
            _ptr(u_), _ptr(delta_), _ptr(A_), _ptr(Bt), _ptr(Ct), _ptr(D_), _ptr(z_), _ptr(bias_),
            int(ctx.delta_softplus), batch, dim, L, N, groups, parts,
            _ptr(gout_), _ptr(gu), _ptr(gdelta), _ptr(gA_part), _ptr(gB_part), _ptr(gC_part),
            _ptr(gD_part), _ptr(gz), _ptr(gbias_part), _ptr(work), nthreads,
        )  # fmt: skip
        gB = gB_part.sum(2).transpose(-1, -2)
        gC = gC_part.sum(2).transpose(-1, -2)
        return (
            gu.to(u.dtype),
            gdelta.to(delta.dtype),
            gA_part.sum(0).to(A.dtype),
            gB.to(B.dtype),
            gC.to(C.dtype),
            None if D is None else gD_part.sum(0).to(D.dtype),
            None if z is None else gz.to(z.dtype),
            None if delta_bias is None else gbias_part.sum(0).to(delta_bias.dtype),
            None,
            None,
        )


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                       return_last_state=False):  # fmt: skip
    """C-kernel selective scan on CPU tensors; B, C must already be (batch, groups, N, L).

    Shapes as in :func:`serpent_arch.ops.selective_scan`. Returns ``out`` (batch, dim, L) in u's
    dtype, plus ``last_state`` (batch, dim, N) in the compute dtype if ``return_last_state``.
    """
    return CpuSelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus),
                                    bool(return_last_state))  # fmt: skip
