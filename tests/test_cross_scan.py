"""The fused four-direction scan (ops/cross_scan.py: cross_selective_scan) against the unfused path.

The C kernel's fused forward and every gradient are compared with cross_selective_scan_ref (cross-scan,
selective scan, cross-merge) on fresh random inputs: K = 1, 2, 4, odd and non-square maps, float32 and
float64, N = 4 and 16 (N = 16 takes the deferred sums on AVX-512 builds), the AVX2 build as well. Then
the dispatcher (which backend runs fused) and SS2D: the block's output and gradients do not change.
"""

import copy
import logging

import pytest
import torch

from serpent_arch.archs.ss2d import SS2D
from serpent_arch.ops import _cpu_cross_scan, _cpu_kernel, backend_report, cross_scan
from serpent_arch.ops._cpu_cross_scan import cross_selective_scan_cpu
from serpent_arch.ops.cross_scan import cross_selective_scan, cross_selective_scan_ref

needs_kernel = pytest.mark.skipif(not _cpu_kernel.availability()[0], reason="cpu_kernel unavailable")
SIZES = ((1, 1), (3, 7), (7, 3), (17, 5), (5, 37))  # 37 columns: two full stripes of 16 and a partial one
# float32: the two paths sum the same terms in another order (and the fused one adds the directions in place)
TOL = {torch.float32: dict(rtol=2e-4, atol=2e-5), torch.float64: dict(rtol=1e-9, atol=1e-11)}


def make_inputs(b, d, h, w, k, n, dtype, seed, optional=True):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=dtype) * scale).requires_grad_()

    length = h * w
    A = (-0.5 - torch.rand(k * d, n, generator=g, dtype=dtype)).requires_grad_()
    return dict(
        x=rnd(b, d, h, w),
        delta=rnd(b, k, d, length, scale=0.5),
        A=A,
        B=rnd(b, k, n, length),
        C=rnd(b, k, n, length),
        D=rnd(k * d) if optional else None,
        delta_bias=rnd(k * d, scale=0.5) if optional else None,
    )


def grads(fn, inputs, softplus=True, seed=0):
    out = fn(**inputs, delta_softplus=softplus)
    gout = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed + 1), dtype=out.dtype)
    names = [k for k, v in inputs.items() if v is not None]
    return out, dict(zip(names, torch.autograd.grad(out, [inputs[k] for k in names], gout)))


