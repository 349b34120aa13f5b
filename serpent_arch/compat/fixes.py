"""The replacements that the import stage of the BasicSR layer puts in place (each listed, with its
reason, in ``serpent_arch.compat.PATCHES``): the torchvision alias, CPU-safe resume loading and
distributed init, GPU option files on a CPU machine, atomic checkpoint saves, dataset errors
that name the file, and the LMDB writer's progress bar on terminals only. Each is a thin wrapper
of, or a stand-in for, one BasicSR attribute."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import shutil
import sys
import types
import warnings
import zipfile
from os import path as osp

import torch

logger = logging.getLogger("basicsr")


def alias_functional_tensor(original=None) -> None:
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


def fit_to_devices(opt: dict, option_file: str) -> list[str]:
    """Lower ``num_gpu`` and ``prefetch_mode: cuda`` of options written for a GPU to the CUDA devices
    present; returns a warning per change (naming ``option_file``). ``basicsr train/test`` call it on
    the options they resolve, so that their warnings name the user's file; BasicSR's ``parse_options``
    (wrapped below) then finds nothing left to lower."""
    available = torch.cuda.device_count()
    changes = []
    if isinstance(opt.get("num_gpu"), int) and opt["num_gpu"] > available:
        changes.append(
            f"num_gpu: {opt['num_gpu']} in {option_file}, but {available} CUDA device(s) are present; "
            f"using num_gpu: {available}" + (" (CPU)." if available == 0 else ".")
        )
        opt["num_gpu"] = available
    for phase, ds in (opt.get("datasets") or {}).items():
        if isinstance(ds, dict) and ds.get("prefetch_mode") == "cuda" and available == 0:
            changes.append(f"datasets.{phase}.prefetch_mode: cuda needs CUDA; using the CPU prefetcher.")
            ds["prefetch_mode"] = "cpu"
    return changes


def wrap_parse_options(original):
    @functools.wraps(original)
    def parse_options(root_path, is_train=True):
        opt, args = original(root_path, is_train)
        for change in fit_to_devices(opt, args.opt):
            warnings.warn(change, stacklevel=2)
        return opt, args

    return parse_options


def wrap_model_to_device(original):
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


def wrap_getitem_naming_files(original):
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


def progress_on_terminals_only(original):
    # tqdm's own rule for disable=None: no bar when its stream (stderr) is not a terminal
    return functools.partial(original, disable=None)


def replace_load_resume_state(original):
    return load_resume_state


def replace_init_dist(original):
    return init_dist


wrap_save_network = _wrap_save_atomically("models")
wrap_save_training_state = _wrap_save_atomically("training_states")
