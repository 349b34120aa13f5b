"""Tests of serpent_arch.ops.selective_scan: every backend against the reference loop, the
reference against an independent closed form, gradchecks, input validation, backend resolution
and the memory behaviour of the chunked torch backend.

The C kernel is compiled into a fresh temporary cache dir once per session (about 1-2 s), so the
build from scratch is exercised on every run.
"""

import importlib
import math
import re
import zlib

import numpy as np
import pytest
import torch

from serpent_arch.measure.memory import TensorMemoryTracker
from serpent_arch.ops import (
    _cpu_kernel,
    _mamba_ssm,
    _torch_scan,
    available_backends,
    resolve_backend,
    selective_scan,
    selective_scan_ref,
)
from serpent_arch.ops._torch_scan import DEFAULT_CHUNK_SIZE, selective_scan_torch

# the package re-exports the function under the module's name, so fetch the module itself
ss_module = importlib.import_module("serpent_arch.ops.selective_scan")

CHUNK = DEFAULT_CHUNK_SIZE
FAST_BACKENDS = ("torch", "cpu_kernel")
ARG_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


@pytest.fixture(scope="session", autouse=True)
def fresh_kernel_cache(tmp_path_factory):
    """Build the C kernel into an empty cache dir for this session."""
    cache = tmp_path_factory.mktemp("serpent_cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SERPENT_CACHE_DIR", str(cache))
        _cpu_kernel.reset()
        yield cache
    _cpu_kernel.reset()


def require_backend(name: str) -> None:
    if name == "cpu_kernel":
        ok, reason = _cpu_kernel.availability()
        if not ok:
            pytest.skip(f"cpu_kernel unavailable: {reason}")


def make_inputs(batch, dim, L, N, groups, *, grouped=True, D=True, z=True, bias=True, softplus=True,
                dtype=torch.float32, seed=0):  # fmt: skip
    """Random inputs as a dict; B, C are (batch, groups, N, L), or (batch, N, L) if not grouped."""
    gen = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=gen, dtype=torch.float64)

    # softplus(delta) of delta ~ N(-1, 0.5) and plain delta in [0.05, 0.55] give realistic steps
    if softplus:
        delta = randn(batch, dim, L) * 0.5 - 1
    else:
        delta = torch.rand(batch, dim, L, generator=gen, dtype=torch.float64) * 0.5 + 0.05
    bc_shape = (batch, groups, N, L) if grouped else (batch, N, L)
    inputs = {
        "u": randn(batch, dim, L),
        "delta": delta,
        "A": -(torch.rand(dim, N, generator=gen, dtype=torch.float64) * 2 + 0.2),
        "B": randn(*bc_shape),
        "C": randn(*bc_shape),
        "D": randn(dim) if D else None,
        "z": randn(batch, dim, L) if z else None,
        "delta_bias": randn(dim) * 0.2 if bias else None,
    }
    return {k: (None if v is None else v.to(dtype)) for k, v in inputs.items()}


def run(backend, inputs, *, softplus, grad=True, return_last_state=False, gout_seed=1, **kw):
    """Forward (+ backward with a fixed random output gradient); returns (outputs, grads)."""
    leaves = {k: (None if v is None else v.clone().requires_grad_(grad)) for k, v in inputs.items()}
    res = selective_scan(**leaves, delta_softplus=softplus, return_last_state=return_last_state,
                         backend=backend, **kw)  # fmt: skip
    out, last = res if return_last_state else (res, None)
    grads = {}
    if grad:
        gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(gout_seed)).to(out.dtype)
        out.backward(gout)
        grads = {k: v.grad for k, v in leaves.items() if v is not None}
    return (out.detach(), None if last is None else last.detach()), grads


def assert_close(actual, expected, name, rtol=1e-4):
    """Max error within rtol * max|expected| (scale-relative: gradients span orders of magnitude)."""
    assert actual.shape == expected.shape, f"{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    a, e = actual.double(), expected.double()
    scale = e.abs().max().item() if e.numel() else 0.0
    err = (a - e).abs().max().item() if e.numel() else 0.0
    assert err <= rtol * scale + 1e-6, f"{name}: max error {err:.3e} vs scale {scale:.3e}"


