"""Peak memory of a piece of code, the one place that measures it (benchmarks and tests).

* :class:`TensorMemoryTracker` (any device): a ``TorchDispatchMode`` that watches every op; an op
  output whose storage is new (not shared with one of the op's inputs) counts as an allocation of
  ``storage.nbytes()`` until the last tracked tensor viewing that storage is garbage collected.
  Tensors that existed before the block (weights, inputs) are not counted. It misses temporaries
  that an op allocates and frees inside itself (e.g. convolution buffers) and memory allocated
  outside torch (malloc in C code, oneDNN scratch space), which is why the C scan kernel takes all
  its scratch space as tensors.
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
        self._live: dict[int, list[int]] = {}  # storage data_ptr -> [nbytes, tracked tensors alive]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        input_ptrs = {
            t.untyped_storage().data_ptr() for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)
        }
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t, input_ptrs)
        return out

    def _track(self, t: torch.Tensor, input_ptrs: set[int]) -> None:
        storage = t.untyped_storage()
        ptr, nbytes = storage.data_ptr(), storage.nbytes()
        if ptr == 0 or nbytes == 0:
            return
        entry = self._live.get(ptr)
        if entry is None:
            if ptr in input_ptrs:  # a view or in-place result of a tensor from outside the block
                return
            entry = self._live[ptr] = [nbytes, 0]
            self.current_bytes += nbytes
            self.peak_bytes = max(self.peak_bytes, self.current_bytes)
        entry[1] += 1
        weakref.finalize(t, self._release, ptr)

    def _release(self, ptr: int) -> None:
        entry = self._live.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._live[ptr]
            self.current_bytes -= entry[0]


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
