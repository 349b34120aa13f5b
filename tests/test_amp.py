"""Mixed precision on the CPU: train.amp / val.amp in SerpentModel, the fp16 GradScaler with the
non-finite guard, and exact resume with the scaler's state."""

import copy
import logging

import pytest
import torch

import serpent_arch  # noqa: F401
from serpent_arch import amp, nonfinite
from serpent_arch.archs.serpent_arch import Serpent
from serpent_arch.models import SerpentModel

NET = {"type": "Serpent", "preset": "tiny", "upscale": 2}


def train_opt(tmp_path, amp_value, val_amp=False):
    (tmp_path / "training_states").mkdir(exist_ok=True)
    return {
        "name": "amp",
        "num_gpu": 0,
        "dist": False,
        "is_train": True,
        "scale": 2,
        "network_g": dict(NET),
        "path": {"training_states": str(tmp_path / "training_states"), "models": str(tmp_path)},
        "train": {
            "ema_decay": 0,
            "amp": amp_value,
            "optim_g": {"type": "Adam", "lr": 2e-3},
            "scheduler": {"type": "MultiStepLR", "milestones": [1000], "gamma": 0.5},
            "total_iter": 100,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0},
        },
        "val": {"amp": val_amp},
    }


def batch(step: int) -> dict:
    """The same training pair for a given step in every run: a smooth image and its 2x downscale."""
    gen = torch.Generator().manual_seed(1000 + step)
    gt = torch.nn.functional.interpolate(torch.rand(2, 3, 8, 8, generator=gen), size=(32, 32), mode="bilinear")
    lq = torch.nn.functional.avg_pool2d(gt, 2)
    return {"lq": lq, "gt": gt}


def build(tmp_path, amp_value, seed=0, **kw):
    torch.manual_seed(seed)
    return SerpentModel(train_opt(tmp_path, amp_value, **kw))


def run_steps(model, steps):
    losses = []
    for step in steps:
        torch.manual_seed(step)  # drop-path and anything random: the same per step in every run
        model.feed_data(batch(step))
        model.optimize_parameters(step)
        losses.append(float(model.log_dict["l_pix"]))
    return losses


def test_bf16_training_decreases_the_loss(tmp_path):
    model = build(tmp_path, "bf16")
    assert model.amp_dtype == torch.bfloat16 and not model.scaler.is_enabled()
    first = run_steps(model, [0] * 5)
    last = run_steps(model, [0] * 25)[-5:]
    assert sum(last) / 5 < 0.7 * sum(first) / 5, (first, last)
    assert all(p.dtype == torch.float32 for p in model.net_g.parameters())  # weights stay float32


def test_bf16_outputs_agree_with_fp32():
    """Tolerance on [0, 1] images: max |difference| < 2e-2, mean < 2e-3 (bf16 keeps 8 bits of mantissa)."""
    torch.manual_seed(0)
    net = Serpent(**{k: v for k, v in NET.items() if k != "type"}).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x = torch.rand(2, 3, 24, 20)
        ref = net(x)
        with amp.autocast(torch.device("cpu"), torch.bfloat16):
            low = net(x)
    assert ref.dtype == low.dtype == torch.float32  # the image residual keeps the output float32
    diff = (low - ref).abs()
    print(f"bf16 vs fp32: max {diff.max():.1e}, mean {diff.mean():.1e}, output std {ref.std():.2f}")  # README
    assert 0 < diff.max() < 2e-2 and diff.mean() < 2e-3, (diff.max(), diff.mean())


@pytest.mark.parametrize("low", [torch.bfloat16, torch.float16])
def test_every_backend_scans_in_float32_under_autocast(low):
    """The contract: autocast around a scan changes nothing inside it (outputs and gradients)."""
    from serpent_arch.benchmark.gpu import GRAD_NAMES, scan_inputs
    from serpent_arch.ops import available_backends, selective_scan

    for backend in available_backends("cpu"):
        results = []
        for autocast_on in (False, True):
            args = {
                k: v.requires_grad_() for k, v in scan_inputs((2, 8, 70, 4, 2), torch.device("cpu"), "fp32").items()
            }
            with torch.autocast("cpu", dtype=low, enabled=autocast_on):
                out = selective_scan(**args, delta_softplus=True, backend=backend)
            out.sum().backward()
            results.append([out.detach()] + [args[k].grad for k in GRAD_NAMES])
        assert results[1][0].dtype == torch.float32
        for a, b in zip(*results, strict=True):
            assert torch.equal(a, b), backend