def assert_same(fused, unfused, dtype):
    (out_f, g_f), (out_u, g_u) = fused, unfused
    torch.testing.assert_close(out_f, out_u, **TOL[dtype])
    assert g_f.keys() == g_u.keys()
    for name in g_u:
        scale = g_u[name].abs().max().clamp(min=1)  # gradients summed over many steps: relative to their size
        torch.testing.assert_close(g_f[name] / scale, g_u[name] / scale, **TOL[dtype], msg=f"gradient of {name}")


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("k", cross_scan.DIRECTIONS)
@pytest.mark.parametrize("hw", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_fused_cpu_matches_unfused(dtype, k, hw, single_thread):
    inputs = make_inputs(2, 5, *hw, k, 4, dtype, seed=hash((k, hw)) % 1000)
    fused = grads(cross_selective_scan_cpu, inputs)
    unfused = grads(lambda **a: cross_selective_scan_ref(**a, backend="cpu_kernel"), inputs)
    assert_same(fused, unfused, dtype)


@needs_kernel
@pytest.mark.parametrize("build", ["native", "haswell", "no-deferred-sums"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_fused_cpu_n16_builds(build, dtype, monkeypatch):
    """N = 16, 19 channels (a full and a partial SIMD block), batch 2, two threads, each build (the
    backward's sums over several channel groups: test_fused_cpu_backward_builds)."""
    monkeypatch.setattr(_cpu_kernel, "_MIN_WORK_PER_THREAD", 1)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    march, extra = {"native": (None, ()), "haswell": ("haswell", ()),
                    "no-deferred-sums": (None, ("-DSS_NO_DEFERRED_SUMS",))}[build]  # fmt: skip
    inputs = make_inputs(2, 19, 9, 13, 4, 16, dtype, seed=7)
    with _cpu_kernel.variant(march, extra):
        fused = grads(cross_selective_scan_cpu, inputs)
        unfused = grads(lambda **a: cross_selective_scan_ref(**a, backend="cpu_kernel"), inputs)
    assert_same(fused, unfused, dtype)


@needs_kernel
@pytest.mark.parametrize("layout", ["channels_last", "projection_views", "unmergeable_pixels"])
def test_fused_cpu_reads_strided_inputs(layout):
    """The forward reads x, delta, B, C through strides (SS2D hands it channels-last maps and views of its
    projections); the result and the gradients do not depend on the layout, and a channels-last x gives
    a channels-last output."""
    b, d, h, w, k, n = 2, 5, 6, 19, 4, 4
    plain = make_inputs(b, d, h, w, k, n, torch.float64, seed=21)
    strided = {name: None if t is None else t.detach().clone() for name, t in plain.items()}
    if layout == "channels_last":
        strided["x"] = strided["x"].contiguous(memory_format=torch.channels_last)
    elif layout == "projection_views":  # (b, L, K, d) and (b, L, K, 2N + 1) storage, as SS2D's products give
        strided["delta"] = strided["delta"].permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
        proj = torch.cat([strided["B"], strided["C"], strided["C"][:, :, :1]], dim=2).permute(0, 3, 1, 2).contiguous()
        strided["B"], strided["C"] = proj[..., :n].permute(0, 2, 3, 1), proj[..., n : 2 * n].permute(0, 2, 3, 1)
    else:  # every other column of a wider map: H and W cannot be merged without a copy
        wide = torch.zeros(b, d, h, 2 * w, dtype=torch.float64)
        wide[..., ::2] = strided["x"]
        strided["x"] = wide[..., ::2]
    strided = {name: None if t is None else t.requires_grad_() for name, t in strided.items()}
    out = cross_selective_scan_cpu(**strided)
    if layout == "channels_last":
        assert out.is_contiguous(memory_format=torch.channels_last)
    assert_same(grads(cross_selective_scan_cpu, strided), grads(cross_selective_scan_cpu, plain), torch.float64)


@needs_kernel
@pytest.mark.parametrize("group", [1, 2, 3, 8])
@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_fused_cpu_forward_tasks_of_several_channel_blocks(group, layout, dtype, monkeypatch):
    """A forward task runs `group` blocks of 16 channels side by side (staging a pixel's channels in one
    pass, narrower stripes and time blocks as the group grows): 40 channels make full and partial blocks
    and a partial last group; 11 x 37 makes partial stripes at every stripe width. Output and gradients
    equal the unfused path's for every group size."""
    monkeypatch.setattr(_cpu_cross_scan, "forward_group", lambda batch, dim, nthreads: group)
    inputs = make_inputs(2, 40, 11, 37, 4, 16, dtype, seed=group)
    if layout == "channels_last":
        with torch.no_grad():
            x = inputs["x"].detach().contiguous(memory_format=torch.channels_last)
        inputs["x"] = x.requires_grad_()
    fused = grads(cross_selective_scan_cpu, inputs)
    unfused = grads(lambda **a: cross_selective_scan_ref(**a, backend="cpu_kernel"), inputs)
    assert_same(fused, unfused, dtype)


@needs_kernel
def test_fused_cpu_with_a_positive_A_uses_the_clamped_exp():
    """SS2D's A is negative, and the kernels then skip the exp's upper clamp; a block with a positive A
    (or no softplus) keeps it, and gives the unfused result."""
    inputs = make_inputs(1, 20, 5, 6, 4, 16, torch.float32, seed=5)
    with torch.no_grad():
        inputs["A"][3, 2] = 0.4
    for softplus in (True, False):
        fused = grads(cross_selective_scan_cpu, inputs, softplus=softplus)
        unfused = grads(lambda **a: cross_selective_scan_ref(**a, backend="cpu_kernel"), inputs, softplus=softplus)
        assert_same(fused, unfused, torch.float32)


def lowrank_inputs(b, d, h, w, k, n, r, dtype, seed):
    """make_inputs with the step sizes as SS2D gives them: dts a (batch, K, R, L) view of a (batch, L, K, R)
    tensor, a (K, dim, R) weight."""
    inputs = make_inputs(b, d, h, w, k, n, dtype, seed)
    del inputs["delta"]
    g = torch.Generator().manual_seed(seed + 100)
    inputs["dts"] = torch.randn(b, h * w, k, r, generator=g, dtype=dtype).permute(0, 2, 3, 1).requires_grad_()
    inputs["weight"] = (torch.randn(k, d, r, generator=g, dtype=dtype) * r**-0.5).requires_grad_()
    return inputs


def lowrank_ref(x, dts, weight, **kw):
    return cross_selective_scan_ref(x, cross_scan.lowrank_delta(dts, weight), **kw, backend="cpu_kernel")


@needs_kernel
@pytest.mark.parametrize("group", [1, 3])
@pytest.mark.parametrize("k", cross_scan.DIRECTIONS)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
def test_fused_cpu_projects_the_step_sizes_in_the_kernel(group, k, dtype, monkeypatch):
    """Step sizes given as dts and a weight (computed pixel by pixel in the forward, rebuilt in the backward):
    output and every gradient, dts's and the weight's included, equal the unfused path given their product;
    40 channels make a partial block (the weight's zero padding), rank 3."""
    monkeypatch.setattr(_cpu_cross_scan, "forward_group", lambda batch, dim, nthreads: group)
    inputs = lowrank_inputs(2, 40, 7, 19, k, 16, 3, dtype, seed=10 + k)
    fused = grads(lambda **a: cross_scan.cross_selective_scan_lowrank(**a, backend="cpu_kernel"), inputs)
    assert_same(fused, grads(lowrank_ref, inputs), dtype)


@needs_kernel
@pytest.mark.parametrize("build", ["native", "haswell", "x86-64-v2", "no-deferred-sums"])
def test_fused_cpu_backward_builds(build, monkeypatch):
    """The backward's deferred sums over channels (gB, gC and the low-rank dts: 16-row transposed sums, one
    tree per target family) in each build: N = 16, rank 5 (48 rows of sums, padding rows included), 35
    channels in groups of 2 blocks (full and partial blocks and groups), batch 2, an 11 x 37 map (partial
    chunks of 32 steps in every direction)."""
    monkeypatch.setattr(_cpu_cross_scan, "forward_group", lambda batch, dim, nthreads: 2)
    march, extra = {"native": (None, ()), "haswell": ("haswell", ()), "x86-64-v2": ("x86-64-v2", ()),
                    "no-deferred-sums": (None, ("-DSS_NO_DEFERRED_SUMS",))}[build]  # fmt: skip
    inputs = lowrank_inputs(2, 35, 11, 37, 4, 16, 5, torch.float32, seed=3)
    with _cpu_kernel.variant(march, extra):
        fused = grads(lambda **a: cross_scan.cross_selective_scan_lowrank(**a, backend="cpu_kernel"), inputs)
        unfused = grads(lowrank_ref, inputs)
    assert_same(fused, unfused, torch.float32)


@needs_kernel
@pytest.mark.parametrize("lowrank", [False, True], ids=["delta", "lowrank"])
def test_fused_cpu_forward_keeps_states_only_for_training(lowrank, monkeypatch):
    """The forward keeps the states the backward starts its chunks from only when a gradient is wanted, and
    keeping them (which cuts the forward's time blocks at chunk starts) leaves the output bit for bit."""
    make = lowrank_inputs if lowrank else make_inputs
    args = (1, 20, 13, 29, 4, 16) + ((3,) if lowrank else ())
    inputs = make(*args, torch.float32, seed=8)
    run = (lambda **a: cross_scan.cross_selective_scan_lowrank(**a, backend="cpu_kernel")) if lowrank else \
        cross_selective_scan_cpu  # fmt: skip
    kept = []
    empty = torch.empty

    def spy(*size, **kw):
        if len(size) == 6 and size[-1] == 16:  # (batch, K, chunks, blocks, N, 16)
            kept.append(size)
        return empty(*size, **kw)

    monkeypatch.setattr(_cpu_cross_scan.torch, "empty", spy)
    with torch.no_grad():
        plain = run(**inputs)
    assert kept == []
    training = run(**inputs)
    chunks = -(-13 * 29 // _cpu_kernel.load_library().xs_chunk_steps_f32())
    assert kept == [(1, 4, chunks, 2, 16, 16)]
    assert torch.equal(training.detach(), plain)


def test_lowrank_scan_on_other_backends_gets_the_product():
    """Backends without the in-kernel projection (torch here) run the scan on lowrank_delta(dts, weight)."""
    inputs = lowrank_inputs(1, 6, 4, 5, 4, 4, 2, torch.float64, seed=4)
    got = grads(lambda **a: cross_scan.cross_selective_scan_lowrank(**a, backend="torch"), inputs)
    want = grads(lambda **a: cross_selective_scan_ref(
        a.pop("x"), cross_scan.lowrank_delta(a.pop("dts"), a.pop("weight")), **a, backend="torch"), inputs)
    assert_same(got, want, torch.float64)


def test_lowrank_scan_checks_name_the_tensor():
    inputs = {k: v.detach() for k, v in lowrank_inputs(1, 6, 4, 5, 4, 4, 2, torch.float32, seed=4).items()}
    with pytest.raises(ValueError, match="`dts` must have shape"):
        cross_scan.cross_selective_scan_lowrank(**{**inputs, "dts": inputs["dts"][:, :2]})
    with pytest.raises(ValueError, match="`weight` must have shape"):
        cross_scan.cross_selective_scan_lowrank(**{**inputs, "weight": inputs["weight"][:, :3]})


def test_forward_group_leaves_every_thread_a_task():
    group = _cpu_cross_scan.forward_group
    assert group(1, 128, 2) == 4  # 8 blocks, two tasks of four
    assert group(1, 128, 16) == 1  # more threads than blocks: one block per task
    assert group(1, 1024, 2) == _cpu_cross_scan.MAX_GROUP
    assert group(4, 5, 2) == 1  # one partial block
    assert group(1, 40, 1) == 3  # all three blocks in one task


@needs_kernel
def test_fused_cpu_against_the_reference_loop_without_optional_inputs():
    """float64 against the per-step Python loop, no D, no delta_bias, no softplus."""
    inputs = make_inputs(1, 3, 5, 4, 4, 4, torch.float64, seed=3, optional=False)
    with torch.no_grad():
        inputs["delta"].abs_()  # without softplus the step sizes must be positive
    fused = grads(cross_selective_scan_cpu, inputs, softplus=False)
    ref = grads(lambda **a: cross_selective_scan_ref(**a, backend="reference"), inputs, softplus=False)
    assert_same(fused, ref, torch.float64)


@needs_kernel
def test_dispatcher_runs_fused_only_where_a_kernel_exists(monkeypatch, caplog):
    inputs = make_inputs(1, 4, 3, 5, 4, 4, torch.float32, seed=11)
    calls = []

    def spy(*args):
        calls.append(1)
        return cross_selective_scan_cpu(*args)

    monkeypatch.setattr("serpent_arch.ops._cpu_cross_scan.cross_selective_scan_cpu", spy)
    cross_scan._info_once.cache_clear()  # logged once per process: an earlier test may have logged it
    with caplog.at_level(logging.INFO):
        fused = cross_selective_scan(**inputs, backend="cpu_kernel")
        auto = cross_selective_scan(**inputs, backend="auto")
        plain = cross_selective_scan(**inputs, backend="torch")
    assert len(calls) == 2, "cpu_kernel (and auto on CPU) run the fused kernel, torch does not"
    torch.testing.assert_close(fused, auto, rtol=0, atol=0)
    torch.testing.assert_close(plain, cross_selective_scan_ref(**inputs, backend="torch"), rtol=0, atol=0)
    torch.testing.assert_close(fused, plain, **TOL[torch.float32])
    assert "fused cpu_kernel kernel" in caplog.text and "torch runs unfused" in caplog.text
    with pytest.raises(ValueError, match="unknown backend"):
        cross_selective_scan(**inputs, backend="no-such-backend")
    assert cross_scan.fused_backend("cpu_kernel", inputs["x"]) == "cpu_kernel"
    assert cross_scan.fused_backend("torch", inputs["x"]) is None


def test_triton_without_its_fused_module_runs_unfused(monkeypatch):
    monkeypatch.setattr(cross_scan, "_triton_fused", lambda: (None, "ModuleNotFoundError: test"))
    assert cross_scan.fused_kernel("triton") is None
    for name in ("torch", "reference", "mamba_ssm", "onnx", "a-backend-added-later"):
        assert cross_scan.fused_kernel(name) is None


def test_input_checks_name_the_tensor():
    inputs = make_inputs(1, 4, 3, 5, 4, 4, torch.float32, seed=0)
    inputs["B"] = inputs["B"][:, :, :3]
    with pytest.raises(ValueError, match=r"`B` must have shape \(batch, K, N, H\*W\) = \(1, 4, 4, 15\)"):
        cross_selective_scan(**inputs, backend="torch")
    inputs = make_inputs(1, 4, 3, 5, 2, 4, torch.float32, seed=0)
    inputs["A"] = inputs["A"][:4]
    with pytest.raises(ValueError, match=r"`A` must have shape \(K\*dim, N\) = \(8, N\)"):
        cross_selective_scan(**inputs, backend="torch")


def _perturbed_ss2d(k, dtype, backend):
    torch.manual_seed(k)
    block = SS2D(8, d_state=4, scan_directions=k, scan_backend=backend).to(dtype)
    with torch.no_grad():  # away from the initialisation (D = 1, equal A rows), so every gradient is generic
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return block


@needs_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=str)
@pytest.mark.parametrize("k", cross_scan.DIRECTIONS)
@pytest.mark.parametrize("hw", [(1, 1), (3, 7), (17, 5)], ids=lambda s: f"{s[0]}x{s[1]}")
def test_ss2d_block_unchanged_by_fusion(dtype, k, hw):
    """SS2D with cpu_kernel (fused) against the same block with torch (unfused): output, input and
    every parameter gradient."""
    fused_block = _perturbed_ss2d(k, dtype, "cpu_kernel")
    plain_block = copy.deepcopy(fused_block)
    plain_block.scan_backend = "torch"
    x = torch.randn(2, *hw, 8, dtype=dtype, generator=torch.Generator().manual_seed(5))
    results = []
    for block in (fused_block, plain_block):
        xi = x.clone().requires_grad_()
        out = block(xi)
        params = dict(block.named_parameters())
        g = torch.autograd.grad(out, [xi, *params.values()], torch.ones_like(out) + out.detach())
        results.append((out, dict(zip(["x", *params], g))))
    assert_same(results[0], results[1], dtype)


@needs_kernel
def test_log_line_says_the_scan_is_fused():
    from serpent_arch.archs import Serpent

    assert backend_report.scan_log_line(Serpent(preset="tiny"), "cpu").endswith("four-direction scan fused")
    plain = backend_report.scan_log_line(Serpent(preset="tiny", scan_backend="torch"), "cpu")
    assert plain.endswith("four-direction scan unfused")
