"""Selective scan (the S6 / Mamba recurrence) with interchangeable backends.

Same contract as mamba-ssm's ``selective_scan_fn``, plus a ``backend`` argument::

    dt    = delta + delta_bias[:, None]              (if delta_bias given)
    dt    = softplus(dt)                             (if delta_softplus; torch's softplus, threshold 20)
    h_t   = exp(dt_t * A) * h_{t-1} + dt_t * B_t * u_t      h_{-1} = 0, h: (batch, dim, N)
    y_t   = sum_n C_t[n] h_t[n] + D * u_t
    out   = y * silu(z)                              (if z given)

Shapes: u, delta, z: (batch, dim, L); A: (dim, N), real; B, C: (batch, groups, N, L) or
(batch, N, L) (= one group), channel d reads group d // (dim // groups); D, delta_bias: (dim,).

Precision: computation is float32 for float16 / bfloat16 / float32 inputs; if any of u, delta, A,
B, C is float64 the fallback backends (cpu_kernel, torch, reference) compute in float64 instead,
which is what makes ``torch.autograd.gradcheck`` usable (mamba_ssm and triton have no float64
support).
``out`` has u's dtype; ``last_state`` (batch, dim, N) has the compute dtype; gradients have each
input's dtype. ``last_state`` is not differentiable in the mamba_ssm, triton, cpu_kernel and torch
backends (as in mamba-ssm); only ``reference`` backpropagates through it.

Backends (chosen by :func:`resolve_backend`):

* ``"mamba_ssm"``: mamba-ssm's fused CUDA kernel; needs mamba-ssm built with its CUDA extension
  (:data:`MAMBA_SSM_INSTALL`, README "GPU install") and CUDA tensors.
* ``"triton"``: fused Triton kernels compiled at run time (see ``_triton_scan.py``); CUDA tensors, or
  CPU tensors through Triton's interpreter when Python was launched with ``TRITON_INTERPRET=1``.
* ``"cpu_kernel"``: OpenMP C kernel compiled on first use (see ``_cpu_kernel.py``); CPU tensors.
* ``"torch"``: chunked log-depth scan in plain PyTorch (see ``_torch_scan.py``); any device.
* ``"reference"``: the per-step Python loop with plain autograd; slow, kept as the ground truth.
* ``"onnx"``: a loop over chunks as ``torch``'s ``scan`` op, for graph export (see ``_export_scan.py``);
  any device; never picked by ``"auto"``.
* ``"auto"``: on CUDA mamba_ssm if its kernel runs, else triton if its kernels run on that device;
  on CPU cpu_kernel if it compiles; else torch.

A fast backend counts as usable on a device only after a tiny forward and backward there ran and
agreed with the reference, once per process and device: mamba_ssm in :func:`mamba_ssm_status`
(``_mamba_ssm.py``: why "mamba-ssm imports" is not enough), triton in ``_triton_scan.availability``.
"""

from __future__ import annotations

import functools
import logging

import torch

from . import _cpu_kernel, _mamba_ssm
from ._cpu_kernel import selective_scan_cpu
from ._mamba_ssm import MAMBA_SSM_INSTALL, mamba_ssm_status
from ._torch_scan import selective_scan_torch
from .reference import selective_scan_ref

logger = logging.getLogger(__name__)

BACKENDS = ("auto", "mamba_ssm", "triton", "cpu_kernel", "torch", "reference", "onnx")

# MAMBA_SSM_INSTALL and mamba_ssm_status are re-exported: backend_report, doctor and users import them
# from here. This module itself reads them as _mamba_ssm.<name>, where tests patch them.
__all__ = ["BACKENDS", "MAMBA_SSM_INSTALL", "available_backends", "mamba_ssm_status", "resolve_backend",
           "selective_scan", "selective_scan_ref"]  # fmt: skip


@functools.cache
def _triton_import():
    """``(serpent_arch.ops._triton_scan, "")`` if Triton imports, else ``(None, reason)``; cached.

    Imported on demand: importing triton costs time, and nothing needs it off CUDA unless
    ``TRITON_INTERPRET=1`` (read by triton at its first import) asks for its interpreter.
    """
    try:
        from . import _triton_scan
    except Exception as exc:  # ImportError, or a Triton install broken for this torch
        return None, f"{type(exc).__name__}: {exc}"
    return _triton_scan, ""


def _triton_availability(device: torch.device, dtype: torch.dtype, auto: bool = False) -> tuple[bool, str]:
    module, reason = _triton_import()
    if module is None:
        return False, f"triton cannot be imported ({reason})"
    return module.availability(device, dtype, allow_interpreter=not auto)


@functools.cache
def _info_once(message: str) -> None:
    logger.info(message)


@functools.cache
def _warn_once(message: str) -> None:
    logger.warning(message)


