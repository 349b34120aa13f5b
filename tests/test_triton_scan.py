"""Tests of the ``triton`` selective-scan backend (serpent_arch/ops/_triton_scan.py).

No GPU is needed: the kernels run in Triton's interpreter, which Triton selects when
``TRITON_INTERPRET=1`` is in the environment before ``triton`` is first imported (its own
``triton.language`` helpers are ``@jit`` functions built at that import, so the variable cannot be
switched on later in a process). The cases marked ``interpreter`` therefore run in a separate
pytest process started by :func:`test_interpreter_cases` with the variable set at launch; in this
process they are skipped and nothing else sees interpreted kernels. To run them directly::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_scan.py

The interpreter runs ``tl.associative_scan`` one tile element at a time in Python; the
``interpreted`` fixture swaps in :func:`_scan_per_slice`, which calls the same combine function in
the same order along the scan axis on whole slices (checked against Triton's own loop below).

Without the interpreter, the kernels are compiled for an sm_90 GPU with the ptxas bundled in
Triton's wheel (no GPU needed), which catches what the interpreter accepts but the compiler rejects.
"""

import importlib
import logging
import os
import subprocess
import sys
import types
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from test_selective_scan import assert_close, make_inputs, run

from serpent_arch.measure.memory import TensorMemoryTracker
from serpent_arch.ops import _mamba_ssm, available_backends, resolve_backend, selective_scan

triton = pytest.importorskip("triton")
triton_scan = importlib.import_module("serpent_arch.ops._triton_scan")
ss_module = importlib.import_module("serpent_arch.ops.selective_scan")

INTERPRETED = triton_scan.interpreted()
interpreter = pytest.mark.skipif(
    not INTERPRETED, reason="runs in test_interpreter_cases' subprocess (TRITON_INTERPRET=1 at launch)"
)
compiler = pytest.mark.skipif(INTERPRETED, reason="needs the kernels built for the GPU compiler")


def _scan_per_slice(self, inputs):
    """Triton's interpreter ``ScanOps.generic_scan`` with each step applied to a whole slice.

    Same semantics as Triton's loop: element k of the scan axis is ``combine_fn(out[k-1], x[k])``
    with ``out[0] = x[0]`` (``apply_impl`` flips the axis around this for ``reverse=True``); only
    the other axes are handled by numpy instead of one Python call per element.
    """
    datas = [arg.handle.data for arg in inputs]
    dtypes = [arg.dtype for arg in inputs]
    outs = [np.empty_like(d) for d in datas]
    index = [slice(None)] * datas[0].ndim
    acc = None
    for k in range(datas[0].shape[self.axis]):
        index[self.axis] = slice(k, k + 1)
        cur = tuple(self.to_tensor(d[tuple(index)], dt) for d, dt in zip(datas, dtypes))
        if acc is None:
            acc = cur
        else:
            res = self.combine_fn.fn(*acc, *cur)
            acc = res if isinstance(res, tuple) else (res,)
        for out, a in zip(outs, acc):
            out[tuple(index)] = a.handle.data
    return [self.to_tensor(o, dt) for o, dt in zip(outs, dtypes)]


def _interpreter_scan_ops():
    """Triton's interpreter scan class if it has the method we replace (checked per Triton version)."""
    module = importlib.import_module("triton.runtime.interpreter")
    scan_ops = getattr(module, "ScanOps", None)
    return scan_ops if scan_ops is not None and hasattr(scan_ops, "generic_scan") else None


_SCAN_OPS = _interpreter_scan_ops()
_ORIGINAL_GENERIC_SCAN = None if _SCAN_OPS is None else _SCAN_OPS.generic_scan


@pytest.fixture(scope="module")
def interpreted():
    """The backend module (built for the interpreter), with the per-slice scan."""
    with pytest.MonkeyPatch.context() as mp:
        if _SCAN_OPS is not None:
            mp.setattr(_SCAN_OPS, "generic_scan", _scan_per_slice)
        yield triton_scan


def test_interpreter_cases():
    """Run this file's interpreter cases in a pytest process launched with TRITON_INTERPRET=1."""
    if INTERPRETED:
        pytest.skip("this process is the interpreter run")
    run_interpreted(__file__)


