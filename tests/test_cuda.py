"""Checks that need a CUDA device (skipped without one): every CUDA scan backend against the
reference, forward and all gradients, float32 and bf16 inputs; the mamba-ssm probe against what is
installed; Serpent and SerpentModel (amp) on the GPU. Not yet run: this project has had no GPU."""

import importlib.util

import pytest
import torch

from serpent_arch.archs.serpent_arch import Serpent
from serpent_arch.benchmark import gpu
from serpent_arch.ops import backend_report, resolve_backend
from serpent_arch.ops.selective_scan import mamba_ssm_status

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CUDA = torch.device("cuda", 0)
# (batch, dim, L, N, groups): Serpent-like, an L that is no multiple of any chunk, one group
SHAPES = [(2, 64, 1024, 16, 4), (1, 24, 999, 8, 2), (2, 16, 300, 4, 1)]


def cuda_backends() -> list[str]:
    return gpu.available_scan_backends(CUDA) if torch.cuda.is_available() else []


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("backend", cuda_backends() or ["torch"])
def test_scan_backend_agrees_with_reference(backend, shape, precision):
    row = gpu.scan_agreement(backend, CUDA, precision, shape)
    errors = {k: v for k, v in row.items() if k.startswith("err_")}
    assert row["agrees"], errors


def test_mamba_ssm_usable_exactly_when_its_kernel_is_built():
    ok, reason = mamba_ssm_status(CUDA)
    built = importlib.util.find_spec("mamba_ssm") is not None and importlib.util.find_spec("selective_scan_cuda")
    if built:
        assert ok, reason
        assert resolve_backend("auto", torch.empty(0, device=CUDA)) == "mamba_ssm"
    else:
        assert not ok and reason
        assert resolve_backend("auto", torch.empty(0, device=CUDA)) != "mamba_ssm"


def test_log_line_names_the_cuda_backend():
    line = backend_report.scan_log_line(Serpent(preset="tiny"), CUDA)
    expected = resolve_backend("auto", torch.empty(0, device=CUDA))
    assert line.startswith(f"selective scan: {expected} on cuda:0 (")


def test_serpent_on_cuda_matches_cpu():
    torch.manual_seed(0)
    net = Serpent(preset="tiny", upscale=2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    x = torch.rand(2, 3, 40, 36)
    outs, grads = [], []
    for device in ("cpu", "cuda"):
        net.to(device).zero_grad()
        y = net(x.to(device))
        y.square().mean().backward()
        outs.append(y.detach().cpu())
        grads.append([p.grad.detach().cpu() for p in net.parameters()])
    assert torch.allclose(outs[0], outs[1], rtol=1e-3, atol=1e-4)
    for a, b in zip(*grads, strict=True):
        assert torch.allclose(a, b, rtol=1e-2, atol=1e-5 + 1e-3 * a.abs().max())


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_serpent_model_training_steps(precision):
    for backend in cuda_backends():
        row = gpu.train_throughput(backend, precision, gpu.SMALL, CUDA, budget_s=5)
        assert not row.note and row.it_per_s > 0 and row.final_loss == row.final_loss, row


def test_fp16_training_with_loss_scaling():
    from serpent_arch.models import SerpentModel

    model = SerpentModel(gpu._model_opt("tiny", "auto", "fp16", CUDA))
    assert model.scaler.is_enabled()
    gen = torch.Generator().manual_seed(0)
    gt = torch.nn.functional.interpolate(torch.rand(4, 3, 8, 8, generator=gen), size=(32, 32), mode="bilinear")
    model.feed_data({"lq": gt, "gt": gt})
    losses = []
    for step in range(30):
        model.optimize_parameters(step)
        losses.append(float(model.log_dict["l_pix"]))
    assert sum(losses[-5:]) < sum(losses[:5])


@pytest.mark.parametrize("backend", cuda_backends() or ["torch"])
def test_cuda_backend_scans_in_float32_under_autocast(backend):
    args = gpu.scan_inputs((2, 64, 500, 16, 4), CUDA, "fp32")
    outs = []
    for autocast_on in (False, True):
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=autocast_on):
            outs.append(gpu.selective_scan(**args, delta_softplus=True, backend=backend))
    assert outs[1].dtype == torch.float32 and torch.allclose(outs[0], outs[1], rtol=1e-5, atol=1e-6)