def test_residual_stream_and_layer_norms_are_float32_under_autocast():
    torch.manual_seed(0)
    net = Serpent(**{k: v for k, v in NET.items() if k != "type"}).eval()
    seen = {}

    def record(name):
        def hook(module, args, out):
            seen[name] = (args[0].dtype, out.dtype)

        return hook

    for name, module in net.named_modules():
        if type(module).__name__ in ("SerpentBlock",) or name.endswith("norm1"):
            module.register_forward_hook(record(name))
    with torch.no_grad(), amp.autocast(torch.device("cpu"), torch.bfloat16):
        net(torch.rand(1, 3, 16, 16))
    assert seen and all(dtypes == (torch.float32, torch.float32) for dtypes in seen.values()), seen


def test_val_amp_runs_validation_in_bf16(tmp_path):
    fp32, bf16 = build(tmp_path, False), build(tmp_path, False, val_amp="bf16")
    assert bf16.val_amp_dtype == torch.bfloat16
    data = batch(0)
    outs = []
    for model in (fp32, bf16):
        with torch.no_grad():
            for p in model.net_g.parameters():
                p.copy_(torch.linspace(-0.05, 0.05, p.numel()).reshape(p.shape))
        model.feed_data(data)
        model.test()
        outs.append(model.output)
    assert outs[1].dtype == torch.float32
    assert 0 < (outs[0] - outs[1]).abs().max() < 2e-2


def test_bad_amp_values_are_refused(tmp_path):
    with pytest.raises(ValueError, match="expected bf16, fp16 or false, got 'float16'"):
        build(tmp_path, "float16")


