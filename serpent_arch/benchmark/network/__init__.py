"""Network efficiency benchmark: params, GFLOPs, peak memory and latency of full-size restoration.

Run ``python -m serpent_arch.benchmark network [--sizes 128 256 512 1024] [--device cpu|cuda]
[--amp bf16] [--quick] [--out results/benchmarks/]``. Every (network, size) pair restores one
RGB image of HxW to HxW (batch 1, deblurring setting) and reports:

* params (M): trainable and frozen parameters.
* GFLOPs: one forward pass, counted by :mod:`serpent_arch.measure.flops` (torch's
  ``FlopCounterMode`` for matmuls/convolutions, 2 FLOPs per multiply-accumulate, plus a formula for
  the selective scan, which the counter cannot see).
* Peak memory: torch has no CPU ``max_memory_allocated``, so on CPU it is the peak, above the
  level at the start, of the bytes held through torch's CPU allocator during one
  ``torch.no_grad()`` forward, read from the profiler's allocation events; where they are not
  recorded, the peak of live tensor storages tracked op by op (which misses temporaries allocated
  inside an op): both in :mod:`serpent_arch.measure.memory`. On CUDA,
  ``torch.cuda.max_memory_allocated`` minus what was allocated before the forward. "act." is that
  forward peak; "total" adds the weights, buffers and the input.
* Latency: median wall time of ``--repeats`` forwards after one warm-up (CUDA: CUDA events).

Rows whose forward would be too expensive here (``--max-gflops``, or a memory forecast above what
the machine has free) are not run: FLOPs are still counted exactly (the count runs on the meta
device), peak memory is extrapolated linearly in pixels and latency in FLOPs from the largest
measured size of the same network, and the row is marked ``extrapolated``.

Modules, one job each: ``contenders`` (the compared networks), ``measurement`` (memory, latency,
extrapolation), ``report`` (table, summary, md / csv / png), ``cli`` (flags and the run). Peak
memory itself is measured by :mod:`serpent_arch.measure.memory`.
"""

from serpent_arch.benchmark.network.cli import build_parser, main
from serpent_arch.benchmark.network.contenders import NETWORKS, build_rrdbnet, build_serpent, build_swinir
from serpent_arch.benchmark.network.measurement import Row, benchmark_network, measure
from serpent_arch.benchmark.network.report import environment_lines, format_row, plot, summary_lines, write_outputs

__all__ = [
    "NETWORKS",
    "Row",
    "benchmark_network",
    "build_parser",
    "build_rrdbnet",
    "build_serpent",
    "build_swinir",
    "environment_lines",
    "format_row",
    "main",
    "measure",
    "plot",
    "summary_lines",
    "write_outputs",
]