def assert_matches_reference_with_last_state(result, inputs):
    """``result`` of ``run(..., softplus=True, return_last_state=True)`` against the reference."""
    (out, last), grads = result
    (ref_out, ref_last), ref_grads = run("reference", inputs, softplus=True, return_last_state=True)
    assert_close(out, ref_out, "out")
    assert_close(last, ref_last, "last_state")
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"grad {name}")


# (batch, dim, L, N, groups, grouped, D, z, bias, softplus)
CASES = [
    pytest.param(1, 4, 1, 3, 1, False, False, False, False, False, id="L1-plain-3d"),
    pytest.param(2, 4, 7, 3, 2, True, True, True, True, True, id="L7-all-g2"),
    pytest.param(2, 8, CHUNK, 4, 4, True, True, False, True, True, id="Lchunk-g4-noz"),
    pytest.param(1, 8, CHUNK + 1, 4, 2, True, False, True, False, False, id="Lchunk+1-g2-noD"),
    pytest.param(2, 6, 3 * CHUNK + 5, 5, 1, False, True, True, True, True, id="L3chunk+5-3d"),
    pytest.param(1, 8, 3 * CHUNK + 5, 2, 4, True, False, False, True, False, id="L3chunk+5-g4"),
    pytest.param(2, 40, 70, 3, 2, True, True, True, True, True, id="dim40-partial-simd-block"),
    pytest.param(1, 4, 7, 1, 1, True, True, True, False, True, id="N1-g1-4d"),
    # N = 16, 8 and 4 take the C kernel's specialised backward (constant trip count); 4: the Lchunk cases
    pytest.param(2, 24, 33, 16, 2, True, True, True, True, True, id="N16-g2"),
    pytest.param(1, 8, 20, 16, 1, False, True, False, True, False, id="N16-3d-noz"),
    # AVX-512 builds sum N = 16 sixteen steps at a time: 3 blocks and a tail of 2, four groups as in SS2D
    pytest.param(2, 16, 50, 16, 4, True, True, False, True, True, id="N16-g4-L50"),
    pytest.param(2, 24, 33, 8, 2, True, True, True, True, True, id="N8-g2"),
    pytest.param(1, 8, 20, 8, 1, False, False, True, False, True, id="N8-3d-noD"),
]


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("batch,dim,L,N,groups,grouped,D,z,bias,softplus", CASES)
def test_matches_reference(backend, batch, dim, L, N, groups, grouped, D, z, bias, softplus):
    require_backend(backend)
    seed = zlib.crc32(repr((batch, dim, L, N, groups, grouped, D, z, bias, softplus)).encode())
    inputs = make_inputs(batch, dim, L, N, groups, grouped=grouped, D=D, z=z, bias=bias, softplus=softplus,
                         seed=seed)  # fmt: skip
    (out, _), grads = run(backend, inputs, softplus=softplus)
    (ref_out, _), ref_grads = run("reference", inputs, softplus=softplus)
    assert out.dtype == torch.float32
    assert_close(out, ref_out, "out")
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert grads[name].dtype == inputs[name].dtype, name
        assert_close(grads[name], ref_grads[name], f"grad {name}")


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            return set(next((ln for ln in f if ln.startswith("flags")), ":").split(":", 1)[1].split())
    except OSError:
        return set()


# forced kernel targets this CPU can run: what an AVX2-only or an SSE4.2-only machine builds
FORCED_MARCH = [
    pytest.param(m, marks=pytest.mark.skipif(not (_cpu_kernel.is_x86() and need <= _cpu_flags()),
                                             reason=f"needs an x86 CPU with {sorted(need)}"))
    for m, need in (
        ("haswell", {"avx2", "fma"}),
        ("x86-64-v2", {"sse4_2"}),
        ("skylake-avx512", {"avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512cd"}),
    )
]  # fmt: skip