def run_interpreted(test_file: str) -> None:
    """Run ``test_file``'s tests in a pytest process launched with TRITON_INTERPRET=1; assert they pass
    (also used by tests/test_triton_cross_scan.py)."""
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    root = Path(__file__).resolve().parents[1]
    cmd = [sys.executable, "-m", "pytest", str(Path(test_file).resolve()), "-q", "-p", "no:cacheprovider"]
    result = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout, result.stdout[-2000:]


def _seed(*key) -> int:
    return zlib.crc32(repr(key).encode())


# (batch, dim, L, N, groups, grouped, D, z, bias, softplus); the default tile is BLOCK_D = 4
# channels x CHUNK = 32 steps, so dpg 8 runs two channel blocks per group (gB / gC summed by
# atomics), dpg 6 a partial block, L 197 seven chunks
CASES = [
    pytest.param(1, 4, 1, 3, 1, False, False, False, False, False, id="L1-plain-3d"),
    pytest.param(2, 4, 7, 3, 2, True, True, True, True, True, id="L7-all-g2"),
    pytest.param(1, 8, 64, 4, 4, True, True, False, True, True, id="L64-g4-noz"),
    pytest.param(1, 8, 65, 4, 2, True, False, True, False, False, id="L65-g2-noD-2blocks"),
    pytest.param(1, 6, 197, 5, 1, False, True, True, True, True, id="L197-3d-partial-block"),
    pytest.param(1, 8, 197, 2, 4, True, False, False, True, False, id="L197-g4"),
    pytest.param(1, 16, 40, 3, 2, True, True, True, True, True, id="dim16-2blocks-g2"),
    pytest.param(1, 4, 7, 1, 1, True, True, True, False, True, id="N1-g1-4d"),
]


@interpreter
@pytest.mark.parametrize("batch,dim,L,N,groups,grouped,D,z,bias,softplus", CASES)
def test_matches_reference(interpreted, batch, dim, L, N, groups, grouped, D, z, bias, softplus):
    seed = _seed(batch, dim, L, N, groups, grouped, D, z, bias, softplus)
    inputs = make_inputs(batch, dim, L, N, groups, grouped=grouped, D=D, z=z, bias=bias, softplus=softplus,
                         seed=seed)  # fmt: skip
    (out, _), grads = run("triton", inputs, softplus=softplus)
    (ref_out, _), ref_grads = run("reference", inputs, softplus=softplus)
    assert out.dtype == torch.float32
    assert_close(out, ref_out, "out")
    assert grads.keys() == ref_grads.keys()
    for name in grads:
        assert grads[name].dtype == inputs[name].dtype, name
        assert_close(grads[name], ref_grads[name], f"grad {name}")


@interpreter
@pytest.mark.parametrize("batch,dim,block_d,chunk", [(1, 4, 1, 16), (2, 8, 2, 64), (1, 16, 8, 128)])
def test_tile_sizes(interpreted, batch, dim, block_d, chunk):
    """Other tiles (one channel per program, chunks shorter and longer than L) give the same result."""
    inputs = make_inputs(batch, dim, 50, 3, 2, seed=_seed("tiles", block_d, chunk))
    leaves = {k: v.clone().requires_grad_() for k, v in inputs.items()}
    out, last = interpreted.selective_scan_triton(**leaves, delta_softplus=True, return_last_state=True,
                                                  block_d=block_d, chunk=chunk)  # fmt: skip
    gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    out.backward(gout)
    (ref_out, ref_last), ref_grads = run("reference", inputs, softplus=True, return_last_state=True)
    assert_close(out, ref_out, "out")
    assert_close(last, ref_last, "last_state")
    for name in inputs:
        assert_close(leaves[name].grad, ref_grads[name], f"grad {name}")


@interpreter
@pytest.mark.parametrize("grouped", [True, False])
def test_last_state(interpreted, grouped):
    inputs = make_inputs(2, 8, 37, 4, 2 if grouped else 1, grouped=grouped, seed=3)
    (out, last), grads = run("triton", inputs, softplus=True, return_last_state=True)
    (ref_out, ref_last), ref_grads = run("reference", inputs, softplus=True, return_last_state=True)
    assert last.shape == (2, 8, 4) and last.dtype == torch.float32
    assert_close(out, ref_out, "out")
    assert_close(last, ref_last, "last_state")
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"grad {name}")


