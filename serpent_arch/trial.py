"""``basicsr train -opt FILE --trial``: the option file, shrunk to a run of a minute or two on a CPU.

A full-scale file (500,000 iterations of batch 8 at 256x256 patches, 8 workers, validation and
checkpoints every 5,000) is tried end to end before the GPU time is spent on it: the same data,
network, losses, optimizer and validation metrics, with

- the name prefixed with ``trial_`` (BasicSR's ``--debug`` prefixes ``debug_``), so the trial never
  mixes with, archives or resumes the real run's ``experiments/NAME``;
- :data:`ITERATIONS` iterations, the scheduler's milestones / periods and the warm-up scaled to them;
- training patches of about 32 pixels (a multiple of the scale), batch 2, no DataLoader workers;
- validation and a checkpoint every ``ITERATIONS / 2`` iterations, on the first :data:`VAL_IMAGES`
  images of each validation set (``val.max_images``, read by ``SerpentModel``);
- no TensorBoard or wandb logging.

:func:`shrink` changes the options in place and returns what it changed, which ``basicsr train``
prints; ``--force_yml`` and ``--remove_yml`` apply after it, so any trial value can be overridden.
"""

from __future__ import annotations

import math

ITERATIONS = 40
PATCH = 32  # training patch (GT pixels), rounded up to a multiple of the scale
BATCH = 2
VAL_IMAGES = 2
PREFIX = "trial_"


def shrink(opt: dict) -> list[str]:
    """Make ``opt`` a trial run; returns one ``key: old -> new`` line per change."""
    changes: list[str] = []

    def put(section: dict, key: str, value, where: str) -> None:
        old = section.get(key)
        if old != value:
            section[key] = value
            changes.append(f"{where}{key}: {old} -> {value}")

    if isinstance(opt.get("name"), str) and not opt["name"].startswith(PREFIX):
        put(opt, "name", PREFIX + opt["name"], "")
    train = opt.get("train")
    if isinstance(train, dict):
        total = train.get("total_iter")
        ratio = ITERATIONS / total if isinstance(total, (int, float)) and total > ITERATIONS else 1.0
        iterations = min(int(total), ITERATIONS) if isinstance(total, (int, float)) else ITERATIONS
        put(train, "total_iter", iterations, "train:")
        warmup = train.get("warmup_iter")
        if isinstance(warmup, (int, float)) and warmup > 0:
            put(train, "warmup_iter", max(1, round(warmup * ratio)), "train:")
        scheduler = train.get("scheduler")
        if isinstance(scheduler, dict) and ratio < 1:
            for key in ("milestones", "periods"):
                if isinstance(scheduler.get(key), list):
                    put(scheduler, key, [max(1, round(v * ratio)) for v in scheduler[key]], "train:scheduler:")
    scale = opt.get("scale", 1) if isinstance(opt.get("scale"), int) and opt.get("scale") > 0 else 1
    patch = scale * math.ceil(PATCH / scale)
    for phase, ds in (opt.get("datasets") or {}).items():
        if not isinstance(ds, dict):
            continue
        where = f"datasets:{phase}:"
        if str(phase).startswith("train"):
            if isinstance(ds.get("gt_size"), int) and ds["gt_size"] > patch:
                put(ds, "gt_size", patch, where)
            if isinstance(ds.get("batch_size_per_gpu"), int) and ds["batch_size_per_gpu"] > BATCH:
                put(ds, "batch_size_per_gpu", BATCH, where)
            if ds.get("num_worker_per_gpu"):
                put(ds, "num_worker_per_gpu", 0, where)
    half = ITERATIONS // 2
    val = opt.get("val")
    if isinstance(val, dict):
        if val.get("val_freq") is not None:
            put(val, "val_freq", half, "val:")
        put(val, "max_images", VAL_IMAGES, "val:")
    logger = opt.get("logger")
    if isinstance(logger, dict):
        put(logger, "print_freq", min(logger.get("print_freq") or 10, 10), "logger:")
        put(logger, "save_checkpoint_freq", half, "logger:")
        if logger.get("use_tb_logger"):
            put(logger, "use_tb_logger", False, "logger:")
        if isinstance(logger.get("wandb"), dict) and logger["wandb"].get("project") is not None:
            put(logger["wandb"], "project", None, "logger:wandb:")
    return changes
