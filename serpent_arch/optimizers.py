"""The optimizer of ``train.optim_g``: any ``torch.optim`` class, Adam and AdamW fused by default.

torch's default Adam / AdamW on a CPU updates the parameters one tensor at a time, about ten small
operations each: for Serpent ``base`` (302 tensors, 12.4 M parameters) about 30 ms of a 450 ms training step
at 256x256 on two cores (torch.profiler). The fused implementation (one kernel over all tensors, on CPU and
CUDA) does the same update in about a quarter of that. It is the same algorithm (tests/test_optimizers.py
compares the two), and is used unless the options choose an implementation themselves (``fused`` or
``foreach`` in ``train.optim_g``) or a parameter is on another kind of device.
"""

from __future__ import annotations

import inspect

import torch

FUSED_BY_DEFAULT = ("Adam", "AdamW")
_FUSED_DEVICES = ("cpu", "cuda")


def optimizer_class(optim_type) -> type[torch.optim.Optimizer]:
    """The ``torch.optim`` class named ``optim_type``, or a ValueError naming the option."""
    cls = getattr(torch.optim, str(optim_type), None)
    if not (isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)):
        raise ValueError(
            f"train.optim_g.type: unknown optimizer {optim_type!r}; use a torch.optim class name "
            "such as Adam, AdamW or SGD."
        )
    return cls


def build_optimizer(optim_type, params, lr: float, **kwargs) -> torch.optim.Optimizer:
    """``torch.optim.<optim_type>(params, lr=lr, **kwargs)``, fused where :data:`FUSED_BY_DEFAULT` says."""
    cls = optimizer_class(optim_type)
    if isinstance(params, torch.Tensor):  # not an iterable of parameters: torch's own error names it
        return cls(params, lr=lr, **kwargs)
    params = [_listed(group) for group in params]
    if _fused_by_default(cls, params, kwargs):
        kwargs = {**kwargs, "fused": True}
    return cls(params, lr=lr, **kwargs)


def _fused_by_default(cls: type, params: list, kwargs: dict) -> bool:
    if cls.__name__ not in FUSED_BY_DEFAULT or "fused" in kwargs or "foreach" in kwargs:
        return False
    if kwargs.get("differentiable") or "fused" not in inspect.signature(cls.__init__).parameters:
        return False
    tensors = [p for group in params for p in (group["params"] if isinstance(group, dict) else [group])]
    return bool(tensors) and all(
        isinstance(p, torch.Tensor) and p.device.type in _FUSED_DEVICES and p.is_floating_point() for p in tensors
    )


def _listed(group):
    """A parameter or a parameter group whose ``params`` are a list (read twice: here and by torch)."""
    if not isinstance(group, dict):
        return group
    ps = group["params"]
    return {**group, "params": [ps] if isinstance(ps, torch.Tensor) else list(ps)}
