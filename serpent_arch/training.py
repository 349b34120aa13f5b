"""What ``basicsr train`` adds to BasicSR's training loop: exact resume, clean interruption, a
guard against non-finite losses and a count of skipped bad samples.

BasicSR's ``train_pipeline`` is used as it is; four names in ``basicsr.train`` and ``basicsr.data``
get thin wrappers, applied by ``serpent_arch.compat.apply("train")`` with the other BasicSR patches
(listed in ``serpent_arch.compat.PATCHES``; the loop itself is untouched):

* ``EnlargedSampler`` becomes :class:`ResumableSampler`. It yields the same indices in the same
  order, can leave out the part of an epoch a resumed run has already trained on, and hands
  datasets that ask for it (``uses_sample_ids = True``) a :class:`SampleId`, so their random crops
  and degradations depend on (seed, epoch, position in the epoch) rather than on which DataLoader
  worker made the item.
* ``create_train_val_dataloader`` wraps the train loader in :class:`TrackedLoader`, which counts
  the batches consumed in the current epoch, restores the random state of a resumed run right
  before its first batch, and reports bad samples a dataset skipped (``bad_samples_skipped``).
* ``basicsr.data.worker_init_fn`` also makes DataLoader workers ignore SIGINT (the main process
  handles Ctrl-C).
* ``build_model`` guards the model: every optimizer step first checks the gradients
  (``train.on_nonfinite_loss``: ``stop`` (default) or ``skip``, with ``train.max_nonfinite_skips``
  consecutive skips allowed, default 10); validation runs with the random state forked, so it
  never changes what training draws; after every step a pending SIGTERM / SIGINT saves a
  checkpoint at that iteration and ends the run (:class:`TrainingInterrupted`); and
  ``resume_training(state)`` also continues the data from the state's ``data_position``.

Why BasicSR alone does not resume exactly: it restarts the interrupted epoch from its first
batch and does not save random states. ``SerpentModel`` stores :meth:`TrainingRun.data_position` (epoch,
batches done, the random states of every rank) in each training state, and the wrappers above
use it, so a run killed and resumed ends with the same weights as one that never stopped (with
``DegradedImageDataset``, any number of workers; with other datasets, ``num_worker_per_gpu: 0``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import signal
from os import path as osp
from typing import NamedTuple

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler

logger = logging.getLogger("basicsr")

NONFINITE_ACTIONS = ("stop", "skip")


class SampleId(NamedTuple):
    """What :class:`ResumableSampler` yields to datasets with ``uses_sample_ids``."""

    index: int  # dataset index
    epoch: int
    position: int  # position in the epoch's global order (unique across ranks)
    seed: int  # the option file's manual_seed


class TrainingInterrupted(Exception):
    """SIGTERM / SIGINT arrived; a checkpoint at ``iteration`` was saved."""

    def __init__(self, signum: int, iteration: int, experiments_root: str):
        self.signum, self.iteration = signum, iteration
        name = signal.Signals(signum).name
        super().__init__(
            f"{name} received: saved the checkpoint and training state of iteration {iteration} in "
            f"{experiments_root}; continue with `basicsr train -opt ... --auto_resume`."
        )


class NonFiniteLossError(RuntimeError):
    """A training step produced non-finite gradients and ``train.on_nonfinite_loss`` is ``stop``."""


class TrainingRun:
    """The state of one ``basicsr train`` run, owned by the command and passed to the wrappers of
    the ``train`` stage (``serpent_arch.compat.applied("train", run=...)``), which hand it to the
    model as ``model.training_run``: the tracked loader and sampler, the current iteration, and a
    stop signal received."""

    def __init__(self):
        self.sampler: ResumableSampler | None = None
        self.loader: TrackedLoader | None = None
        self.current_iter = 0
        self.signum = 0
        self.signal_count = 0

    def data_position(self) -> dict | None:
        """Where the train loader is, and the random state of every rank (collective under DDP)."""
        if self.loader is None:
            return None
        states = [rng_state()]
        if _dist_ready():
            states = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(states, rng_state())
        return {
            "epoch": int(self.sampler.epoch),
            "batches_done": self.loader.consumed - self.loader.lookahead,
            "batch_size": self.loader.loader.batch_size,
            "world_size": len(states),
            "rng": states,
        }

    def resume_data_position(self, state: dict, opt: dict) -> None:
        """Continue the data where the resumed run stopped: skip the batches of the interrupted epoch
        it already trained on and restore its random states before its next batch (the loop calls
        ``model.resume_training(state)`` after building the loaders, before its first batch)."""
        if opt.get("rank", 0) == 0:
            _forget_validations_after(opt["path"]["experiments_root"], state["iter"])
        position = state.get("data_position")
        if not position or self.loader is None:
            return
        loader, sampler = self.loader, self.sampler
        rank, world, batch_size = opt.get("rank", 0), opt.get("world_size", 1), loader.loader.batch_size
        if position["world_size"] != world or position["batch_size"] != batch_size:
            logger.warning(
                f"Resuming with world size {world} and batch size {batch_size}, saved with "
                f"{position['world_size']} and {position['batch_size']}: epoch {position['epoch']} restarts "
                "from its first batch and random states are not restored."
            )
            return
        sampler.skip_in_epoch(position["epoch"], position["batches_done"] * batch_size)
        loader.pending_rng = position["rng"][rank]
        logger.info(
            f"Resuming inside epoch {position['epoch']} after {position['batches_done']} batches, "
            "with the saved random states."
        )

    def stop_signal(self, model) -> int:
        """The stop signal received (0 if none); under DDP the largest over all ranks."""
        signum = self.signum
        if _dist_ready():  # every rank must stop at the same iteration, or the others wait forever
            flag = torch.tensor([signum], dtype=torch.int64, device=model.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            signum = int(flag.item())
        return signum

    def _on_signal(self, signum, frame):
        self.signal_count += 1
        if signum == signal.SIGINT and self.signal_count > 1:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, without a checkpoint
        self.signum = signum
        logger.warning(
            f"{signal.Signals(signum).name} received: finishing the current iteration, then saving a checkpoint "
            "(press Ctrl-C again to stop without one)."
        )

    @contextlib.contextmanager
    def stop_on_signals(self):
        """While training: SIGTERM / SIGINT ask for a checkpoint and a clean stop after the current
        step. The previous handlers come back afterwards (for callers that train in-process)."""
        handlers = (signal.SIGTERM, signal.SIGINT)
        previous = {signum: signal.signal(signum, self._on_signal) for signum in handlers}
        self.signum = self.signal_count = 0
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


class ResumableSampler(EnlargedSampler):
    """BasicSR's ``EnlargedSampler`` (same order), able to skip the start of one epoch."""

    seed = 0
    _skip: tuple[int, int] | None = None
    epoch_was_set = False

    def skip_in_epoch(self, epoch: int, samples: int) -> None:
        """In epoch ``epoch`` leave out the first ``samples`` indices of this rank."""
        self._skip = (epoch, samples)

    def skipped(self) -> int:
        """How many indices of this rank the current epoch leaves out (0 but in the resumed epoch)."""
        return self._skip[1] if self._skip is not None and self._skip[0] == self.epoch else 0

    def set_epoch(self, epoch):
        super().set_epoch(epoch)
        self.epoch_was_set = True

    def __iter__(self):
        indices = list(super().__iter__())
        pairs = list(zip(indices, range(self.rank, self.total_size, self.num_replicas), strict=True))
        if self._skip is not None and self._skip[0] == self.epoch:
            pairs = pairs[self._skip[1] :]
        if getattr(self.dataset, "uses_sample_ids", False):
            return iter([SampleId(i, self.epoch, p, self.seed) for i, p in pairs])
        return iter([i for i, _ in pairs])


