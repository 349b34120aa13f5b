"""Tests of the fused four-direction Triton scan (serpent_arch/ops/_triton_cross_scan.py).

Checked against :func:`serpent_arch.ops.cross_scan.cross_selective_scan_ref` (the unfused path: copies of
every direction, the one-direction ``reference`` scan, the merge), forward and every gradient, on fresh
random inputs. As in tests/test_triton_scan.py (whose per-slice scan this file borrows), the kernels run in
Triton's interpreter in a pytest process that :func:`test_interpreter_cases` launches with
``TRITON_INTERPRET=1``; directly::

    TRITON_INTERPRET=1 python -m pytest tests/test_triton_cross_scan.py

Sizes stay small (the interpreter runs each tile operation in numpy): at most 63 pixels, chunks of 4 to
32 steps so several chunks and a partial last one are crossed, channel counts that leave a partial block.
"""

import importlib
import zlib

import pytest
import torch
from test_selective_scan import assert_close

from serpent_arch.ops.cross_scan import cross_selective_scan_ref

triton = pytest.importorskip("triton")
cross = importlib.import_module("serpent_arch.ops._triton_cross_scan")
triton_scan_tests = importlib.import_module("test_triton_scan")

INTERPRETED = triton_scan_tests.INTERPRETED
interpreter = triton_scan_tests.interpreter
compiler = triton_scan_tests.compiler
interpreted = triton_scan_tests.interpreted  # the fixture: the per-slice scan in the interpreter
GRADS = ("x", "delta", "A", "B", "C", "D", "delta_bias")


def test_interpreter_cases():
    """Run this file's interpreter cases in a pytest process launched with TRITON_INTERPRET=1."""
    if INTERPRETED:
        pytest.skip("this process is the interpreter run")
    triton_scan_tests.run_interpreted(__file__)


def make_inputs(batch, dim, h, w, k, n, *, D=True, bias=True, softplus=True, dtype=torch.float32, seed=0):
    """Random inputs of the contract, per-direction tensors in row-major pixel order."""
    gen = torch.Generator().manual_seed(seed)
    L = h * w
    if softplus:
        delta = torch.randn(batch, k, dim, L, generator=gen) * 0.5 - 1
    else:
        delta = torch.rand(batch, k, dim, L, generator=gen) * 0.5 + 0.05
    inputs = {
        "x": torch.randn(batch, dim, h, w, generator=gen),
        "delta": delta,
        "A": -(torch.rand(k * dim, n, generator=gen) * 2 + 0.2),
        "B": torch.randn(batch, k, n, L, generator=gen),
        "C": torch.randn(batch, k, n, L, generator=gen),
        "D": torch.randn(k * dim, generator=gen) if D else None,
        "delta_bias": torch.randn(k * dim, generator=gen) * 0.2 if bias else None,
    }
    return {name: None if v is None else v.to(dtype) for name, v in inputs.items()}


def run(fn, inputs, gout=None, **kw):
    """(out, grads) of ``fn`` with a fixed random output gradient (``"sum"``: out.sum(), whose
    gradient is a stride-0 expanded tensor)."""
    leaves = {name: None if v is None else v.clone().requires_grad_() for name, v in inputs.items()}
    out = fn(**leaves, **kw)
    if gout == "sum":
        out.sum().backward()
    else:
        out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)).to(out.dtype))
    return out.detach(), {name: v.grad for name, v in leaves.items() if v is not None}


def reference(inputs, softplus=True, gout=None):
    """The unfused path in float32 on the same (possibly half-precision-rounded) values."""
    as_float = {name: None if v is None else v.float() for name, v in inputs.items()}
    return run(cross_selective_scan_ref, as_float, gout, delta_softplus=softplus, backend="reference")


def _seed(*key) -> int:
    return zlib.crc32(repr(key).encode())


