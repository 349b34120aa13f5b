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
import functools
import importlib
import inspect
import logging
import os
import shutil
import sys
import types
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from os import path as osp

import torch

TESTED_BASICSR = "1.4.2"
logger = logging.getLogger("basicsr")


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
        "serpent_arch.compat:_alias_functional_tensor",
    ),
    Patch(
        "basicsr.train.load_resume_state",
        "--auto_resume called torch.cuda.current_device() (crash on CPU) and relied on torch.load's old "
        "weights_only=False default; the replacement maps onto the run's device and skips a half-written "
        "newest state or one whose network checkpoint is missing",
        "serpent_arch.compat:_replace_load_resume_state",
        params=("opt",),
    ),
    Patch(
        "basicsr.utils.options.init_dist",
        "hard-coded NCCL and torch.cuda.set_device; NCCL on CUDA, gloo on CPU",
        "serpent_arch.compat:_replace_init_dist",
        params=("launcher", "backend"),
    ),
    Patch(
        "basicsr.train.parse_options",
        "option files written for a GPU (num_gpu: 1, prefetch_mode: cuda) crash without CUDA; lowered "
        "to the devices present, with a warning",
        "serpent_arch.compat:_wrap_parse_options",
        params=("root_path", "is_train"),
    ),
    Patch(
        "basicsr.test.parse_options",
        "as basicsr.train.parse_options, for basicsr test",
        "serpent_arch.compat:_wrap_parse_options",
        params=("root_path", "is_train"),
    ),
    Patch(
        "basicsr.models.base_model.BaseModel.model_to_device",
        "passes torch.cuda.current_device() to DistributedDataParallel; on CPU wrapped without device ids",
        "serpent_arch.compat:_wrap_model_to_device",
        params=("self", "net"),
    ),
    Patch(
        "basicsr.models.base_model.BaseModel.save_network",
        "torch.save straight to the final path: a run killed while saving left a truncated checkpoint "
        "that looks complete; staged in a temporary folder, then synced and renamed into place",
        "serpent_arch.compat:_wrap_save_network",
        params=("self", "net", "net_label", "current_iter", "param_key"),
    ),
    Patch(
        "basicsr.models.base_model.BaseModel.save_training_state",
        "as save_network, for training states",
        "serpent_arch.compat:_wrap_save_training_state",
        params=("self", "epoch", "current_iter"),
    ),
    Patch(
        "basicsr.data.paired_image_dataset.PairedImageDataset.__getitem__",
        "a corrupt image or missing LMDB key failed with \"'NoneType' object has no attribute 'astype'\" "
        "without naming the file; the error names the dataset, the item and its paths",
        "serpent_arch.compat:_wrap_getitem_naming_files",
        params=("self", "index"),
    ),
    Patch(
        "basicsr.data.single_image_dataset.SingleImageDataset.__getitem__",
        "as PairedImageDataset.__getitem__",
        "serpent_arch.compat:_wrap_getitem_naming_files",
        params=("self", "index"),
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
        "basicsr.data.worker_init_fn",
        "DataLoader workers ignore SIGINT (the main process saves and stops on Ctrl-C)",
        "serpent_arch.training:_wrap_worker_init_fn",
        stage="train",
        params=("worker_id", "num_workers", "rank", "seed"),
    ),
)

_applied: set[str] = set()


def _alias_functional_tensor(original=None) -> None:
    name = "torchvision.transforms.functional_tensor"
    if name in sys.modules:
        return
    try:
        import torchvision.transforms.functional_tensor  # noqa: F401  (old torchvision: nothing to do)

        return
    except ImportError:
        pass
    from torchvision.transforms import functional

    module = types.ModuleType(name)
    module.rgb_to_grayscale = functional.rgb_to_grayscale
    module.__doc__ = "Alias created by serpent_arch.compat for BasicSR 1.4.2."
    sys.modules[name] = module


def _resume_candidates(state_dir: str) -> list[tuple[int, str]]:
    """(iteration, path) of every ``<iter>.state`` file in ``state_dir``, newest first."""
    found = []
    for entry in os.listdir(state_dir):
        stem, ext = osp.splitext(entry)
        if ext == ".state" and stem.isdigit():
            found.append((int(stem), osp.join(state_dir, entry)))
    return sorted(found, reverse=True)