class TrackedLoader:
    """The train DataLoader, counting the batches the loop has taken in the current epoch."""

    def __init__(self, loader, sampler, lookahead: int):
        self.loader, self.sampler, self.lookahead = loader, sampler, lookahead
        self.consumed = 0
        self.pending_rng: dict | None = None

    def __len__(self):
        return len(self.loader)

    def __getattr__(self, name):
        return getattr(self.loader, name)

    def __iter__(self):
        iterator = iter(self.loader)
        # the position in the epoch: a resumed epoch starts after the batches trained before, so
        # that a run resumed twice in one epoch saves (and skips) the right number of batches
        self.consumed = self.sampler.skipped() // self.loader.batch_size
        # Prefetchers also call iter() once before the loop sets the epoch; only the loop's counts.
        if self.pending_rng is not None and self.sampler.epoch_was_set:
            set_rng_state(self.pending_rng)
            self.pending_rng = None
        bad = 0
        for batch in iterator:
            self.consumed += 1
            if isinstance(batch, dict) and "bad_samples_skipped" in batch:
                bad += int(batch["bad_samples_skipped"].sum())
            yield batch
        if bad:
            logger.warning(f"epoch {self.sampler.epoch}: {bad} bad training sample(s) skipped (warnings above).")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def forked_rng():
    """Run a block without changing the random state of the process (validation, for one)."""
    saved = rng_state()
    try:
        yield
    finally:
        set_rng_state(saved)