def resolve_backend(backend: str = "auto", tensor: torch.Tensor | None = None) -> str:
    """The single place that maps a requested backend to the one that will run.

    Args:
        backend: one of :data:`BACKENDS`.
        tensor: a representative input (``u``); its device and dtype decide what can run.
            ``None`` means a float32 CPU tensor.

    Returns:
        The concrete backend name (never ``"auto"``).

    ``"auto"`` picks ``mamba_ssm`` for CUDA tensors when its kernel runs on that device (and the
    dtype is not float64), else ``triton`` when its kernels compile and agree with the reference on
    that device (checked once per device), else ``cpu_kernel`` for CPU tensors when the C kernel is
    available, else ``torch``; falling back logs a warning once per reason, naming it (and, for
    mamba_ssm, the install command of its kernel). Explicitly requesting a backend that cannot run
    raises ``RuntimeError`` saying why; an unknown name raises ``ValueError``.
    """
    if backend not in BACKENDS:
        names = ", ".join(BACKENDS)
        raise ValueError(f"selective_scan: unknown backend {backend!r}; expected one of {names}")
    device = tensor.device if tensor is not None else torch.device("cpu")
    dtype = tensor.dtype if tensor is not None else torch.float32

    if backend == "auto":
        if device.type == "cuda" and dtype != torch.float64:
            ok, reason = _mamba_ssm.mamba_ssm_status(device)
            if ok:
                return "mamba_ssm"
            problem = _mamba_ssm._mamba_ssm_problem(reason)
            _warn_once(f"selective_scan on {device}: {problem}. Using a slower backend instead.")
            ok, reason = _triton_availability(device, dtype, auto=True)
            if ok:
                _info_once(f"selective_scan on {device}: using the 'triton' backend")
                return "triton"
            _warn_once(f"selective_scan on {device}: triton unavailable ({reason}); using the slower 'torch' backend")
        if device.type == "cpu":
            ok, reason = _cpu_kernel.availability()
            if ok:
                return "cpu_kernel"
            _warn_once(f"selective_scan: cpu_kernel unavailable ({reason}); using the slower 'torch' backend")
        return "torch"

    if backend == "mamba_ssm":
        if device.type != "cuda":
            raise RuntimeError(
                f"selective_scan: backend 'mamba_ssm' needs CUDA tensors, got tensors on {device}; "
                "use backend='auto' to pick a backend for this device"
            )
        if dtype == torch.float64:
            raise RuntimeError("selective_scan: backend 'mamba_ssm' does not support float64 inputs")
        ok, reason = _mamba_ssm.mamba_ssm_status(device)
        if not ok:
            raise RuntimeError(f"selective_scan: {_mamba_ssm._mamba_ssm_problem(reason)}")
    elif backend == "triton":
        ok, reason = _triton_availability(device, dtype)
        if not ok:
            raise RuntimeError(f"selective_scan: backend 'triton' is unavailable: {reason}")
    elif backend == "cpu_kernel":
        if device.type != "cpu":
            raise RuntimeError(f"selective_scan: backend 'cpu_kernel' needs CPU tensors, got {device}")
        ok, reason = _cpu_kernel.availability()
        if not ok:
            raise RuntimeError(f"selective_scan: backend 'cpu_kernel' is unavailable: {reason}")
    return backend


def available_backends(device: str | torch.device = "cpu") -> list[str]:
    """Concrete backends that can run on ``device`` here (float32 inputs), fastest first."""
    probe = torch.empty(0, device=device)
    names = []
    # off CUDA, triton can only run in Triton's interpreter: the slowest of all
    order = ("mamba_ssm", "triton", "cpu_kernel", "torch", "reference")
    if probe.device.type != "cuda":
        order = ("cpu_kernel", "torch", "reference", "triton")
    for name in order:
        try:
            names.append(resolve_backend(name, probe))
        except RuntimeError:
            pass
    return names


def _fmt(shape) -> str:
    return str(tuple(int(s) for s in shape))


