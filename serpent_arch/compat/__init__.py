"""The one layer where BasicSR is changed: every change, why, and a check of its target.

BasicSR 1.4.2 (the current PyPI release, and the version these changes are tested with) does not
run on current torch / torchvision, assumes CUDA in resume and distributed code, and resumes
training inexactly. Nothing of BasicSR is copied; instead each change replaces one attribute of
BasicSR (a function, a method, a class used by ``basicsr.train``) with a thin wrapper or a
replacement, and all of them are listed in :data:`PATCHES`, each with its reason and the function
that makes the replacement.

Two stages: ``"import"`` patches are applied by ``import serpent_arch`` (they fix BasicSR for any
use); ``"train"`` patches by ``basicsr train`` only, for the duration of its run and bound to it
(:func:`applied`; exact resume, clean interruption and the non-finite loss guard of
:mod:`serpent_arch.training`). Before replacing anything, :func:`apply`
checks every target of the stage: it must exist and take the parameters the wrapper relies on. A
BasicSR whose targets differ stops ``import serpent_arch`` with :class:`BasicSRCompatError`,
naming the BasicSR version and the patch, rather than giving a wrong result later.

:func:`describe` renders the list as the README's table.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from serpent_arch.compat import fixes

TESTED_BASICSR = "1.4.2"


class BasicSRCompatError(ImportError):
    """The installed BasicSR differs from what a patch expects."""


@dataclass(frozen=True)
class Patch:
    """One change to BasicSR.

    ``target`` is the dotted path of the replaced attribute; ``make`` (``"module:function"``) maps
    the original to its replacement; ``params`` are the parameter names the target must have.
    """

    target: str
    reason: str
    make: str
    stage: str = "import"
    params: tuple[str, ...] = ()


PATCHES: tuple[Patch, ...] = (
    Patch(
        "torchvision.transforms.functional_tensor",
        "removed in torchvision 0.17, still imported by basicsr.data.degradations, so `import basicsr` "
        "fails; an alias module forwards rgb_to_grayscale to torchvision.transforms.functional",
        "serpent_arch.compat.fixes:alias_functional_tensor",
    ),
    Patch(
        "basicsr.train.load_resume_state",
        "--auto_resume called torch.cuda.current_device() (crash on CPU) and relied on torch.load's old "
        "weights_only=False default; the replacement maps onto the run's device and skips a half-written "
        "newest state or one whose network checkpoint is missing",
        "serpent_arch.compat.fixes:replace_load_resume_state",
        params=("opt",),
    ),
    Patch(
        "basicsr.utils.options.init_dist",
        "hard-coded NCCL and torch.cuda.set_device; NCCL on CUDA, gloo on CPU",
        "serpent_arch.compat.fixes:replace_init_dist",
        params=("launcher", "backend"),
    ),
    Patch(
        "basicsr.train.parse_options",
        "option files written for a GPU (num_gpu: 1, prefetch_mode: cuda) crash without CUDA; lowered "
        "to the devices present, with a warning",
        "serpent_arch.compat.fixes:wrap_parse_options",
        params=("root_path", "is_train"),
    ),
    Patch(
        "basicsr.test.parse_options",
        "as basicsr.train.parse_options, for basicsr test",
        "serpent_arch.compat.fixes:wrap_parse_options",
        params=("root_path", "is_train"),
    ),
    Patch(
        "basicsr.models.base_model.BaseModel.model_to_device",
        "passes torch.cuda.current_device() to DistributedDataParallel; on CPU wrapped without device ids",
        "serpent_arch.compat.fixes:wrap_model_to_device",
        params=("self", "net"),
    ),
    Patch(
        "basicsr.models.base_model.BaseModel.save_network",
        "torch.save straight to the final path: a run killed while saving left a truncated checkpoint "
        "that looks complete; staged in a temporary folder, then synced and renamed into place",
        "serpent_arch.compat.fixes:wrap_save_network",
        params=("self", "net", "net_label", "current_iter", "param_key"),
    ),
    Patch(
        "basicsr.models.base_model.BaseModel.save_training_state",
        "as save_network, for training states",
        "serpent_arch.compat.fixes:wrap_save_training_state",
        params=("self", "epoch", "current_iter"),
    ),
    Patch(
        "basicsr.data.paired_image_dataset.PairedImageDataset.__getitem__",
        "a corrupt image or missing LMDB key failed with \"'NoneType' object has no attribute 'astype'\" "
        "without naming the file; the error names the dataset, the item and its paths",
        "serpent_arch.compat.fixes:wrap_getitem_naming_files",
        params=("self", "index"),
    ),
    Patch(
        "basicsr.data.single_image_dataset.SingleImageDataset.__getitem__",
        "as PairedImageDataset.__getitem__",
        "serpent_arch.compat.fixes:wrap_getitem_naming_files",
        params=("self", "index"),
    ),
    Patch(
        "basicsr.utils.lmdb_util.tqdm",
        "make_lmdb_from_imgs redrew its progress bar for every image, so a redirected log of "
        "datasets/make_lmdb.py filled with carriage-return lines; the bar is drawn only on a terminal",
        "serpent_arch.compat.fixes:progress_on_terminals_only",
    ),
    Patch(
        "basicsr.train.EnlargedSampler",
        "restarts an interrupted epoch from its first batch; ResumableSampler yields the same order, "
        "skips what a resumed run already trained on, and hands datasets position-keyed sample ids",
        "serpent_arch.training:_replace_sampler",
        stage="train",
        params=("dataset", "num_replicas", "rank", "ratio"),
    ),
    Patch(
        "basicsr.train.create_train_val_dataloader",
        "the train loader is tracked (batches consumed, random state restored on resume)",
        "serpent_arch.training:_wrap_create_train_val_dataloader",
        stage="train",
        params=("opt", "logger"),
    ),
    Patch(
        "basicsr.train.build_model",
        "the model gets the non-finite loss guard, validation with the random state forked, and a "
        "checkpoint-and-stop after the step in which SIGTERM / SIGINT arrived",
        "serpent_arch.training:_wrap_build_model",
        stage="train",
        params=("opt",),
    ),
    Patch(
        "basicsr.train.copy_opt_file",
        "the copy of the option file in experiments/NAME keeps --force_yml overrides only in a comment; "
        "the user's file is copied as before and the options the run used (after --trial, --force_yml, "
        "--remove_yml) are written beside it as options_resolved.yml, read by basicsr test/infer -e",
        "serpent_arch.training:_wrap_copy_opt_file",
        stage="train",
        params=("opt_file", "experiments_root"),
    ),
    Patch(
        "basicsr.data.worker_init_fn",
        "DataLoader workers ignore SIGINT (the main process saves and stops on Ctrl-C)",
        "serpent_arch.training:_wrap_worker_init_fn",
        stage="train",
        params=("worker_id", "num_workers", "rank", "seed"),
    ),
)

_applied: set[str] = set()


def _resolve(target: str) -> tuple[object, str]:
    """(owner, attribute) of a dotted target: the longest importable module prefix, then getattr."""
    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:-1]:
            owner = getattr(owner, name)
        return owner, parts[-1]
    raise ImportError(f"no module of {target} can be imported")


def _maker(patch: Patch) -> Callable:
    module, _, name = patch.make.partition(":")
    return getattr(importlib.import_module(module), name)


def _target_problem(patch: Patch) -> str | None:
    """Why ``patch`` cannot be applied to the installed BasicSR, or None."""
    try:
        owner, name = _resolve(patch.target)
    except (ImportError, AttributeError) as err:
        return f"cannot reach it: {err}"
    if not hasattr(owner, name):
        return f"{type(owner).__name__} {getattr(owner, '__name__', owner)} has no attribute {name!r}"
    if patch.params:
        try:
            found = tuple(inspect.signature(getattr(owner, name)).parameters)
        except (TypeError, ValueError) as err:
            return f"its signature cannot be read: {err}"
        missing = [p for p in patch.params if p not in found]
        if missing:
            return f"it takes ({', '.join(found)}), without {', '.join(missing)}"
    return None


def check(stage: str | None = None) -> list[str]:
    """Problems of the installed BasicSR with the patches of ``stage`` (all when None), as lines."""
    problems = []
    for patch in PATCHES:
        if stage is None or patch.stage == stage:
            if patch.target == "torchvision.transforms.functional_tensor":
                continue  # the alias creates its target
            problem = _target_problem(patch)
            if problem:
                problems.append(f"{patch.target}: {problem}")
    return problems


def _replace_all(stage: str, context: dict) -> list[tuple[object, str, object]]:
    """Check, then replace, every target of ``stage``; returns (owner, name, original) of each."""
    problems = check(stage)
    if problems:
        import basicsr

        version = getattr(basicsr, "__version__", "unknown")
        raise BasicSRCompatError(
            f"serpent_arch: BasicSR {version} differs from what its compatibility patches expect "
            f"(tested with BasicSR {TESTED_BASICSR}):\n  - " + "\n  - ".join(problems)
            + f"\nInstall the tested version: pip install basicsr=={TESTED_BASICSR}"
        )
    replaced = []
    for patch in PATCHES:
        if patch.stage != stage or patch.target == "torchvision.transforms.functional_tensor":
            continue
        owner, name = _resolve(patch.target)
        original = getattr(owner, name)
        setattr(owner, name, _maker(patch)(original, **context))
        replaced.append((owner, name, original))
    return replaced


def apply(stage: str = "import") -> None:
    """Check, then apply, every patch of ``stage`` for the rest of the process (once)."""
    if stage in _applied:
        return
    if stage == "import":
        fixes.alias_functional_tensor(None)
    _replace_all(stage, {})
    _applied.add(stage)


@contextlib.contextmanager
def applied(stage: str, **context):
    """Apply the patches of ``stage`` for the duration of a block, their makers called with
    ``context`` (the ``train`` stage: ``run``, the :class:`serpent_arch.training.TrainingRun`);
    the originals come back afterwards."""
    replaced = _replace_all(stage, context)
    try:
        yield
    finally:
        for owner, name, original in reversed(replaced):
            setattr(owner, name, original)


def describe() -> str:
    """The patches as a markdown table (target, stage, reason, where)."""
    lines = ["| BasicSR attribute | applied by | why | replacement |", "|---|---|---|---|"]
    for patch in PATCHES:
        stage = "`import serpent_arch`" if patch.stage == "import" else "`basicsr train`"
        lines.append(f"| `{patch.target}` | {stage} | {patch.reason} | `{patch.make}` |")
    return "\n".join(lines)