def test_fp16_resume_with_the_scaler_state_gives_the_straight_run(tmp_path):
    """Run 8 steps straight; run 4, save the training state, resume in a new model, run 4 more."""
    if not torch.amp.is_autocast_available("cpu"):
        pytest.skip("no CPU autocast in this torch")
    # A large initial scale makes the first fp16 steps overflow (here 2**16 does not, 2**20 does):
    # the scaler skips them and halves its scale, so its state at the checkpoint differs from a
    # fresh scaler's, and the later steps do update the weights.
    init_scale = 2.0**19

    def fresh(sub):
        (tmp_path / sub).mkdir(exist_ok=True)
        model = build(tmp_path / sub, "fp16")
        model.scaler.load_state_dict({**model.scaler.state_dict(), "scale": init_scale})
        return model

    straight = fresh("straight")
    assert straight.scaler.is_enabled()
    start = copy.deepcopy(straight.net_g.state_dict())
    run_steps(straight, range(8))
    assert straight.scaler.get_scale() < init_scale, "the test needs some overflow skips"
    assert any(not torch.equal(v, straight.net_g.state_dict()[k]) for k, v in start.items()), "and some steps"

    first = fresh("first")
    run_steps(first, range(4))
    first.save_training_state(0, 4)
    state = torch.load(tmp_path / "first" / "training_states" / "4.state", weights_only=False)
    assert state["amp_scaler"]["scale"] == first.scaler.get_scale()
    weights = copy.deepcopy(first.net_g.state_dict())

    def resumed(with_scaler_state):
        model = fresh("resumed")
        model.net_g.load_state_dict(weights)
        model.resume_training(state if with_scaler_state else {**state, "amp_scaler": None})
        run_steps(model, range(4, 8))
        return model

    good = resumed(True)
    for (name, a), b in zip(straight.net_g.state_dict().items(), good.net_g.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert good.scaler.state_dict() == straight.scaler.state_dict()
    # control: without the scaler's state the run differs, so the test above can fail
    bad = resumed(False)
    assert any(not torch.equal(a, b) for a, b in zip(straight.net_g.parameters(), bad.net_g.parameters()))


def test_fp16_overflow_skips_are_not_non_finite_losses(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(nonfinite, "MAX_FP16_OVERFLOWS", 3)
    model = build(tmp_path, "fp16")
    nonfinite.guard_optimizer(model.optimizer_g, model)  # as basicsr train installs it (stop mode)
    before = copy.deepcopy(model.net_g.state_dict())
    model.scaler.load_state_dict({**model.scaler.state_dict(), "scale": 2.0**100})  # every step overflows
    logger = logging.getLogger("basicsr")  # BasicSR stops it propagating to caplog's root handler
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="basicsr"):
            run_steps(model, [0, 1])
    finally:
        logger.removeHandler(caplog.handler)
    assert sum("fp16 gradients overflowed; step skipped" in r.getMessage() for r in caplog.records) == 2
    assert all(torch.equal(v, model.net_g.state_dict()[k]) for k, v in before.items())
    overflowed = "overflowed in 3 steps in a row although the loss is finite"
    with pytest.raises(nonfinite.NonFiniteLossError, match=overflowed):
        run_steps(model, [2])


def test_fp16_non_finite_loss_still_goes_to_the_guard(tmp_path):
    model = build(tmp_path, "fp16")
    nonfinite.guard_optimizer(model.optimizer_g, model)
    data = batch(0)
    data["lq"][0, 0, 0, 0] = float("nan")  # reaches the gradients (a NaN target alone does not, for L1)
    model.feed_data(data)
    with pytest.raises(nonfinite.NonFiniteLossError, match="the loss is not finite"):
        model.optimize_parameters(1)


@pytest.mark.slow
def test_basicsr_train_and_test_with_amp_log_the_scan_backend(tmp_path):
    """The real commands: bf16 training with bf16 validation, an fp16 resume, and `basicsr test`."""
    from e2e_util import basicsr, make_workdir, train_options, write_options

    workdir = make_workdir(tmp_path)
    opt = train_options("amp_e2e", 4)
    opt["train"]["amp"], opt["val"]["amp"] = "bf16", "bf16"
    proc = basicsr(workdir, "train", "-opt", write_options(workdir / "train.yml", opt))
    log = proc.stdout + proc.stderr
    scan_lines = [line for line in log.splitlines() if "selective scan: " in line]
    assert len(scan_lines) == 1 and " on cpu (" in scan_lines[0], scan_lines
    assert "mixed precision: train bf16, validation bf16" in log
    records = (workdir / "experiments" / "amp_e2e" / "val_metrics.jsonl").read_text().splitlines()
    assert len(records) == 2  # iterations 2 and 4; the validation after the loop repeats 4's

    opt["train"]["amp"], opt["train"]["total_iter"] = "fp16", 6
    proc = basicsr(workdir, "train", "-opt", write_options(workdir / "train6.yml", opt), "--auto_resume")
    assert "Resuming training from epoch" in proc.stdout + proc.stderr
    assert "(loss scaling)" in proc.stdout + proc.stderr
    state = torch.load(workdir / "experiments" / "amp_e2e" / "training_states" / "6.state", weights_only=False)
    assert state["amp_scaler"]["scale"] > 0

    test_opt = train_options("amp_e2e", 4)
    test_opt["name"] = "amp_e2e_test"
    test_opt["datasets"] = {"test_1": test_opt["datasets"]["val"]}
    test_opt["path"] = {"pretrain_network_g": "experiments/amp_e2e/models/net_g_6.pth"}
    test_opt["val"].update(suffix=None, amp="bf16")
    del test_opt["train"], test_opt["logger"]
    proc = basicsr(workdir, "test", "-opt", write_options(workdir / "test.yml", test_opt))
    log = proc.stdout + proc.stderr
    assert sum("selective scan: " in line for line in log.splitlines()) == 1
    assert "mixed precision: validation bf16" in log