def _map_location():
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def remove_stale_temp_files(*folders: str) -> None:
    """Delete the temporary files and staging folders of saves that a killed process never
    finished (``*.tmp<pid>`` of a process that no longer runs); a save in progress elsewhere is
    left alone."""
    for folder in folders:
        if not osp.isdir(folder):
            continue
        for entry in os.listdir(folder):
            stem, _, pid = entry.rpartition(".tmp")
            if not stem or not pid.isdigit() or _process_alive(int(pid)):
                continue
            target = osp.join(folder, entry)
            with contextlib.suppress(FileNotFoundError):  # another rank got there first
                if osp.isdir(target):
                    shutil.rmtree(target)
                else:
                    os.unlink(target)
                logger.info(f"Removed {osp.join(folder, entry)}, left by a save that was interrupted.")


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def load_resume_state(opt: dict):
    """CPU-safe replacement for ``basicsr.train.load_resume_state`` (same contract)."""
    from basicsr.utils import check_resume

    if opt["auto_resume"]:
        state_dir = osp.join("experiments", opt["name"], "training_states")
        if not osp.isdir(state_dir):
            return None
        models_dir = osp.join("experiments", opt["name"], "models")
        remove_stale_temp_files(state_dir, models_dir)
        for iteration, path in _resume_candidates(state_dir):
            if not osp.isfile(osp.join(models_dir, f"net_g_{iteration}.pth")):
                logger.warning(f"Skipping training state {path}: its network checkpoint is missing.")
                continue
            try:
                state = torch.load(path, map_location=_map_location(), weights_only=False)
            except Exception as err:  # a half-written file from a killed run
                logger.warning(f"Skipping unreadable training state {path}: {err}")
                continue
            opt["path"]["resume_state"] = path
            check_resume(opt, state["iter"])
            return state
        return None

    path = opt["path"].get("resume_state")
    if not path:
        return None
    if not osp.isfile(path):
        raise FileNotFoundError(f"path.resume_state: training state {path!r} does not exist.")
    state = torch.load(path, map_location=_map_location(), weights_only=False)
    check_resume(opt, state["iter"])
    return state


def init_dist(launcher: str, backend: str | None = None, **kwargs) -> None:
    """Replacement for ``basicsr.utils.dist_util.init_dist``: NCCL on CUDA, gloo on CPU."""
    import torch.distributed as dist
    import torch.multiprocessing as mp
    from basicsr.utils import dist_util

    if mp.get_start_method(allow_none=True) is None:
        mp.set_start_method("spawn")
    use_cuda = torch.cuda.is_available()
    if backend == "nccl" and not use_cuda:  # dist_params.backend of a GPU option file, on CPU
        logger.warning("dist_params.backend: nccl needs CUDA; using gloo.")
        backend = None
    backend = backend or ("nccl" if use_cuda else "gloo")
    if launcher == "pytorch":
        if use_cuda:
            local_rank = int(os.environ.get("LOCAL_RANK", os.environ["RANK"]))
            torch.cuda.set_device(local_rank % torch.cuda.device_count())
        dist.init_process_group(backend=backend, **kwargs)
    elif launcher == "slurm":
        if use_cuda:
            dist_util._init_dist_slurm(backend, **kwargs)
        else:
            _init_dist_slurm_cpu(backend, **kwargs)
    else:
        raise ValueError(f"--launcher: unknown launcher {launcher!r}; expected none, pytorch or slurm.")


def _init_dist_slurm_cpu(backend: str, port: int | None = None) -> None:
    import subprocess

    import torch.distributed as dist

    node_list = os.environ["SLURM_NODELIST"]
    os.environ["MASTER_ADDR"] = subprocess.getoutput(f"scontrol show hostname {node_list} | head -n1")
    if port is not None or "MASTER_PORT" not in os.environ:
        os.environ["MASTER_PORT"] = str(port or 29500)
    os.environ["WORLD_SIZE"] = os.environ["SLURM_NTASKS"]
    os.environ["RANK"] = os.environ["SLURM_PROCID"]
    dist.init_process_group(backend=backend)


