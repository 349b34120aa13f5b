"""The guard against non-finite losses in ``basicsr train``: every optimizer step first checks the
gradients and stops the run (``train.on_nonfinite_loss: stop``, the default) or skips the step
(``skip``, at most ``train.max_nonfinite_skips`` in a row), naming the parameters and the last
checkpoint; an update that makes the weights non-finite stops the run. ``scaled_step`` is the
same step under fp16 loss scaling, where an overflow of finite-loss gradients is skipped as
GradScaler does. ``serpent_arch.training`` installs the guard on the model's optimizers.
"""

from __future__ import annotations

import logging
import os
from os import path as osp

import torch

logger = logging.getLogger("basicsr")

NONFINITE_ACTIONS = ("stop", "skip")


class NonFiniteLossError(RuntimeError):
    """A training step produced non-finite gradients and ``train.on_nonfinite_loss`` is ``stop``."""


class _NoRun:
    current_iter = 0


def _latest_checkpoint(opt) -> str:
    models = opt["path"].get("models", "")
    found = []
    if osp.isdir(models):
        for entry in os.listdir(models):
            stem = entry[len("net_g_") : -len(".pth")]
            if entry.startswith("net_g_") and entry.endswith(".pth") and stem.isdigit():
                found.append((int(stem), osp.join(models, entry)))
    return max(found)[1] if found else "none yet"


def guard_optimizer(optimizer, model, run=None) -> None:
    """Check the gradients before every ``optimizer.step``; stop or skip the step when not finite
    (messages name the current iteration of ``run``, the command's ``training.TrainingRun``).

    The checks are the optimizer's own step hooks, so ``optimizer.step`` stays the method that the
    learning-rate scheduler wrapped: replacing it made torch warn at every run's first scheduler step
    that ``optimizer.step()`` had been overridden. A skipped step drops the gradients before the
    update, and torch's optimizers leave a parameter without a gradient as it is (no moment or
    step-count change)."""
    run = run or _NoRun()
    train_opt = model.opt["train"]
    action = train_opt.get("on_nonfinite_loss", "stop")
    max_skips = int(train_opt.get("max_nonfinite_skips", 10))
    skipped = 0

    def check_gradients(opt, args, kwargs):
        nonlocal skipped
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if _all_finite(grads):
            skipped = 0
            return None
        where = _nonfinite_names(model, lambda p: p.grad)
        it = run.current_iter
        if action == "skip" and skipped < max_skips:
            skipped += 1
            optimizer.zero_grad(set_to_none=True)
            logger.warning(
                f"iteration {it}: non-finite loss (gradients of {where}); step skipped "
                f"({skipped} in a row, train.max_nonfinite_skips: {max_skips})."
            )
            return None
        reason = f"{skipped} skipped steps in a row before it; " if action == "skip" else ""
        raise NonFiniteLossError(
            f"iteration {it}: the loss is not finite (non-finite gradients in {where}); {reason}training "
            f"stopped before applying this step. {_how_to_go_on(model, skip=action != 'skip')}"
        )

    def check_weights(opt, args, kwargs):
        params = [p for group in optimizer.param_groups for p in group["params"]]
        if not _all_finite(params):  # finite gradients, but the update overflowed
            raise NonFiniteLossError(
                f"iteration {run.current_iter}: the update made the weights non-finite "
                f"({_nonfinite_names(model, lambda p: p)}); the loss is not finite from here on, and the "
                f"step cannot be undone, so training stopped. {_how_to_go_on(model, skip=False)}"
            )

    optimizer.register_step_pre_hook(check_gradients)
    optimizer.register_step_post_hook(check_weights)
    optimizer.serpent_model = model


# fp16 gradients that overflow make GradScaler skip the step and halve the loss scale, which is how
# it finds its scale; a long run of them means the loss itself is broken (scale 2**16 -> 2**-4)
MAX_FP16_OVERFLOWS = 20


def scaled_step(scaler, optimizer, loss: torch.Tensor, iteration: int) -> None:
    """``optimizer.step()`` after a backward of ``scaler.scale(loss)``, the non-finite guard included.

    Without loss scaling (bf16) this is the guarded step. With it (fp16) the gradients are unscaled
    first: finite ones go to the guarded step; non-finite ones from a finite loss are an fp16
    overflow, skipped as GradScaler does (not counted by ``train.on_nonfinite_loss``, unless
    :data:`MAX_FP16_OVERFLOWS` come in a row); a non-finite loss goes to the guard, which stops or
    skips exactly as in float32.
    """
    if not scaler.is_enabled():
        optimizer.step()
        return
    scale = scaler.get_scale()
    scaler.unscale_(optimizer)
    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if _all_finite(grads) or not bool(torch.isfinite(loss.detach()).all()):
        optimizer.step()  # finite: the update; non-finite loss: the guard's decision
        optimizer.serpent_fp16_overflows = 0
    else:
        overflows = getattr(optimizer, "serpent_fp16_overflows", 0) + 1
        optimizer.serpent_fp16_overflows = overflows
        optimizer.zero_grad(set_to_none=True)
        logger.info(
            f"iteration {iteration}: fp16 gradients overflowed; step skipped, loss scale {scale:g} halved."
        )
        if overflows >= MAX_FP16_OVERFLOWS:
            raise NonFiniteLossError(
                f"iteration {iteration}: fp16 gradients overflowed in {overflows} steps in a row although the "
                f"loss is finite (loss scale now {scale / 2:g}); fp16 cannot represent them. Use train.amp: bf16 or "
                f"false. The last checkpoint is {_latest_checkpoint_or_none(optimizer)}."
            )
    scaler.update()


def _latest_checkpoint_or_none(optimizer) -> str:
    model = getattr(optimizer, "serpent_model", None)
    return _latest_checkpoint(model.opt) if model is not None else "unknown"


def _all_finite(tensors) -> bool:
    # the largest |value| per tensor is finite exactly when every element is; one device sync
    return not tensors or bool(torch.stack(torch._foreach_norm(tensors, float("inf"))).isfinite().all())


def _nonfinite_names(model, tensor_of) -> str:
    names = [
        name
        for name, p in model.get_bare_model(model.net_g).named_parameters()
        if tensor_of(p) is not None and not bool(torch.isfinite(tensor_of(p)).all())
    ]
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "") or "some parameters"


def _how_to_go_on(model, skip: bool) -> str:
    hint = " or set train.on_nonfinite_loss: skip" if skip else ""
    return (
        f"The last checkpoint is {_latest_checkpoint(model.opt)}. Resume with --auto_resume (perhaps with a "
        f"lower train.optim_g.lr){hint}."
    )