@pytest.mark.parametrize("march", FORCED_MARCH)
@pytest.mark.parametrize("case", ["L7-all-g2", "dim40-partial-simd-block", "L3chunk+5-3d", "N16-g2", "N16-g4-L50"])
def test_forced_march_build_matches_reference(march, case):
    """The kernel built as an AVX2 (haswell), SSE4.2 or AVX-512 machine builds it (SERPENT_CPU_MARCH's
    build) against the reference: forward and every gradient on fresh random inputs. The AVX-512 build
    takes the deferred sums of the N = 16 backward, the others the per-step sums."""
    require_backend("cpu_kernel")
    (batch, dim, L, N, groups, grouped, D, z, bias, softplus) = next(c.values for c in CASES if c.id == case)
    seed = zlib.crc32(repr((march, case)).encode())
    inputs = make_inputs(batch, dim, L, N, groups, grouped=grouped, D=D, z=z, bias=bias, softplus=softplus,
                         seed=seed)  # fmt: skip
    with _cpu_kernel.variant(march) as lib:
        assert f"-march={march}" in lib.serpent_flags
        (out, _), grads = run("cpu_kernel", inputs, softplus=softplus)
    (ref_out, _), ref_grads = run("reference", inputs, softplus=softplus)
    assert_close(out, ref_out, "out")
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"grad {name}")


def test_march_env_selects_build(monkeypatch):
    require_backend("cpu_kernel")
    monkeypatch.setenv(_cpu_kernel.MARCH_ENV, "x86-64" if _cpu_kernel.is_x86() else "native")
    assert f"-march={_cpu_kernel.kernel_march()}" in _cpu_kernel.build_info()
    monkeypatch.setenv(_cpu_kernel.MARCH_ENV, "no-such-cpu")
    ok, reason = _cpu_kernel.availability()
    assert not ok and "-march=no-such-cpu" in reason and _cpu_kernel.MARCH_ENV in reason
    monkeypatch.delenv(_cpu_kernel.MARCH_ENV)
    assert "-march=native" in _cpu_kernel.build_info() or _cpu_kernel.availability()[0]


BUILDS = [pytest.param(None, id="native"), *FORCED_MARCH]


@pytest.mark.parametrize("march", BUILDS)
def test_kernel_exp_accuracy_and_special_values(march):
    """The vectorizable float32 exp of the hot loops: <= 1.1 ulp wherever the result is a normal
    float above 1.7e-38 (1.3 ulp without FMA, x86-64-v2), exactly 0 below that, inf above 88.72,
    NaN for NaN."""
    require_backend("cpu_kernel")
    with _cpu_kernel.variant(march):
        x = torch.linspace(-90, 90, 400_001)
        y = _cpu_kernel.pointwise("exp", x).double()
        special = _cpu_kernel.pointwise("exp", torch.tensor([math.nan, math.inf, -math.inf, 0.0, -0.0]))
    ref = torch.exp(x.double())
    normal = (ref > 1.7e-38) & (ref < torch.finfo(torch.float32).max)
    ulp = 2.0 ** (torch.floor(torch.log2(ref[normal])) - 23)
    assert ((y[normal] - ref[normal]).abs() / ulp).max().item() <= (1.3 if march == "x86-64-v2" else 1.1)
    assert (y[ref <= 1.6e-38] == 0).all()
    assert torch.isinf(y[ref > 3.41e38]).all() and torch.isfinite(y[ref < 3.40e38]).all()
    assert torch.isnan(special[0]) and special[1] == math.inf and special[2] == 0
    assert (special[3:] == 1).all()


@pytest.mark.parametrize("march", BUILDS)
def test_kernel_decay_exp_equals_exp_for_nonpositive_arguments(march):
    """The decay's exp (arguments dt * A <= 0, where the kernels skip the upper clamp) gives exactly the
    bits of the general exp for every argument <= 0, -inf included; NaN gives 0 (the state it would
    multiply is already non-finite then)."""
    require_backend("cpu_kernel")
    x = torch.cat([-torch.logspace(-30, 2.1, 200_001), torch.tensor([0.0, -0.0, -math.inf, -1e30])])
    with _cpu_kernel.variant(march):
        assert torch.equal(_cpu_kernel.pointwise("exp_nonpos", x), _cpu_kernel.pointwise("exp", x))
        assert _cpu_kernel.pointwise("exp_nonpos", torch.tensor([math.nan])).item() == 0