def _wrap_parse_options(original):
    @functools.wraps(original)
    def parse_options(root_path, is_train=True):
        opt, args = original(root_path, is_train)
        available = torch.cuda.device_count()
        if isinstance(opt.get("num_gpu"), int) and opt["num_gpu"] > available:
            warnings.warn(
                f"num_gpu: {opt['num_gpu']} in {args.opt}, but {available} CUDA device(s) are present; "
                f"using num_gpu: {available}" + (" (CPU)." if available == 0 else "."),
                stacklevel=2,
            )
            opt["num_gpu"] = available
        for phase, ds in opt["datasets"].items():
            if ds.get("prefetch_mode") == "cuda" and available == 0:
                warnings.warn(
                    f"datasets.{phase}.prefetch_mode: cuda needs CUDA; using the CPU prefetcher.", stacklevel=2
                )
                ds["prefetch_mode"] = "cpu"
        return opt, args

    return parse_options


def _wrap_model_to_device(original):
    @functools.wraps(original)
    def model_to_device(self, net):
        if self.opt["dist"] and self.device.type == "cpu":
            from torch.nn.parallel import DistributedDataParallel

            unused = self.opt.get("find_unused_parameters", False)
            return DistributedDataParallel(net.to(self.device), find_unused_parameters=unused)
        return original(self, net)

    return model_to_device


def _wrap_save_atomically(folder_key: str):
    """``BaseModel.save_network`` / ``save_training_state`` (``folder_key``: the ``path`` option they
    write to) staged in a temporary folder beside the final one; each complete file is synced and
    renamed into place, so a run killed while saving never leaves a truncated file under a final
    name. BasicSR retries a failed write and then only warns; a file it left incomplete is dropped."""

    def wrap(original):
        @functools.wraps(original)
        def save(self, *args, **kwargs):
            paths = self.opt["path"]
            if self.opt.get("rank", 0) != 0:  # BasicSR saves on rank 0 only
                return original(self, *args, **kwargs)
            final = paths[folder_key]
            staging = osp.join(final, f"saving.tmp{os.getpid()}")
            os.makedirs(staging, exist_ok=True)
            paths[folder_key] = staging
            try:
                result = original(self, *args, **kwargs)
            finally:
                paths[folder_key] = final
            try:
                for name in sorted(os.listdir(staging)):
                    _publish(osp.join(staging, name), osp.join(final, name))
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            return result

        return save

    return wrap


def _publish(staged: str, final: str) -> None:
    """Move a file written by ``torch.save`` into place if it is complete (its zip directory, which
    torch writes last, is there); else drop it with a warning."""
    if not zipfile.is_zipfile(staged):
        logger.warning(f"Not keeping {final}: the save did not complete.")
        return
    with open(staged, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(staged, final)


def _wrap_getitem_naming_files(original):
    @functools.wraps(original)
    def __getitem__(self, index):
        try:
            return original(self, index)
        except Exception as err:
            paths = self.paths[index] if hasattr(self, "paths") and index < len(self.paths) else "?"
            if isinstance(paths, dict):
                paths = ", ".join(f"{key} {value}" for key, value in paths.items())
            cause = f"{type(err).__name__}: {err}"
            if isinstance(err, (AttributeError, TypeError)) and "NoneType" in str(err):
                cause = "not a readable image (corrupt file, or a key missing from the LMDB)"
            raise RuntimeError(
                f"{type(self).__name__} {self.opt.get('name')!r}: cannot load item {index} ({paths}): {cause}"
            ) from err

    return __getitem__


def _replace_with(replacement):
    """A patch maker for targets replaced whole (the original is not called)."""
    return lambda original: replacement


def _replace_load_resume_state(original):
    return load_resume_state


def _replace_init_dist(original):
    return init_dist


_wrap_save_network = _wrap_save_atomically("models")
_wrap_save_training_state = _wrap_save_atomically("training_states")


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
        _alias_functional_tensor(None)
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