# (batch, dim, H, W, K, N, D, bias, softplus, block_d, chunk); block_d None = the default (4 // K)
CASES = [
    pytest.param(1, 3, 1, 1, 4, 2, True, True, True, None, 32, id="1x1-K4"),
    pytest.param(2, 3, 3, 5, 4, 3, True, True, True, 2, 8, id="3x5-K4-dim3-block2-2chunks"),
    pytest.param(1, 3, 5, 3, 4, 4, True, False, True, 4, 8, id="5x3-K4-dim3-block4-partial"),
    pytest.param(1, 4, 4, 4, 4, 16, True, True, True, None, 32, id="4x4-K4-N16"),
    pytest.param(1, 2, 7, 9, 4, 2, False, True, True, 2, 16, id="7x9-K4-4chunks"),
    pytest.param(2, 4, 4, 4, 2, 3, False, False, True, None, 8, id="4x4-K2-noD-nobias"),
    pytest.param(1, 5, 5, 3, 2, 2, True, True, False, 2, 8, id="5x3-K2-dim5-nosoftplus"),
    pytest.param(1, 6, 3, 5, 1, 3, True, True, True, 4, 8, id="3x5-K1-dim6-2blocks"),
    pytest.param(1, 2, 1, 7, 4, 2, True, True, True, None, 4, id="1x7-K4-one-row"),
]


@interpreter
@pytest.mark.parametrize("batch,dim,h,w,k,n,D,bias,softplus,block_d,chunk", CASES)
def test_matches_unfused(interpreted, batch, dim, h, w, k, n, D, bias, softplus, block_d, chunk):
    seed = _seed(batch, dim, h, w, k, n, D, bias, softplus, block_d, chunk)
    inputs = make_inputs(batch, dim, h, w, k, n, D=D, bias=bias, softplus=softplus, seed=seed)
    out, grads = run(cross.cross_selective_scan_triton, inputs, delta_softplus=softplus, block_d=block_d,
                     chunk=chunk)  # fmt: skip
    ref_out, ref_grads = reference(inputs, softplus)
    assert out.shape == (batch, dim, h, w) and out.dtype == torch.float32
    assert_close(out, ref_out, "out")
    assert grads.keys() == ref_grads.keys() == {g for g in GRADS if inputs[g] is not None}
    for name in grads:
        assert grads[name].dtype == inputs[name].dtype, name
        assert_close(grads[name], ref_grads[name], f"grad {name}")


@interpreter
def test_split_directions(interpreted):
    """Each direction in its own programs, summed by torch afterwards: the same results."""
    inputs = make_inputs(2, 5, 3, 5, 4, 3, seed=_seed("split"))
    out, grads = run(cross.cross_selective_scan_triton, inputs, split_directions=True, chunk=8)
    ref_out, ref_grads = reference(inputs)
    assert_close(out, ref_out, "out")
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"grad {name}")


@interpreter
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_inputs(interpreted, dtype):
    inputs = make_inputs(1, 3, 3, 5, 4, 4, dtype=dtype, seed=_seed("half", dtype))
    inputs["A"], inputs["D"], inputs["delta_bias"] = (inputs[n].float() for n in ("A", "D", "delta_bias"))
    out, grads = run(cross.cross_selective_scan_triton, inputs, block_d=4, chunk=8)
    ref_out, ref_grads = reference(inputs)
    assert out.dtype == dtype
    # both compute in float32 from the same rounded inputs; the difference is the outputs' rounding
    assert_close(out, ref_out, "out", rtol=1e-2)
    for name in grads:
        assert grads[name].dtype == inputs[name].dtype, name
        assert_close(grads[name], ref_grads[name], f"grad {name}", rtol=2e-2)