@pytest.mark.parametrize("march", BUILDS)
def test_kernel_fused_decay_exp_accuracy(march):
    """The fused scan's decay exp (xs_expn: a table of 2^(i/8) on AVX2 without AVX-512, else the polynomial
    exp_nonpos): <= 1.3 ulp against double exp for every argument in [-86.5, 0] (results down to 2.7e-38),
    exactly 1 at 0 and -0; below -86.5 and at -inf a tiny finite decay (the table's floor exp(-86.5), or 0),
    never an infinity or a value above 2.8e-38; NaN gives NaN (table) or 0."""
    require_backend("cpu_kernel")
    x = torch.cat([torch.linspace(-86.5, 0, 400_001), -torch.logspace(-30, 1.9, 20_001)])
    with _cpu_kernel.variant(march):
        y = _cpu_kernel.pointwise("exp_decay", x).double()
        ends = _cpu_kernel.pointwise("exp_decay", torch.tensor([0.0, -0.0]))
        tiny = _cpu_kernel.pointwise("exp_decay", torch.tensor([-86.6, -100.0, -1e30, -math.inf]))
        nan = _cpu_kernel.pointwise("exp_decay", torch.tensor([math.nan])).item()
    ref = torch.exp(x.double())
    ulp = 2.0 ** (torch.floor(torch.log2(ref)) - 23)
    assert ((y - ref).abs() / ulp).max().item() <= 1.3
    assert (ends == 1).all()
    assert torch.isfinite(tiny).all() and (tiny >= 0).all() and (tiny <= 2.8e-38).all()
    assert math.isnan(nan) or nan == 0


FUSED_POINTWISE = ("softplus_fused", "sigmoid_fused")


@pytest.mark.parametrize("march", BUILDS)
def test_kernel_softplus_sigmoid_match_torch(march):
    """softplus (threshold 20) and sigmoid of the kernel against torch, NaN and infinities included: the
    plain scan's, and the fused scan's (xs_softplus: max(v, 0) + log1p(exp(-|v|)) with the table exp on
    AVX2, else the plain ones)."""
    require_backend("cpu_kernel")
    x = torch.cat([torch.linspace(-100, 100, 20_001), torch.tensor([math.nan, math.inf, -math.inf, 20.0]),
                   torch.linspace(19.9, 20.1, 2001), torch.linspace(-0.01, 0.01, 2001)])  # fmt: skip
    with _cpu_kernel.variant(march):
        got = {name: _cpu_kernel.pointwise(name, x) for name in ("softplus", "sigmoid", *FUSED_POINTWISE)}
    want = {"softplus": torch.nn.functional.softplus(x), "sigmoid": torch.sigmoid(x)}
    for name in got:
        got_, want_ = got[name], want[name.removesuffix("_fused")]
        assert torch.equal(torch.isnan(got_), torch.isnan(want_)), name
        assert torch.equal(torch.isinf(got_), torch.isinf(want_)), name
        fin = torch.isfinite(want_)
        torch.testing.assert_close(got_[fin], want_[fin], rtol=4e-7, atol=1e-37, msg=name)
        assert (got_[x > 20] == x[x > 20]).all() if name.startswith("softplus") else (got_[x > 20] == 1).all(), name


NONFINITE = {"u-nan": ("u", math.nan), "delta-nan": ("delta", math.nan), "delta+inf": ("delta", math.inf),
             "delta-inf": ("delta", -math.inf), "B-inf": ("B", math.inf), "z-nan": ("z", math.nan)}  # fmt: skip


