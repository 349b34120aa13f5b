"""Peak memory of the tensors a piece of code allocates, for the scan benchmark and tests.

Python-level tools (tracemalloc) do not see tensor storage, RSS deltas are dominated by allocator
caching and noise, and torch has no CPU allocator statistics. :class:`TensorMemoryTracker` instead
watches every op through a ``TorchDispatchMode``: an op output whose storage is new (not shared
with one of the op's inputs) counts as an allocation of ``storage.nbytes()`` until the last
tracked tensor viewing that storage is garbage collected. The peak of that running total is the
peak memory of torch tensors created inside the block; tensors that existed before (the inputs)
are not counted. Memory allocated outside torch (e.g. malloc in C code) is invisible, which is
why the C kernel takes all its scratch space as torch tensors.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


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