@interpreter
def test_strided_inputs(interpreted):
    """Views as SS2D makes them (a channels-last map, delta / B / C slices of one projection, an
    expanded output gradient from ``out.sum()``): the kernels take strides, not copies."""
    batch, dim, h, w, k, n = 2, 3, 3, 4, 4, 2
    inputs = make_inputs(batch, dim, h, w, k, n, seed=_seed("strided"))
    inputs["x"] = inputs["x"].contiguous(memory_format=torch.channels_last)
    # (batch, L, K, dim + 2N) as one projection of the pixels would give, split into views
    proj = torch.cat([inputs["delta"], inputs["B"], inputs["C"]], dim=2).permute(0, 3, 1, 2).contiguous()
    views = proj.permute(0, 2, 3, 1).split([dim, n, n], dim=2)
    inputs["delta"], inputs["B"], inputs["C"] = views
    assert not any(v.is_contiguous() for v in views) and not inputs["x"].is_contiguous()
    out, grads = run(cross.cross_selective_scan_triton, inputs, gout="sum", block_d=4, chunk=8)
    ref_out, ref_grads = reference(inputs, gout="sum")
    assert_close(out, ref_out, "out")
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"grad {name}")


@interpreter
def test_forward_without_autograd(interpreted):
    """Without gradients the forward saves no checkpoints; the output is the same, bit for bit."""
    inputs = make_inputs(1, 2, 3, 5, 4, 3, seed=_seed("nograd"))
    with torch.no_grad():
        plain = cross.cross_selective_scan_triton(**inputs, block_d=2, chunk=8)
    out, _ = run(cross.cross_selective_scan_triton, inputs, block_d=2, chunk=8)
    assert torch.equal(plain, out)


@interpreter
def test_device_probe(interpreted, monkeypatch):
    """The once-per-device check a dispatcher can ask before running fused, here on CPU."""
    probe = cross._probe.__wrapped__  # uncached
    assert probe(torch.device("cpu")) == (True, "")

    def broken(*args, **kwargs):
        raise RuntimeError("PTX .version 8.7 does not support .target sm_120")

    monkeypatch.setattr(cross, "cross_selective_scan_triton", broken)
    assert probe(torch.device("cpu")) == (
        False,
        "the fused Triton kernels failed on cpu: RuntimeError: PTX .version 8.7 does not support .target sm_120",
    )
    assert cross.availability(torch.device("cpu")) == (True, ""), "the interpreter accepts CPU tensors"


# --- on a GPU (compiled kernels; skipped without one) -----------------------------------------

cuda = pytest.mark.skipif(INTERPRETED or not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("split", [False, True], ids=["in-place", "split"])
@pytest.mark.parametrize("batch,dim,h,w,k,n", [(2, 24, 17, 33, 4, 16), (1, 8, 40, 24, 2, 16), (1, 6, 9, 9, 1, 4)])
def test_cuda_matches_unfused_and_repeats_exactly(batch, dim, h, w, k, n, split):
    """The compiled kernels against the reference, and the merged output and the map's gradient
    bitwise the same in a second run (the directions are summed in a fixed order)."""
    assert cross.availability(torch.device("cuda")) == (True, "")
    cpu_inputs = make_inputs(batch, dim, h, w, k, n, seed=_seed("cuda", batch, dim, h, w, k, n))
    inputs = {name: v.cuda() for name, v in cpu_inputs.items()}
    out, grads = run(cross.cross_selective_scan_triton, inputs, split_directions=split)
    again, grads_again = run(cross.cross_selective_scan_triton, inputs, split_directions=split)
    ref_out, ref_grads = reference(inputs)
    assert_close(out, ref_out, "out")
    for name in grads:
        assert_close(grads[name], ref_grads[name], f"grad {name}")
    assert torch.equal(out, again) and torch.equal(grads["x"], grads_again["x"])


@cuda
def test_cuda_bfloat16_inputs():
    inputs = {name: v.cuda() for name, v in make_inputs(2, 16, 12, 20, 4, 16, seed=_seed("cuda-bf16")).items()}
    low = {name: v.to(torch.bfloat16) if name in ("x", "delta", "B", "C") else v for name, v in inputs.items()}
    out, grads = run(cross.cross_selective_scan_triton, low)
    ref_out, ref_grads = reference(low)
    assert out.dtype == torch.bfloat16
    assert_close(out, ref_out, "out", rtol=1e-2)
    for name in grads:
        assert grads[name].dtype == low[name].dtype, name
        assert_close(grads[name], ref_grads[name], f"grad {name}", rtol=2e-2)


# --- input checks (no kernel runs) -------------------------------------------------------------


def test_default_block_keeps_the_unfused_launch():
    assert [cross.default_block_d(k) for k in (1, 2, 4)] == [4, 2, 1]
    assert [cross.default_block_d(k, split_directions=True) for k in (1, 2, 4)] == [4, 4, 4]


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda i: i.update(x=i["x"][0]), r"`x` must be \(batch, dim, H, W\)"),
        (lambda i: i.update(delta=i["delta"][:, :3]), r"`delta` must be \(batch, K, dim, H\*W\) = \(1, K, 2, 6\)"),
        (lambda i: i.update(A=i["A"][:4]), r"`A` must be \(K\*dim, N\) = \(8, N\), got \(4, 3\)"),
        (lambda i: i.update(C=i["C"][..., :5]), r"`C` must be \(batch, K, N, H\*W\) = \(1, 4, 3, 6\), got"),
        (lambda i: i.update(D=i["D"][:2]), r"`D` must be \(K\*dim,\) = \(8,\), got \(2,\)"),
        (lambda i: i.update(x=i["x"].double()), r"`x` is float64; the kernels compute in float32"),
    ],
)
def test_input_checks_name_the_tensor(change, message):
    inputs = make_inputs(1, 2, 2, 3, 4, 3, seed=0)
    change(inputs)
    with pytest.raises((ValueError, TypeError), match=message):
        cross.cross_selective_scan_triton(**inputs)