@pytest.mark.parametrize("march", BUILDS)
@pytest.mark.parametrize("where", NONFINITE)
def test_nonfinite_inputs_propagate_like_reference(march, where):
    """A NaN or infinity in one input element gives NaN / inf / finite values at exactly the
    output positions where the reference gives them, and the same finite values elsewhere."""
    require_backend("cpu_kernel")
    inputs = make_inputs(1, 16, 9, 4, 1, seed=21)
    name, value = NONFINITE[where]
    inputs[name] = inputs[name].clone()
    inputs[name].view(-1)[3] = value  # channel 0, time 3 (B: group 0, state 0, time 3)
    with torch.no_grad(), _cpu_kernel.variant(march):
        out = selective_scan(**inputs, delta_softplus=True, backend="cpu_kernel")
    with torch.no_grad():
        ref = selective_scan(**inputs, delta_softplus=True, backend="reference")
    assert torch.equal(torch.isnan(out), torch.isnan(ref)), where
    assert torch.equal(torch.isinf(out), torch.isinf(ref)) and torch.equal(out[torch.isinf(ref)], ref[torch.isinf(ref)])
    fin = torch.isfinite(ref)
    assert fin.any(), where
    assert_close(out[fin], ref[fin], f"{where} finite part")


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("grouped", [True, False])
def test_last_state(backend, grouped):
    require_backend(backend)
    inputs = make_inputs(2, 8, CHUNK + 3, 4, 2 if grouped else 1, grouped=grouped, seed=3)
    result = run(backend, inputs, softplus=True, return_last_state=True)
    (_, last), _ = result
    assert last.shape == (2, 8, 4) and last.dtype == torch.float32
    assert_matches_reference_with_last_state(result, inputs)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_last_state_not_differentiable(backend):
    require_backend(backend)
    inputs = {k: v.requires_grad_() for k, v in make_inputs(1, 4, 5, 2, 1, seed=4).items() if v is not None}
    out, last = selective_scan(**inputs, return_last_state=True, backend=backend)
    assert out.requires_grad and not last.requires_grad


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_inputs(backend, dtype):
    require_backend(backend)
    inputs = make_inputs(2, 8, 19, 4, 2, dtype=dtype, seed=5)
    (out, last), grads = run(backend, inputs, softplus=True, return_last_state=True)
    (ref_out, _), ref_grads = run("reference", inputs, softplus=True, return_last_state=True)
    assert out.dtype == dtype and last.dtype == torch.float32
    # both compute in float32 from the same rounded inputs; the difference is output rounding
    assert_close(out, ref_out, "out", rtol=1e-2)
    for name in grads:
        assert grads[name].dtype == dtype, name
        assert_close(grads[name], ref_grads[name], f"grad {name}", rtol=2e-2)


@pytest.mark.parametrize("backend", FAST_BACKENDS + ("reference",))
def test_float64_computes_in_float64(backend):
    require_backend(backend)
    inputs = make_inputs(1, 4, 9, 3, 2, dtype=torch.float64, seed=6)
    out, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend=backend)
    ref = closed_form_numpy(inputs, softplus=True)
    assert out.dtype == torch.float64 and last.dtype == torch.float64
    np.testing.assert_allclose(out.numpy(), ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5, 16])
def test_torch_backend_chunk_sizes(chunk_size):
    inputs = make_inputs(2, 4, 21, 3, 2, seed=7)
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    kw = {"delta_softplus": True, "return_last_state": True, "chunk_size": chunk_size}
    out, last = selective_scan_torch(**leaves, **kw)
    out.backward(torch.ones_like(out))
    ref_leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    ref_out, ref_last = selective_scan_ref(**ref_leaves, delta_softplus=True, return_last_state=True)
    ref_out.backward(torch.ones_like(ref_out))
    assert_close(out, ref_out, "out")
    assert_close(last, ref_last, "last_state")
    for name in ARG_NAMES:
        assert_close(leaves[name].grad, ref_leaves[name].grad, f"grad {name}")