@interpreter
def test_last_state_not_differentiable(interpreted):
    inputs = {k: v.requires_grad_() for k, v in make_inputs(1, 4, 5, 2, 1, seed=4).items() if v is not None}
    out, last = selective_scan(**inputs, return_last_state=True, backend="triton")
    assert out.requires_grad and not last.requires_grad


@interpreter
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(interpreted, dtype):
    inputs = make_inputs(2, 8, 45, 4, 2, dtype=dtype, seed=5)
    (out, last), grads = run("triton", inputs, softplus=True, return_last_state=True)
    (ref_out, _), ref_grads = run("reference", inputs, softplus=True, return_last_state=True)
    assert out.dtype == dtype and last.dtype == torch.float32
    # both compute in float32 from the same rounded inputs; the difference is output rounding
    assert_close(out, ref_out, "out", rtol=1e-2)
    for name in grads:
        assert grads[name].dtype == dtype, name
        assert_close(grads[name], ref_grads[name], f"grad {name}", rtol=2e-2)


@interpreter
def test_non_contiguous_inputs(interpreted):
    """Strided views as projections produce them; the kernels take strides, not copies."""
    inputs = make_inputs(2, 8, 12, 3, 2, seed=14)
    inputs["u"] = inputs["u"].transpose(1, 2).contiguous().transpose(1, 2)
    inputs["B"] = inputs["B"].permute(0, 1, 3, 2).contiguous().permute(0, 1, 3, 2)
    inputs["C"] = torch.stack([inputs["C"], inputs["C"]], dim=-1)[..., 0]
    (out, _), grads = run("triton", inputs, softplus=True)
    (ref_out, _), ref_grads = run("reference", inputs, softplus=True)
    assert_close(out, ref_out, "out")
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"grad {name}")


@interpreter
def test_large_steps_stay_finite(interpreted):
    """softplus above its threshold (identity branch) and decays that underflow to 0.

    As in mamba-ssm's kernel, the backward forms dA_t h_{t-1} as h_t - dt_t B_t u_t; with steps
    this large (up to ~15) the cancellation costs a digit in the gradients that use it (A, delta,
    delta_bias), hence their looser bound here.
    """
    inputs = make_inputs(1, 4, 20, 3, 1, seed=15)
    inputs["delta"] = inputs["delta"] * 30  # pre-activations far on both sides of the threshold
    (out, _), grads = run("triton", inputs, softplus=True)
    (ref_out, _), ref_grads = run("reference", inputs, softplus=True)
    assert_close(out, ref_out, "out")
    for name in grads:
        assert torch.isfinite(grads[name]).all(), name
        rtol = 2e-3 if name in ("A", "delta", "delta_bias") else 1e-4
        assert_close(grads[name], ref_grads[name], f"grad {name}", rtol=rtol)


@interpreter
def test_no_whole_sequence_state_tensor(interpreted):
    """Forward + backward allocate O(batch*dim*L) tensors (inputs' gradients, chunk checkpoints),
    never one of the size of the states (batch, dim, L, N)."""
    batch, dim, L, N = 1, 4, 256, 16
    inputs = {k: v.requires_grad_() for k, v in make_inputs(batch, dim, L, N, 1, seed=17).items()}
    with TensorMemoryTracker() as mem:
        out = selective_scan(**inputs, delta_softplus=True, backend="triton")
        out.backward(torch.ones_like(out))
    state_bytes = batch * dim * L * N * 4
    # gradients of u, delta, z, B, C alone take (3 + 2N/dim)*batch*dim*L floats; checkpoints N/32 of that
    assert mem.peak_bytes < state_bytes, (mem.peak_bytes, state_bytes)
    assert mem.peak_bytes >= 5 * batch * dim * L * 4, "the tracker saw the gradients being allocated"