def _check_inputs(u, delta, A, B, C, D, z, delta_bias) -> tuple[int, int, int, int, int]:
    """Validate shapes/dtypes/devices; returns (batch, dim, L, N, groups)."""
    named = {"u": u, "delta": delta, "A": A, "B": B, "C": C, "D": D, "z": z, "delta_bias": delta_bias}
    for name, t in named.items():
        if t is None and name in ("D", "z", "delta_bias"):
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"selective_scan: `{name}` must be a torch.Tensor, got {type(t).__name__}")
        if t.is_complex():
            raise TypeError(f"selective_scan: complex `{name}` ({t.dtype}) is not supported")
        if not t.is_floating_point():
            raise TypeError(f"selective_scan: `{name}` must be a floating-point tensor, got {t.dtype}")
        if t.device != u.device:
            raise ValueError(f"selective_scan: `{name}` is on {t.device} but `u` is on {u.device}")

    if u.ndim != 3:
        raise ValueError(f"selective_scan: `u` must have shape (batch, dim, L), got {_fmt(u.shape)}")
    batch, dim, L = u.shape
    if tuple(delta.shape) != (batch, dim, L):
        raise ValueError(
            f"selective_scan: `delta` must have shape (batch, dim, L) = {_fmt(u.shape)} like `u`, "
            f"got {_fmt(delta.shape)}"
        )
    if A.ndim != 2 or A.shape[0] != dim or A.shape[1] < 1:
        got = _fmt(A.shape)
        raise ValueError(f"selective_scan: `A` must have shape (dim, N) = ({dim}, N) with N >= 1, got {got}")
    N = A.shape[1]

    groups = []
    for name, t in (("B", B), ("C", C)):
        if t.ndim == 3:
            expected, g = (batch, N, L), 1
        elif t.ndim == 4:
            expected, g = (batch, t.shape[1], N, L), t.shape[1]
        else:
            raise ValueError(
                f"selective_scan: `{name}` must have shape (batch, groups, N, L) = "
                f"({batch}, groups, {N}, {L}) or (batch, N, L) = ({batch}, {N}, {L}), got {_fmt(t.shape)}"
            )
        if tuple(t.shape) != expected:
            form = "(batch, N, L)" if t.ndim == 3 else "(batch, groups, N, L)"
            raise ValueError(
                f"selective_scan: `{name}` must have shape {form} = {_fmt(expected)} "
                f"(batch, L from `u`, N from `A`), got {_fmt(t.shape)}"
            )
        groups.append(g)
    if groups[0] != groups[1]:
        raise ValueError(
            f"selective_scan: `B` and `C` must have the same number of groups, got {groups[0]} "
            f"(B {_fmt(B.shape)}) and {groups[1]} (C {_fmt(C.shape)})"
        )
    g = groups[0]
    if g < 1 or dim % g != 0:
        raise ValueError(
            f"selective_scan: dim = {dim} (from `u` {_fmt(u.shape)}) must be divisible by groups = {g} "
            f"(from `B` {_fmt(B.shape)})"
        )

    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and tuple(t.shape) != (dim,):
            got = _fmt(t.shape)
            raise ValueError(f"selective_scan: `{name}` must have shape (dim,) = ({dim},), got {got}")
    if z is not None and tuple(z.shape) != (batch, dim, L):
        expected, got = _fmt(u.shape), _fmt(z.shape)
        raise ValueError(f"selective_scan: `z` must have shape (batch, dim, L) = {expected}, got {got}")
    return batch, dim, L, N, g


def _autocast_enabled(device_type: str) -> bool:
    try:
        return torch.is_autocast_enabled(device_type)
    except (TypeError, RuntimeError):  # torch < 2.4 takes no argument; devices without autocast (meta)
        return False


def _float_or_none(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.float()


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False,
                   return_last_state=False, backend="auto"):  # fmt: skip
    """Selective scan, mamba-ssm ``selective_scan_fn`` compatible (see the module docstring).

    Args:
        u: (batch, dim, L) input.
        delta: (batch, dim, L) step sizes (before ``delta_bias`` / softplus).
        A: (dim, N) real state matrix (diagonal per channel).
        B, C: (batch, groups, N, L) or (batch, N, L) input / output projections.
        D: optional (dim,) skip connection.
        z: optional (batch, dim, L) gate, ``out = y * silu(z)``.
        delta_bias: optional (dim,) added to delta.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        return_last_state: also return the final state.
        backend: ``"auto"``, ``"mamba_ssm"``, ``"triton"``, ``"cpu_kernel"``, ``"torch"`` or ``"reference"``.

    Returns:
        out (batch, dim, L) in u's dtype, or ``(out, last_state)`` with last_state
        (batch, dim, N) in float32 (float64 for float64 inputs).
    """
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(backend, u)
    if _autocast_enabled(u.device.type):
        # the scan computes in float32 whatever a backend does inside (matmuls would run in half)
        with torch.autocast(u.device.type, enabled=False):
            return selective_scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state, name)
    args = (D, z, delta_bias, bool(delta_softplus), bool(return_last_state))
    if name == "mamba_ssm":
        fn, _ = _mamba_ssm._mamba_ssm_import()
        # mamba-ssm's kernel takes float32 weights, delta and z in u's dtype and B, C in u's dtype or
        # float32 (mixed dtypes happen under autocast); autograd casts the gradients back
        delta, z = delta.to(u.dtype), None if z is None else z.to(u.dtype)
        B, C = (t if t.dtype in (u.dtype, torch.float32) else t.to(u.dtype) for t in (B, C))
        return fn(u, delta, A.float(), B, C, _float_or_none(D), z, _float_or_none(delta_bias),
                  bool(delta_softplus), bool(return_last_state))  # fmt: skip
    if name == "reference":
        return selective_scan_ref(u, delta, A, B, C, *args)
    B4 = B if B.ndim == 4 else B.unsqueeze(1)
    C4 = C if C.ndim == 4 else C.unsqueeze(1)
    if name == "cpu_kernel":
        return selective_scan_cpu(u, delta, A, B4, C4, *args)
    if name == "triton":
        return _triton_import()[0].selective_scan_triton(u, delta, A, B4, C4, *args)
    if name == "onnx":
        from ._export_scan import selective_scan_export

        return selective_scan_export(u, delta, A, B4, C4, *args)
    return selective_scan_torch(u, delta, A, B4, C4, *args)
