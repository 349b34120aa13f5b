"""Peak memory of a piece of code, the one place that measures it (benchmarks and tests).

* :class:`TensorMemoryTracker` (any device): a ``TorchDispatchMode`` that watches every op; an op
  output whose storage is new (not shared with one of the op's inputs) counts as an allocation of
  ``storage.nbytes()`` until that storage is freed (a ``weakref.finalize`` on the storage, whose
  Python object torch keeps alive exactly as long as the storage). Tensors that existed before the
  block (weights, inputs) are not counted. It misses temporaries that an op allocates and frees
  inside itself (e.g. convolution buffers) and memory allocated outside torch (malloc in C code,
  oneDNN scratch space), which is why the C scan kernel takes all its scratch space as tensors.
* :func:`cpu_allocator_peak` (CPU): every allocation and free through torch's CPU allocator, as
  recorded by the public ``torch.profiler`` (``profile_memory=True``, the ``[memory]`` events of
  its exported trace); the running sum of their sizes in time order, its maximum. This sees what a
  CPU ``max_memory_allocated`` would, temporaries inside ops included.
* :func:`cuda_peak` (CUDA): ``torch.cuda.max_memory_allocated`` minus what was allocated before.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import weakref
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

CPU_DEVICE_TYPE = 0  # "Device Type" of a CPU allocation in the profiler trace (c10::DeviceType::CPU)


class TensorMemoryTracker(TorchDispatchMode):
    """Context manager; ``peak_bytes`` / ``current_bytes`` after (or during) the block.

    Example::

        with TensorMemoryTracker() as mem:
            out = selective_scan(...)
        print(mem.peak_bytes)
    """

    def __init__(self) -> None:
        super().__init__()
        self.current_bytes = 0
        self.peak_bytes = 0
        self._live: dict[int, int] = {}  # id(storage) -> bytes counted for it

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        inputs = {id(t.untyped_storage()) for t in tree_leaves((args, kwargs)) if _has_storage(t)}
        out = func(*args, **kwargs)
        for t in tree_leaves(out):
            if _has_storage(t):
                self._track(t.untyped_storage(), inputs)
        return out

    def _track(self, storage: torch.UntypedStorage, inputs: set[int]) -> None:
        key, nbytes = id(storage), storage.nbytes()
        if key in self._live:  # e.g. an out= or resize_ op grew a storage we already count
            self.current_bytes += nbytes - self._live[key]
            self._live[key] = nbytes
        elif key not in inputs and nbytes:
            self._live[key] = nbytes
            self.current_bytes += nbytes
            weakref.finalize(storage, self._free, key)
        self.peak_bytes = max(self.peak_bytes, self.current_bytes)

    def _free(self, key: int) -> None:
        self.current_bytes -= self._live.pop(key, 0)


def _has_storage(t: object) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type != "meta" and not t.is_sparse


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silence file descriptor 2 briefly: kineto logs a few lines to it at every profiler start/stop."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def cpu_allocator_peak(fn: Callable[[], object]) -> int:
    """Peak bytes held through torch's CPU allocator while ``fn()`` runs, above the level at its start.

    Not seen: memory that libraries allocate themselves (oneDNN/MKL scratch space) and malloc's own
    overhead.
    """
    prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
    with _quiet_native_stderr():
        prof.start()
    try:
        fn()
    finally:
        with _quiet_native_stderr():
            prof.stop()
    # The trace is the public record of each allocation; prof.events() attributes the ones made
    # inside an op to that op as a net sum, which hides the op's internal peak.
    with tempfile.TemporaryDirectory() as tmp:
        trace_path = os.path.join(tmp, "trace.json")
        prof.export_chrome_trace(trace_path)
        with open(trace_path, encoding="utf-8") as f:
            events = json.load(f).get("traceEvents", [])
    allocations = sorted(
        (e["ts"], e["args"]["Bytes"])
        for e in events
        if e.get("name") == "[memory]" and e.get("args", {}).get("Device Type") == CPU_DEVICE_TYPE
    )
    held = peak = 0
    for _, nbytes in allocations:
        held += nbytes
        peak = max(peak, held)
    return peak


def cpu_memory_method() -> str:
    """Which CPU peak-memory measure :func:`cpu_forward_peak` uses here (checked on a known allocation):
    ``allocator`` where the profiler records allocations, else ``tensor storages``."""
    return (
        "allocator" if cpu_allocator_peak(lambda: torch.empty(2**20, dtype=torch.uint8)) >= 2**20 else "tensor storages"
    )


def cpu_forward_peak(fn: Callable[[], object]) -> int:
    """Peak CPU bytes allocated while ``fn()`` runs: allocator events if recorded, else :class:`TensorMemoryTracker`."""
    if cpu_memory_method() == "allocator":
        return cpu_allocator_peak(fn)
    with TensorMemoryTracker() as tracker:
        fn()
    return tracker.peak_bytes


def cuda_peak(fn: Callable[[], object], device: torch.device) -> int:
    """Peak bytes ``torch.cuda.max_memory_allocated`` reports while ``fn()`` runs, above the level at its start."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - before
