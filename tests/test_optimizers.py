"""build_optimizer: any torch.optim class; Adam and AdamW fused unless the options choose; the same updates."""

import pytest
import torch

from serpent_arch.optimizers import build_optimizer


def _params(seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(*shape, generator=gen)) for shape in [(7, 5), (5,), (3, 4, 2)]]


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_adam_is_fused_by_default(name):
    assert build_optimizer(name, _params(), lr=1e-3).defaults["fused"] is True


@pytest.mark.parametrize("kwargs", [{"fused": False}, {"foreach": True}, {"foreach": False}])
def test_the_options_choice_wins(kwargs):
    opt = build_optimizer("AdamW", _params(), lr=1e-3, **kwargs)
    assert not opt.defaults.get("fused")
    for key, value in kwargs.items():
        assert opt.defaults[key] is value


def test_other_optimizers_are_as_torch_builds_them():
    opt = build_optimizer("SGD", _params(), lr=1e-3, momentum=0.9)
    assert type(opt) is torch.optim.SGD and not opt.defaults.get("fused")


def test_param_groups_from_generators():
    ps = _params()
    groups = [{"params": (p for p in ps[:2])}, {"params": ps[2], "lr": 1e-4}]
    opt = build_optimizer("AdamW", groups, lr=1e-3)
    assert opt.defaults["fused"] is True
    assert [len(g["params"]) for g in opt.param_groups] == [2, 1] and opt.param_groups[1]["lr"] == 1e-4


def test_unknown_optimizer_is_named():
    with pytest.raises(ValueError, match="train.optim_g.type: unknown optimizer 'Adamm'"):
        build_optimizer("Adamm", _params(), lr=1e-3)


@pytest.mark.parametrize("name", ["Adam", "AdamW"])
def test_fused_updates_equal_torchs_default(name):
    """The fused update is the same algorithm: 5 steps on fresh random gradients agree with the for-loop one."""
    fused, plain = _params(), _params()
    kw = dict(lr=1e-2, weight_decay=1e-2, betas=(0.9, 0.99))
    opts = build_optimizer(name, fused, **kw), getattr(torch.optim, name)(plain, foreach=False, **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        for a, b in zip(fused, plain):
            a.grad = torch.randn(a.shape, generator=gen)
            b.grad = a.grad.clone()
        for opt in opts:
            opt.step()
    for a, b, start in zip(fused, plain, _params()):
        assert (a - start).abs().min() > 1e-5  # every value moved
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