def _dist_ready() -> bool:
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def _forget_validations_after(experiments_root: str, iteration: int) -> None:
    """Drop the validation records that a run resumed from ``iteration`` will write again."""
    path = osp.join(experiments_root, "val_metrics.jsonl")
    if not osp.isfile(path):
        return
    with open(path) as f:
        lines = [line for line in f if line.strip()]
    kept = [line for line in lines if json.loads(line).get("iter", 0) <= iteration]
    if len(kept) < len(lines):
        tmp = f"{path}.tmp{os.getpid()}"
        with open(tmp, "w") as f:
            f.writelines(kept)
        os.replace(tmp, path)


def _wrap_create_train_val_dataloader(original, run: TrainingRun):
    def create_train_val_dataloader(opt, log):
        train_loader, sampler, val_loaders, total_epochs, total_iters = original(opt, log)
        sampler.seed = int(opt.get("manual_seed") or 0)
        lookahead = 1 if opt["datasets"]["train"].get("prefetch_mode") == "cuda" else 0
        tracked = TrackedLoader(train_loader, sampler, lookahead)
        run.sampler, run.loader = sampler, tracked
        return tracked, sampler, val_loaders, total_epochs, total_iters

    return create_train_val_dataloader


def _latest_checkpoint(opt) -> str:
    models = opt["path"].get("models", "")
    found = []
    if osp.isdir(models):
        for entry in os.listdir(models):
            stem = entry[len("net_g_") : -len(".pth")]
            if entry.startswith("net_g_") and entry.endswith(".pth") and stem.isdigit():
                found.append((int(stem), osp.join(models, entry)))
    return max(found)[1] if found else "none yet"


def _guard_optimizer(optimizer, model, run: TrainingRun | None = None) -> None:
    """Check the gradients before every ``optimizer.step``; stop or skip the step when not finite
    (messages name ``run``'s current iteration)."""
    run = run or TrainingRun()
    train_opt = model.opt["train"]
    action = train_opt.get("on_nonfinite_loss", "stop")
    max_skips = int(train_opt.get("max_nonfinite_skips", 10))
    step = optimizer.step
    skipped = 0

    def guarded_step(*args, **kwargs):
        nonlocal skipped
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if _all_finite(grads):
            skipped = 0
            result = step(*args, **kwargs)
            params = [p for group in optimizer.param_groups for p in group["params"]]
            if not _all_finite(params):  # finite gradients, but the update overflowed
                raise NonFiniteLossError(
                    f"iteration {run.current_iter}: the update made the weights non-finite "
                    f"({_nonfinite_names(model, lambda p: p)}); the loss is not finite from here on, and the "
                    f"step cannot be undone, so training stopped. {_how_to_go_on(model, skip=False)}"
                )
            return result
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

    optimizer.step = guarded_step
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


def _wrap_build_model(original, run: TrainingRun):
    def build_model(opt):
        model = original(opt)
        if not opt.get("is_train", False):
            return model
        model.training_run = run
        for optimizer in getattr(model, "optimizers", []):
            _guard_optimizer(optimizer, model, run)
        optimize, validation, resume = model.optimize_parameters, model.validation, model.resume_training

        def optimize_parameters(current_iter):
            run.current_iter = current_iter
            optimize(current_iter)
            signum = run.stop_signal(model)
            if signum:
                logger.info(f"{signal.Signals(signum).name}: saving the checkpoint of iteration {current_iter}.")
                model.save(run.sampler.epoch, current_iter)
                raise TrainingInterrupted(signum, current_iter, opt["path"]["experiments_root"])

        def validation_without_rng_change(*args, **kwargs):
            with forked_rng():
                return validation(*args, **kwargs)

        def resume_training(state):
            resume(state)
            run.resume_data_position(state, opt)

        model.optimize_parameters = optimize_parameters
        model.validation = validation_without_rng_change
        model.resume_training = resume_training
        return model

    return build_model


def _wrap_worker_init_fn(original, run: TrainingRun):
    def worker_init_fn(worker_id, *args, **kwargs):
        # Ctrl-C in a terminal reaches the whole process group. The main process finishes its step,
        # saves and stops; a worker killed by the same SIGINT would make it fail on its next batch.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return original(worker_id, *args, **kwargs)

    return worker_init_fn


def _replace_sampler(original, run: TrainingRun):
    """The ``basicsr.train.EnlargedSampler`` patch (listed in ``serpent_arch.compat.PATCHES``)."""
    return ResumableSampler