@pytest.mark.parametrize("batch,groups", [(1, 1), (2, 1), (1, 2)])
def test_cpu_kernel_threads_and_channel_slices(monkeypatch, batch, groups):
    """Force several threads on a small problem: the backward then splits each group's channels
    into per-thread slices with their own gB/gC buffers, the forward spreads channel blocks."""
    require_backend("cpu_kernel")
    monkeypatch.setattr(_cpu_kernel, "_MIN_WORK_PER_THREAD", 1)
    threads = torch.get_num_threads()
    torch.set_num_threads(4)
    try:
        assert _cpu_kernel._num_threads(batch, 40, 30, 3) == 4
        assert _cpu_kernel._num_parts(batch, groups, 40 // groups, 4) > 1
        inputs = make_inputs(batch, 40, 30, 3, groups, seed=13)
        result = run("cpu_kernel", inputs, softplus=True, return_last_state=True)
    finally:
        torch.set_num_threads(threads)
    assert_matches_reference_with_last_state(result, inputs)


@pytest.mark.parametrize("backend", FAST_BACKENDS)
def test_non_contiguous_inputs(backend):
    """B, C, u as they come out of projections: strided views, not contiguous tensors."""
    require_backend(backend)
    inputs = make_inputs(2, 8, 12, 3, 2, seed=14)
    inputs["u"] = inputs["u"].transpose(1, 2).contiguous().transpose(1, 2)
    inputs["B"] = inputs["B"].permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    inputs["C"] = torch.stack([inputs["C"], inputs["C"]], dim=-1)[..., 0]
    assert not (inputs["u"].is_contiguous() or inputs["B"].is_contiguous() or inputs["C"].is_contiguous())
    (out, _), grads = run(backend, inputs, softplus=True)
    (ref_out, _), ref_grads = run("reference", inputs, softplus=True)
    assert_close(out, ref_out, "out")
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"grad {name}")


def closed_form_numpy(inputs, softplus):
    """y_t = sum_{s<=t} sum_n C_t[n] exp(A[n] sum_{r=s+1..t} dt_r) dt_s B_s[n] u_s (+ D u_t, gate).

    The unrolled solution of the recurrence, evaluated with explicit loops in float64: no
    recurrence, no torch, no shared code with the implementations under test.
    """
    x = {k: (None if v is None else v.detach().double().numpy()) for k, v in inputs.items()}
    u, delta, A = x["u"], x["delta"], x["A"]
    batch, dim, L = u.shape
    B = x["B"] if x["B"].ndim == 4 else x["B"][:, None]
    C = x["C"] if x["C"].ndim == 4 else x["C"][:, None]
    dpg = dim // B.shape[1]
    y = np.zeros((batch, dim, L))
    for b in range(batch):
        for d in range(dim):
            g = d // dpg
            dt = delta[b, d] + (0.0 if x["delta_bias"] is None else x["delta_bias"][d])
            if softplus:
                dt = np.where(dt > 20, dt, np.log1p(np.exp(dt)))
            for t in range(L):
                acc = 0.0
                for s in range(t + 1):
                    decay = np.exp(A[d] * dt[s + 1 : t + 1].sum())
                    acc += float(np.sum(C[b, g, :, t] * decay * dt[s] * B[b, g, :, s] * u[b, d, s]))
                if x["D"] is not None:
                    acc += x["D"][d] * u[b, d, t]
                if x["z"] is not None:
                    zt = x["z"][b, d, t]
                    acc *= zt / (1.0 + math.exp(-zt))
                y[b, d, t] = acc
    return y


@pytest.mark.parametrize("grouped,softplus", [(True, True), (False, False)])
def test_reference_matches_closed_form(grouped, softplus):
    inputs = make_inputs(2, 4, 6, 3, 2 if grouped else 1, grouped=grouped, softplus=softplus,
                         dtype=torch.float64, seed=8)  # fmt: skip
    out = selective_scan_ref(**inputs, delta_softplus=softplus)
    np.testing.assert_allclose(out.numpy(), closed_form_numpy(inputs, softplus), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "torch", "torch-chunk2", "cpu_kernel"])
