"""``basicsr leaderboard``: the metrics of every test run under ``results/`` in one table.

    basicsr leaderboard [RESULTS] [--out-md PATH] [--out-csv PATH] [--sort-by COLUMN] [--reverse]
                        [--flops-size HxW] [--no-flops] [--ssim-decimals N] [--no-baseline]
                        [--include-archived]

``basicsr test`` writes ``RESULTS/<run>/metrics.json`` (``{dataset: record}``, see
:meth:`serpent_arch.models.serpent_model.SerpentModel._write_metrics`). This command reads all of
them and prints one markdown table, also written to ``RESULTS/leaderboard.md``, with the full
values in ``RESULTS/leaderboard.csv`` for re-analysis.

Conventions (printed in the table's footer where they apply):

* One row per run folder, labelled with the folder name; ``+`` is appended when the run used
  self-ensemble (the "+" results of papers). Folders BasicSR renamed when a run was repeated
  (``NAME_archived_TIMESTAMP``) are left out unless ``--include-archived``.
* Columns: ``Params (M)`` (2 decimals), ``GFLOPs``, then one column per dataset and metric,
  datasets in the order they first appear (run folders in name order, datasets in file order),
  PSNR first, SSIM second, other metrics after. PSNR has 2 decimals and SSIM 4 (``--ssim-decimals``),
  as super-resolution papers print them; other metrics (LPIPS, ...) 4. ``-`` is a missing cell.
* GFLOPs: the network is rebuilt from the record's ``network_g`` through BasicSR's
  ``ARCH_REGISTRY`` (on the ``meta`` device when its constructor allows, so nothing is computed)
  and counted by :func:`serpent_arch.measure.flops.count_flops` (torch's counter for matmuls and
  convolutions, 2 FLOPs per multiply-add, plus Serpent's selective scan) for one forward producing
  a ``--flops-size`` output (default 256x256, i.e. a 64x64 input at x4). Self-ensemble rows show
  8x that, the cost of the numbers in their row. Networks with a ``window_size`` option are counted
  at the input padded to a multiple of it, as BasicSR tests them (footnoted). A network that cannot
  be rebuilt or counted gets ``-`` and a footnote saying why.
* Groups: runs of different scales are grouped, smallest scale first, with a ``Scale`` column, and
  compared only within their group (x2 and x4 numbers differ by construction, and the crop border
  usually follows the scale). Runs of one scale whose input baselines differ on a dataset of the
  same name were tested on different inputs (denoising at noise levels 15 and 50 uses the same
  set names) and form groups of their own, each under its own input row.
* Comparability: within a group, the image count of each dataset and the metric options (Y channel
  or RGB, crop border, ...) of each column that most rows used are the reference, stated in the
  footer. A cell measured otherwise keeps its column but carries a numbered footnote marker,
  ``32.71 [1]``, explaining the difference, so numbers that cannot be compared are never silently
  side by side.
* Baselines: when records carry the input baseline that ``SerpentModel`` measures, one row per
  group shows it above that group's runs (``Bicubic ×4``; ``Input (degraded)`` at scale 1), taken
  per dataset from the first run of the group that follows the reference conventions
  (``--no-baseline`` hides these rows). ``--sort-by`` orders the runs within each group, best
  first (smallest for params, GFLOPs, LPIPS and the like); baseline rows stay on top.

The package, one job per module: :mod:`~serpent_arch.leaderboard.runs` reads the metrics.json files,
:mod:`~serpent_arch.leaderboard.gflops` counts the networks' FLOPs (once per network and size),
:mod:`~serpent_arch.leaderboard.groups` decides which runs are compared,
:mod:`~serpent_arch.leaderboard.references` their reference conventions and cell footnotes,
:mod:`~serpent_arch.leaderboard.table` builds the rows and columns (of the types in
:mod:`~serpent_arch.leaderboard.cells`), :mod:`~serpent_arch.leaderboard.footer` the lines under them,
:mod:`~serpent_arch.leaderboard.render` writes markdown and CSV, and
:mod:`~serpent_arch.leaderboard.cli` holds the flags and :func:`main`.

Exit status: 0 when a table was written; 2 when the results folder is missing or holds no readable
``metrics.json`` (a malformed one is skipped with a warning naming it).
"""

from serpent_arch.leaderboard.cells import Cell, Column, Row, Table
from serpent_arch.leaderboard.cli import build_parser, main, parse_size
from serpent_arch.leaderboard.gflops import DEFAULT_FLOPS_SIZE, FlopsCache, count_network_gflops, input_size
from serpent_arch.leaderboard.render import render_markdown, write_csv
from serpent_arch.leaderboard.runs import LeaderboardError, Run, load_runs
from serpent_arch.leaderboard.table import build_table

__all__ = [
    "DEFAULT_FLOPS_SIZE",
    "Cell",
    "Column",
    "FlopsCache",
    "LeaderboardError",
    "Row",
    "Run",
    "Table",
    "build_parser",
    "build_table",
    "count_network_gflops",
    "input_size",
    "load_runs",
    "main",
    "parse_size",
    "render_markdown",
    "write_csv",
]
