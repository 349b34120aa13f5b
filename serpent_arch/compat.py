"""Compatibility fixes that let BasicSR 1.4.2 (the current PyPI release) run on current torch.

Applied once, when ``serpent_arch`` is imported and before anything imports ``basicsr``.
Every fix is a small, named patch of one BasicSR attribute; nothing of BasicSR is copied.

1. ``torchvision.transforms.functional_tensor`` was removed from torchvision (0.17+), but
   ``basicsr.data.degradations`` still imports ``rgb_to_grayscale`` from it, so
   ``import basicsr`` fails. We register a tiny alias module that forwards to
   ``torchvision.transforms.functional``.
2. ``basicsr.train.load_resume_state`` calls ``torch.cuda.current_device()`` and maps the
   state onto CUDA, so ``--auto_resume`` crashes on a CPU-only machine; it also relies on
   ``torch.load``'s old ``weights_only=False`` default (training states hold optimizer and
   scheduler objects). The replacement maps onto the device the run uses, and when the
   newest state is unreadable (a run killed while saving) it falls back to the newest one
   that loads and whose network checkpoint exists.
3. ``basicsr.utils.options.init_dist`` hard-codes the NCCL backend and
   ``torch.cuda.set_device``. The replacement picks NCCL when CUDA is available and gloo
   otherwise, so ``--launcher pytorch`` also works on CPU.
4. ``BaseModel.model_to_device`` passes ``torch.cuda.current_device()`` to
   DistributedDataParallel; on CPU the model is wrapped without device ids.
5. Option files written for a GPU (``num_gpu: 1``, ``prefetch_mode: cuda``) crash on a machine
   without CUDA. ``parse_options`` is wrapped so that, when CUDA is absent, ``num_gpu`` is
   lowered to the devices present and the CUDA prefetcher becomes the CPU one, with a warning.
6. ``BaseModel.save_network`` / ``save_training_state`` write with ``torch.save`` straight to
   the final path, so a run killed while saving leaves a truncated checkpoint that looks
   complete. ``basicsr.models.base_model`` gets a ``torch`` whose ``save`` writes a temporary file
   in the same folder, syncs it and renames it into place; everything else is torch itself.
7. BasicSR's ``PairedImageDataset`` and ``SingleImageDataset`` fail on a corrupt image or a
   missing LMDB key with ``'NoneType' object has no attribute 'astype'`` from inside
   ``imfrombytes``, without naming the file. Their ``__getitem__`` is wrapped so the error names
   the dataset, the item and its paths (the original exception is chained).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import types
import warnings
from os import path as osp

import torch

_APPLIED = False
logger = logging.getLogger("basicsr")


def _alias_functional_tensor() -> None:
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
    """Delete the temporary files of saves that a killed process never finished (``*.tmp<pid>``
    of a process that no longer runs); a save in progress elsewhere is left alone."""
    for folder in folders:
        if not osp.isdir(folder):
            continue
        for entry in os.listdir(folder):
            stem, _, pid = entry.rpartition(".tmp")
            if not stem or not pid.isdigit() or _process_alive(int(pid)):
                continue
            with contextlib.suppress(FileNotFoundError):  # another rank got there first
                os.unlink(osp.join(folder, entry))
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

    parse_options.serpent_compat = True
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


class _AtomicSaveTorch(types.ModuleType):
    """``torch`` for BasicSR's base_model module, except that ``save`` to a path is atomic."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def save(obj, f, *args, **kwargs):
        return atomic_save(obj, f, *args, **kwargs)


def atomic_save(obj, f, *args, **kwargs) -> None:
    """``torch.save`` that never leaves a partial file at ``f``: temporary file, fsync, rename."""
    if not isinstance(f, (str, os.PathLike)):
        return torch.save(obj, f, *args, **kwargs)
    tmp = f"{os.fspath(f)}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as handle:
            torch.save(obj, handle, *args, **kwargs)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, f)
    finally:
        if osp.exists(tmp):
            os.unlink(tmp)


def _wrap_getitem_naming_files(dataset_cls) -> None:
    original = dataset_cls.__getitem__
    if getattr(original, "serpent_compat", False):
        return

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
                f"{dataset_cls.__name__} {self.opt.get('name')!r}: cannot load item {index} ({paths}): {cause}"
            ) from err

    __getitem__.serpent_compat = True
    dataset_cls.__getitem__ = __getitem__


def apply() -> None:
    """Install all fixes; safe to call more than once."""
    global _APPLIED
    if _APPLIED:
        return
    _alias_functional_tensor()
    import basicsr.models.base_model
    import basicsr.test
    import basicsr.train
    import basicsr.utils.options
    from basicsr.models.base_model import BaseModel

    basicsr.train.load_resume_state = load_resume_state
    basicsr.utils.options.init_dist = init_dist
    basicsr.train.parse_options = _wrap_parse_options(basicsr.train.parse_options)
    basicsr.test.parse_options = _wrap_parse_options(basicsr.test.parse_options)
    BaseModel.model_to_device = _wrap_model_to_device(BaseModel.model_to_device)
    basicsr.models.base_model.torch = _AtomicSaveTorch()
    from basicsr.data.paired_image_dataset import PairedImageDataset
    from basicsr.data.single_image_dataset import SingleImageDataset

    for dataset_cls in (PairedImageDataset, SingleImageDataset):
        _wrap_getitem_naming_files(dataset_cls)
    _APPLIED = True