@pytest.mark.parametrize("grouped", [True, False])
def test_gradcheck_float64(backend, grouped):
    require_backend(backend)
    inputs = make_inputs(2, 4, 5, 2, 2 if grouped else 1, grouped=grouped, dtype=torch.float64, seed=9)
    leaves = tuple(inputs[k].clone().requires_grad_() for k in ARG_NAMES)

    def fn(*args):
        kw = dict(zip(ARG_NAMES, args))
        if backend == "torch-chunk2":  # several chunks, the last one partial
            B4, C4 = (t if t.ndim == 4 else t.unsqueeze(1) for t in (kw.pop("B"), kw.pop("C")))
            return selective_scan_torch(B=B4, C=C4, **kw, delta_softplus=True, chunk_size=2)
        return selective_scan(**kw, delta_softplus=True, backend=backend)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-5)


# --- validation ------------------------------------------------------------------------------


def _valid():
    return make_inputs(2, 8, 5, 3, 2, seed=10)


# messages contain parentheses: escape them, and let "..." stand for anything in between
def _msg(text: str) -> str:
    return re.escape(text).replace(re.escape("..."), ".*")


@pytest.mark.parametrize(
    "name,value,pattern",
    [
        ("u", torch.zeros(8, 5), _msg("`u` must have shape (batch, dim, L), got (8, 5)")),
        ("delta", torch.zeros(2, 8, 4), _msg("`delta` must have shape (batch, dim, L) = (2, 8, 5)...")),
        ("A", torch.zeros(7, 3), _msg("`A` must have shape (dim, N) = (8, N)...got (7, 3)")),
        ("A", torch.zeros(8, 3, dtype=torch.complex64), _msg("complex `A`...not supported")),
        ("B", torch.zeros(2, 2, 4, 5), _msg("`B` must have shape (batch, groups, N, L) = (2, 2, 3, 5)")),
        ("B", torch.zeros(2, 4, 5), _msg("`B` must have shape (batch, N, L) = (2, 3, 5)...got (2, 4, 5)")),
        ("C", torch.zeros(1, 2, 2, 3, 5), _msg("`C` must have shape ... = (2, groups, 3, 5)")),
        ("C", torch.zeros(2, 1, 3, 6), _msg("`C` must have shape (batch, groups, N, L) = (2, 1, 3, 5)")),
        ("D", torch.zeros(7), _msg("`D` must have shape (dim,) = (8,), got (7,)")),
        ("z", torch.zeros(2, 8, 6), _msg("`z` must have shape (batch, dim, L) = (2, 8, 5)...got (2, 8, 6)")),
        ("delta_bias", torch.zeros(8, 1), _msg("`delta_bias` must have shape (dim,) = (8,), got (8, 1)")),
        ("u", torch.zeros(2, 8, 5, dtype=torch.int64), _msg("`u` must be a floating-point tensor")),
    ],
)
def test_invalid_shapes(name, value, pattern):
    inputs = _valid()
    inputs[name] = value
    with pytest.raises((ValueError, TypeError), match=pattern):
        selective_scan(**inputs, backend="torch")


def test_groups_must_divide_dim():
    inputs = _valid()
    inputs["B"] = torch.zeros(2, 3, 3, 5)
    inputs["C"] = torch.zeros(2, 3, 3, 5)
    with pytest.raises(ValueError, match=r"dim = 8 .* must be divisible by groups = 3"):
        selective_scan(**inputs, backend="torch")


def test_b_and_c_groups_must_agree():
    inputs = _valid()
    inputs["C"] = torch.zeros(2, 4, 3, 5)
    with pytest.raises(ValueError, match=r"`B` and `C` must have the same number of groups, got 2 .* and 4"):
        selective_scan(**inputs, backend="torch")


def test_unknown_backend():
    expected = r"unknown backend 'cuda'; expected one of auto, mamba_ssm, triton, cpu_kernel, torch, reference"
    with pytest.raises(ValueError, match=expected):
        selective_scan(**_valid(), backend="cuda")


def test_mamba_ssm_not_installed(monkeypatch):
    reason = "ModuleNotFoundError: No module named 'mamba_ssm'"
    monkeypatch.setattr(_mamba_ssm, "_mamba_ssm_import", lambda: (None, reason))
    with pytest.raises(RuntimeError, match=r"'mamba_ssm' needs CUDA tensors"):
        selective_scan(**_valid(), backend="mamba_ssm")
    assert resolve_backend("auto", torch.zeros(1)) in ("cpu_kernel", "torch")