@interpreter
def test_per_slice_scan_matches_triton_loop(interpreted):
    """The test-speed scan gives bit-identical results to the interpreter's own element loop."""
    scan_ops = _interpreter_scan_ops()
    if scan_ops is None:
        pytest.skip("this Triton's interpreter has no ScanOps.generic_scan: the original runs everywhere")
    inputs = make_inputs(1, 4, 9, 2, 2, seed=16)
    (fast_out, fast_last), fast_grads = run("triton", inputs, softplus=True, return_last_state=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(scan_ops, "generic_scan", _ORIGINAL_GENERIC_SCAN)
        (out, last), grads = run("triton", inputs, softplus=True, return_last_state=True)
    assert torch.equal(fast_out, out) and torch.equal(fast_last, last)
    for name in grads:
        assert torch.equal(fast_grads[name], grads[name]), name


# --- backend resolution ------------------------------------------------------------------------


def test_triton_is_a_backend():
    assert "triton" in ss_module.BACKENDS


@interpreter
def test_float64_is_refused(interpreted):
    inputs = make_inputs(1, 4, 5, 2, 1, dtype=torch.float64, seed=6)
    with pytest.raises(RuntimeError, match=r"backend 'triton' is unavailable: float64 inputs are not supported"):
        selective_scan(**inputs, backend="triton")


@compiler
def test_cpu_tensors_only_in_the_interpreter():
    inputs = make_inputs(1, 4, 5, 2, 1, seed=7)
    with pytest.raises(RuntimeError, match=r"'triton' is unavailable: it needs CUDA tensors.*TRITON_INTERPRET=1"):
        selective_scan(**inputs, backend="triton")
    assert "triton" not in available_backends("cpu")
    assert resolve_backend("auto", inputs["u"]) in ("cpu_kernel", "torch")


@interpreter
def test_device_probe(interpreted, monkeypatch):
    """The once-per-device check behind auto on CUDA, run here on CPU through the interpreter."""
    probe = interpreted._probe.__wrapped__  # uncached
    assert probe(torch.device("cpu")) == (True, "")
    real = interpreted.selective_scan_triton
    monkeypatch.setattr(interpreted, "selective_scan_triton", lambda *a, **k: real(*a, **k) * 1.01)
    assert probe(torch.device("cpu")) == (False, "the Triton kernels disagree with the reference on cpu (out)")

    def broken(*args, **kwargs):
        raise RuntimeError("PTX .version 8.7 does not support .target sm_120")

    monkeypatch.setattr(interpreted, "selective_scan_triton", broken)
    ok, reason = probe(torch.device("cpu"))
    assert (
        not ok
        and reason == "the Triton kernels failed on cpu: RuntimeError: PTX .version 8.7 does not support .target sm_120"
    )


@interpreter
def test_auto_never_picks_the_interpreter(interpreted, monkeypatch):
    names = available_backends("cpu")
    assert names[-1] == "triton" and names[-2] == "reference", "listed, as the slowest"
    assert resolve_backend("auto", torch.zeros(1)) != "triton"
    # on a GPU machine launched with TRITON_INTERPRET=1, auto must not take the interpreter either
    monkeypatch.setattr(_mamba_ssm, "_mamba_ssm_import", lambda: (None, "ModuleNotFoundError: mamba"))
    ss_module._warn_once.cache_clear()
    assert resolve_backend("auto", _cuda_like()) == "torch"
    assert interpreted.availability(torch.device("cuda", 0), allow_interpreter=False) == (
        False,
        "TRITON_INTERPRET=1 is set, so Triton would run its slow CPU interpreter",
    )
    ss_module._warn_once.cache_clear()


def test_triton_not_installed(monkeypatch):
    monkeypatch.setattr(ss_module, "_triton_import", lambda: (None, "ModuleNotFoundError: No module named 'triton'"))
    with pytest.raises(RuntimeError, match=r"'triton' is unavailable: triton cannot be imported \(ModuleNotFound"):
        resolve_backend("triton", torch.zeros(1))


def _cuda_like(dtype=torch.float32):
    """What resolve_backend reads of a CUDA tensor (a real one needs a GPU)."""
    return types.SimpleNamespace(device=torch.device("cuda", 0), dtype=dtype)


@pytest.mark.parametrize(
    "mamba,triton_ok,expected",
    [(True, True, "mamba_ssm"), (False, True, "triton"), (False, False, "torch")],
)
def test_auto_on_cuda_prefers_mamba_then_triton_then_torch(monkeypatch, caplog, mamba, triton_ok, expected):
    reason = "" if mamba else "mamba-ssm cannot be imported (ModuleNotFoundError: mamba)"
    monkeypatch.setattr(_mamba_ssm, "mamba_ssm_status", lambda device: (mamba, reason))
    monkeypatch.setattr(ss_module, "_triton_availability",
                        lambda device, dtype, auto: (True, "") if triton_ok else (False, "no driver"))  # fmt: skip
    ss_module._warn_once.cache_clear()
    ss_module._info_once.cache_clear()
    with caplog.at_level(logging.INFO, logger=ss_module.__name__):
        assert resolve_backend("auto", _cuda_like()) == expected
    messages = " ".join(r.getMessage() for r in caplog.records)
    if expected == "triton":
        assert "cannot run: mamba-ssm cannot be imported (ModuleNotFoundError: mamba)" in messages
        assert "selective_scan on cuda:0: using the 'triton' backend" in messages
    if expected == "torch":
        assert "triton unavailable (no driver); using the slower 'torch' backend" in messages
    assert resolve_backend("auto", _cuda_like(torch.float64)) == "torch", "neither fast backend takes float64"
    ss_module._warn_once.cache_clear()
    ss_module._info_once.cache_clear()


@compiler
def test_kernels_compile_for_sm90():
    """Compile both kernels for an sm_90 GPU with the ptxas shipped in Triton's wheel: catches what
    only the real compiler rejects (the interpreter runs plain Python)."""
    from serpent_arch.benchmark import triton_build

    if not triton_build.toolchain_available():
        pytest.skip("this Triton wheel has no bundled ptxas / cuobjdump")
    cubins = triton_build.compile_kernels(dtype="bf16")
    assert set(cubins) == {"forward", "backward"}
    for name, cubin in cubins.items():
        usage = triton_build.resource_usage(cubin)
        assert 0 < usage["REG"] <= 255, (name, usage)


# --- the GPU benchmark, smoke-tested on CPU ---------------------------------------------------

TINY = {"batch": 1, "dim": 4, "L": 12, "N": 2, "groups": 2}
TINY_AGREEMENT = {"batch": 1, "dim": 4, "L": 5, "N": 2, "groups": 2}


@compiler
def test_gpu_benchmark_skips_what_cannot_run(tmp_path, monkeypatch):
    from serpent_arch.benchmark import scan_cuda

    report = scan_cuda.bench_cuda_scan("cpu", ("triton", "torch"), TINY, repeats=1, agreement_size=TINY_AGREEMENT)
    assert list(report["rows"]) == ["torch"] and report["baseline"] == "torch"
    assert "needs CUDA tensors" in report["skipped"]["triton"]
    assert report["agreement"]["torch"] < 1e-5
    monkeypatch.setattr(scan_cuda, "QUICK", TINY)
    monkeypatch.setattr(scan_cuda, "AGREEMENT", TINY_AGREEMENT)
    table = scan_cuda.main(["--device", "cpu", "--quick", "--repeats", "1", "--out", str(tmp_path)])
    assert "| torch |" in table and "| triton | skipped: selective_scan: backend 'triton' is unavailable" in table
    assert (tmp_path / "scan_cuda_benchmark_quick.md").read_text() == table


@interpreter
def test_gpu_benchmark_times_triton_and_its_tiles(interpreted, monkeypatch):
    from serpent_arch.benchmark import scan_cuda

    monkeypatch.setattr(scan_cuda, "TRITON_TILES", ((1, 16, 2),))
    report = scan_cuda.bench_cuda_scan("cpu", ("triton", "torch"), TINY, repeats=1, sweep=True,
                                       agreement_size=TINY_AGREEMENT)  # fmt: skip
    assert list(report["rows"]) == ["triton", "triton d1 c16 w2", "torch"] and report["baseline"] == "triton"
    for label, row in report["rows"].items():
        assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] >= 0 and row["err_vs_baseline"] < 1e-5, label
        assert report["agreement"][label] < 1e-5, label
    assert "torch fwd+bwd / triton fwd+bwd" in scan_cuda.render(report, repeats=1)