@compiler
def test_kernels_compile_for_sm90():
    """Both fused kernels build for sm_90 (Triton's bundled ptxas) and fit in registers at the default tile."""
    from serpent_arch.benchmark import triton_build

    if not triton_build.toolchain_available():
        pytest.skip("this Triton wheel has no bundled ptxas / cuobjdump")
    for split in (False, True):
        cubins = triton_build.compile_cross_kernels(block_d=cross.default_block_d(4, split), split=split)
        assert set(cubins) == {"forward", "backward"}
        for name, cubin in cubins.items():
            usage = triton_build.resource_usage(cubin)
            assert 0 < usage["REG"] <= 255 and usage.get("STACK", 0) == 0, (name, split, usage)


# --- the GPU benchmark (benchmark/cross_scan_cuda.py), smoke-tested on CPU -------------------------


def test_gpu_benchmark_labels():
    from serpent_arch.benchmark import cross_scan_cuda

    assert cross_scan_cuda.label({"split_directions": True, "block_d": 2, "chunk": 64}) == "fused split d2 c64"
    assert [cross_scan_cuda.label(v) for v in cross_scan_cuda.VARIANTS] == ["fused split"]


@compiler
def test_gpu_benchmark_skips_without_triton():
    from serpent_arch.benchmark import cross_scan_cuda

    report = cross_scan_cuda.bench_cross_scan("cpu", shapes=cross_scan_cuda.SMALL, repeats=1)
    assert report["rows"] == [] and report["agrees"] and "needs CUDA tensors" in report["skipped"]
    assert "skipped: selective_scan: backend 'triton' is unavailable" in cross_scan_cuda.render(report, 1)
    ok, reason = cross.availability(torch.device("cpu"))
    assert not ok and reason.startswith("it needs CUDA tensors")


@interpreter
def test_gpu_benchmark_times_fused_and_unfused(interpreted):
    from serpent_arch.benchmark import cross_scan_cuda

    report = cross_scan_cuda.bench_cross_scan("cpu", shapes=((1, 2, 3),), repeats=1, variants=())
    assert [r["label"] for r in report["rows"]] == ["fused", "unfused"]
    for row in report["rows"]:
        assert row["fwd_ms"] > 0 and row["fwd_bwd_ms"] > 0 and row["peak"] > 0, row
        assert row["max_rel_diff"] < 1e-5, row
    assert report["agrees"] and report["skipped"] is None
    table = cross_scan_cuda.render(report, 1)
    assert "| 1 x 2 x 3 | fused |" in table and "fused agrees with unfused: yes" in table