def test_mamba_ssm_needs_cuda(monkeypatch):
    monkeypatch.setattr(_mamba_ssm, "_mamba_ssm_import", lambda: (lambda *a, **k: None, ""))
    with pytest.raises(RuntimeError, match=r"'mamba_ssm' needs CUDA tensors, got tensors on cpu"):
        selective_scan(**_valid(), backend="mamba_ssm")
    # importable mamba_ssm must not be picked for CPU tensors
    assert resolve_backend("auto", torch.zeros(1)) != "mamba_ssm"


# --- backend resolution ------------------------------------------------------------------------


def test_auto_falls_back_to_torch_without_cpu_kernel(monkeypatch, caplog):
    monkeypatch.setenv("SERPENT_DISABLE_CPU_KERNEL", "1")
    ss_module._warn_once.cache_clear()
    with caplog.at_level("WARNING", logger=ss_module.__name__):
        assert resolve_backend("auto", torch.zeros(1)) == "torch"
        assert resolve_backend("auto", torch.zeros(1)) == "torch"
    fallbacks = [r for r in caplog.records if "cpu_kernel unavailable" in r.getMessage()]
    assert len(fallbacks) == 1, "the fallback warning is logged once"
    assert "SERPENT_DISABLE_CPU_KERNEL" in fallbacks[0].getMessage()
    assert "cpu_kernel" not in available_backends("cpu")
    expected = r"'cpu_kernel' is unavailable: disabled by SERPENT_DISABLE_CPU_KERNEL"
    with pytest.raises(RuntimeError, match=expected):
        selective_scan(**_valid(), backend="cpu_kernel")
    inputs = make_inputs(1, 4, 9, 2, 1, seed=11)
    assert_close(selective_scan(**inputs), selective_scan_ref(**inputs), "auto-fallback out")
    ss_module._warn_once.cache_clear()


def test_auto_on_cpu_uses_cpu_kernel_when_available():
    require_backend("cpu_kernel")
    assert resolve_backend("auto", torch.zeros(1)) == "cpu_kernel"
    assert available_backends("cpu")[:1] == ["cpu_kernel"]


def test_kernel_built_in_cache_dir(fresh_kernel_cache):
    require_backend("cpu_kernel")
    libs = list(fresh_kernel_cache.glob("_scan_kernel_*.so"))
    assert len(libs) >= 1 and all(re.fullmatch(r"_scan_kernel_[0-9a-f]{16}\.so", p.name) for p in libs)
    assert not list(fresh_kernel_cache.glob("*.tmp")), "temporary build files are cleaned up"
    # a second load reuses the library instead of recompiling
    mtimes = {p: p.stat().st_mtime_ns for p in libs}
    _cpu_kernel.reset()
    assert _cpu_kernel.availability() == (True, "")
    assert {p: p.stat().st_mtime_ns for p in libs} == mtimes


# --- memory of the torch backend ---------------------------------------------------------------


def test_torch_backend_never_builds_whole_sequence_tensor(monkeypatch):
    batch, dim, L, N = 1, 2, 4096, 16
    inputs = make_inputs(batch, dim, L, N, 1, seed=12)
    seen = []
    orig = _torch_scan._chunk_states

    def recording(dA, dBu, h0):
        seen.append(tuple(dA.shape))
        return orig(dA, dBu, h0)

    monkeypatch.setattr(_torch_scan, "_chunk_states", recording)
    with torch.no_grad(), TensorMemoryTracker() as mem:
        out = selective_scan(**inputs, delta_softplus=True, backend="torch")
    assert len(seen) == math.ceil(L / CHUNK)
    assert max(s[-2] for s in seen) == CHUNK
    full_state_bytes = batch * dim * L * N * 4
    # what a (batch, dim, L, N) implementation needs at least; the chunked one needs the output
    # (batch, dim, L) plus a few chunk-sized temporaries
    assert mem.peak_bytes < full_state_bytes / 4, (mem.peak_bytes, full_state_bytes)
    assert torch.isfinite(out).all()
