"""What ``basicsr train`` adds to BasicSR's training loop: exact resume, clean interruption, the
guard against non-finite losses (``serpent_arch.nonfinite``) and a count of skipped bad samples.

BasicSR's ``train_pipeline`` is used as it is; five names in ``basicsr.train`` and ``basicsr.data``
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
* ``copy_opt_file`` copies the user's option file (``basicsr train`` gives BasicSR a resolved copy in
  a temporary folder to parse) and writes the options the run uses beside it,
  ``experiments/NAME/options_resolved.yml`` (``serpent_arch.experiment``).
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
import shlex
import signal
import sys
from os import path as osp
from typing import NamedTuple

import numpy as np
import torch
from basicsr.data.data_sampler import EnlargedSampler

from serpent_arch.nonfinite import guard_optimizer

logger = logging.getLogger("basicsr")

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


class TrainingRun:
    """The state of one ``basicsr train`` run, owned by the command and passed to the wrappers of
    the ``train`` stage (``serpent_arch.compat.applied("train", run=...)``), which hand it to the
    model as ``model.training_run``: the options it runs, the tracked loader and sampler, the current
    iteration, and a stop signal received."""

    def __init__(self, options: dict | None = None, option_file: str | None = None, command: str | None = None):
        # the resolved options BasicSR parses, the user's file they come from, the command line
        self.options, self.option_file, self.command = options, option_file, command
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


def _wrap_build_model(original, run: TrainingRun):
    def build_model(opt):
        model = original(opt)
        if not opt.get("is_train", False):
            return model
        model.training_run = run
        for optimizer in getattr(model, "optimizers", []):
            guard_optimizer(optimizer, model, run)
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


def _wrap_copy_opt_file(original, run: TrainingRun):
    def copy_opt_file(opt_file, experiments_root):
        if run.options is None:  # a run not resolved by `basicsr train`: BasicSR's copy only
            return original(opt_file, experiments_root)
        from basicsr.utils.dist_util import get_dist_info

        from serpent_arch.experiment import write_resolved_options

        argv, sys.argv = sys.argv, shlex.split(run.command)  # BasicSR's copy starts with '# CMD: <sys.argv>'
        try:
            original(run.option_file, experiments_root)  # master-only itself
        finally:
            sys.argv = argv
        if get_dist_info()[0] == 0:
            write_resolved_options(run.options, experiments_root, run.option_file, run.command)

    return copy_opt_file


def _replace_sampler(original, run: TrainingRun):
    """The ``basicsr.train.EnlargedSampler`` patch (listed in ``serpent_arch.compat.PATCHES``)."""
    return ResumableSampler
