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
  and counted by :func:`serpent_arch.benchmark.flops.count_flops` (torch's counter for matmuls and
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

Exit status: 0 when a table was written; 2 when the results folder is missing or holds no readable
``metrics.json`` (a malformed one is skipped with a warning naming it).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import sys
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

METRIC_DISPLAY_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "niqe": "NIQE", "dists": "DISTS"}
METRIC_ORDER = ("psnr", "ssim")  # then every other metric, in the order it first appears
# Metrics where a smaller value is better: --sort-by puts their smallest first, as for params and FLOPs.
LOWER_IS_BETTER = {"lpips", "niqe", "dists", "fid", "brisque", "pi", "mse", "mae"}
PSNR_DECIMALS = 2
OTHER_METRIC_DECIMALS = 4  # LPIPS, NIQE, MS-SSIM ...: values near 0-1 need more than 2 decimals
SELF_ENSEMBLE_FORWARDS = 8  # 4 rotations x 2 flips
# Input baselines of one dataset closer than this (relative; 0.06 dB at 30 dB) come from the same test
# inputs. Test inputs are made deterministically (DegradedImageDataset seeds from the image key), so
# the same inputs differ by float noise only, while noise levels or blur kernels apart differ by dBs.
SAME_INPUT_REL_TOL = 2e-3
DEFAULT_FLOPS_SIZE = (256, 256)
MISSING = "-"


class LeaderboardError(Exception):
    """A problem that leaves nothing to tabulate (exit status 2)."""


# ----------------------------------------------------------------------------------------- reading


@dataclass
class Run:
    """One ``results/<name>/metrics.json``: the records of one ``basicsr test`` run, by dataset."""

    name: str
    path: Path
    records: dict[str, dict]  # dataset name -> record, in the file's order

    @property
    def first(self) -> dict:
        # name, network, params, scale and self-ensemble are the same in every record of a run
        return next(iter(self.records.values()))

    @property
    def self_ensemble(self) -> bool:
        return bool(self.first.get("self_ensemble", False))

    @property
    def label(self) -> str:
        return self.name + ("+" if self.self_ensemble else "")

    @property
    def scale(self) -> int | None:
        scale = self.first.get("scale")
        return int(scale) if _is_number(scale) else None

    @property
    def params(self) -> int | None:
        params = self.first.get("params")
        return int(params) if _is_number(params) else None

    @property
    def network_opt(self) -> dict | None:
        network_opt = self.first.get("network_g")
        return network_opt if isinstance(network_opt, dict) and network_opt.get("type") else None


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _read_run(path: Path) -> tuple[Run | None, list[str]]:
    """The run in ``path`` (a metrics.json) and warnings; ``None`` when nothing in it is usable."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, [f"skipping {path}: not readable as JSON ({err})"]
    if not isinstance(content, dict):
        return None, [f"skipping {path}: expected an object {{dataset: record}}, got {type(content).__name__}"]
    records, problems = {}, []
    for key, record in content.items():
        if not (isinstance(record, dict) and isinstance(record.get("metrics"), dict)):
            problems.append(f"skipping dataset {key!r} in {path}: not a metrics record (no 'metrics' object)")
            continue
        records[str(record.get("dataset") or key)] = record
    if not records:
        return None, problems + [f"skipping {path}: no metrics records in it"]
    return Run(name=path.parent.name, path=path, records=records), problems


def load_runs(results_dir: Path, include_archived: bool = False) -> tuple[list[Run], list[str]]:
    """Every readable ``results_dir/*/metrics.json`` in folder-name order, and warnings.

    Raises :class:`LeaderboardError` when the folder is missing or no run can be read.
    """
    if not results_dir.is_dir():
        raise LeaderboardError(
            f"results folder {str(results_dir)!r} does not exist (`basicsr test -opt OPTIONS.yml` creates "
            "results/<name>/metrics.json)"
        )
    paths = sorted(results_dir.glob("*/metrics.json"))
    archived = [p for p in paths if "_archived_" in p.parent.name]
    messages = []
    if archived and not include_archived:
        paths = [p for p in paths if p not in archived]
        messages.append(
            f"left out {len(archived)} archived run(s) (folders BasicSR renamed NAME_archived_TIME when the "
            "run was repeated); --include-archived shows them"
        )
    if not paths:
        raise LeaderboardError(
            f"no metrics.json in any folder under {str(results_dir)!r} (expected RESULTS/*/metrics.json)"
        )
    runs = []
    for path in paths:
        run, problems = _read_run(path)
        messages += problems
        if run is not None:
            runs.append(run)
    if not runs:
        reasons = "".join(f"\n  {message}" for message in messages)
        raise LeaderboardError(f"no metrics.json under {str(results_dir)!r} could be read:{reasons}")
    return runs, messages


# ----------------------------------------------------------------------------------------- GFLOPs


def input_size(output_size: tuple[int, int], scale: int) -> tuple[int, int]:
    """The input whose ``scale``-times output is nearest ``output_size`` (x3 of 256 -> 85)."""
    return tuple(max(1, round(side / scale)) for side in output_size)


def count_network_gflops(network_opt: dict, size: tuple[int, int]) -> tuple[float, tuple[int, int]]:
    """GFLOPs of one forward of the BasicSR network ``network_opt`` (type + args) on an HxW input,
    and the input size actually counted.

    Networks with a ``window_size`` option (SwinIR and its kind) only take inputs that are a
    multiple of it; BasicSR's SwinIRModel pads the input up to one for testing, so the count does
    the same. Raises whatever building or counting raises; :class:`FlopsCache` makes that a footnote.
    """
    from serpent_arch.archs.build import NetworkOptionError, build_network, input_channels, network_class
    from serpent_arch.benchmark.flops import count_flops

    try:
        network_class(network_opt)
    except NetworkOptionError:  # a footnote, so without the registry's whole list
        name = network_opt.get("type")
        raise KeyError(f"{name} is not a registered BasicSR network (import the package that defines it)") from None
    window = network_opt.get("window_size")
    if isinstance(window, int) and window > 1:
        size = tuple(math.ceil(side / window) * window for side in size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constructor chatter would drown the table
        network = build_network(network_opt, meta=True)
        in_chans = input_channels(network_opt) or 3
        return count_flops(network, size, in_chans=in_chans).total / 1e9, size


@dataclass
class Cell:
    """A number and the footnotes (texts; numbered when rendered) that qualify it."""

    value: float | None = None
    notes: tuple[str, ...] = ()


@dataclass
class FlopsCache:
    """GFLOPs per distinct (network options, input size): runs of one network are counted once."""

    counted: dict[tuple[str, tuple[int, int]], Cell] = field(default_factory=dict)

    def gflops(self, network_opt: dict, size: tuple[int, int]) -> Cell:
        """One forward's GFLOPs at input ``size``, with a footnote where it was padded or not counted."""
        key = (json.dumps(network_opt, sort_keys=True, default=str), size)
        if key not in self.counted:
            arch_type = network_opt.get("type")
            try:
                gflops, counted_size = count_network_gflops(network_opt, size)
            except Exception as err:  # any network, any failure: a footnote, never a crash
                text = err.args[0] if isinstance(err, KeyError) and err.args else err  # KeyError's str quotes
                reason = str(text).strip().splitlines()[0] if str(text).strip() else ""
                failure = f"{type(err).__name__}: {reason[:160]}".rstrip(": ")
                self.counted[key] = Cell(None, (f"GFLOPs of {arch_type} not counted: {failure}",))
            else:
                notes = ()
                if counted_size != size:
                    notes = (
                        f"GFLOPs of {arch_type} counted at {_size_text(counted_size)} input: the input padded to a "
                        f"multiple of window_size {network_opt['window_size']}, as BasicSR tests it",
                    )
                self.counted[key] = Cell(gflops, notes)
        return self.counted[key]


# ----------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Column:
    """One dataset x metric column; ``metric`` is the key in the records' ``metrics``."""

    dataset: str
    metric: str

    @property
    def header(self) -> str:
        return f"{self.dataset} {METRIC_DISPLAY_NAMES.get(self.metric.lower(), self.metric)}"


@dataclass
class Row:
    """One line of the table: a run, or the input baseline at one scale."""

    label: str
    kind: str  # "run" or "baseline"
    runs: tuple[str, ...]  # the run folder(s) the numbers come from
    scale: int | None = None
    self_ensemble: bool = False
    network: str | None = None
    params: int | None = None
    gflops: Cell = field(default_factory=Cell)
    cells: dict[Column, Cell] = field(default_factory=dict)


@dataclass
class Table:
    """What the markdown and the CSV show; ``mixed_scales`` adds a Scale column to the markdown."""

    rows: list[Row]
    columns: list[Column]
    footer: list[str]
    mixed_scales: bool = False
    with_flops: bool = True


def describe_metric_options(metric: str, options: dict | None) -> str:
    """``Y channel, crop_border 4`` and any further option; what makes two numbers comparable."""
    if not isinstance(options, dict):
        return "metric options not recorded"
    parts = ["Y channel" if options.get("test_y_channel") else "RGB", f"crop_border {options.get('crop_border', 0)}"]
    metric_type = options.get("type")
    if metric_type and metric_type != f"calculate_{metric.lower()}":
        parts.insert(0, str(metric_type))
    named = ("type", "crop_border", "test_y_channel")
    parts += [f"{key}={options[key]}" for key in sorted(options) if key not in named]
    return ", ".join(parts)


def _metric_options(record: dict, metric: str) -> str:
    return describe_metric_options(metric, (record.get("metric_opts") or {}).get(metric))


def _most_common(values: list):
    """The value most rows used; ties go to the one seen first (Counter keeps first-seen order)."""
    return Counter(values).most_common(1)[0][0] if values else None


def collect_columns(runs: list[Run]) -> list[Column]:
    """Datasets in the order they first appear; per dataset PSNR, SSIM, then other metrics."""
    metrics_by_dataset: dict[str, list[str]] = {}
    for run in runs:
        for dataset, record in run.records.items():
            seen = metrics_by_dataset.setdefault(dataset, [])
            seen += [metric for metric in record["metrics"] if metric not in seen]
    columns = []
    for dataset, metrics in metrics_by_dataset.items():
        ordered = sorted(metrics, key=lambda m: METRIC_ORDER.index(m.lower()) if m.lower() in METRIC_ORDER else 2)
        columns += [Column(dataset, metric) for metric in ordered]
    return columns


@dataclass
class References:
    """What most rows used, per dataset (image count) and per column (metric options)."""

    num_images: dict[str, int]
    metric_options: dict[Column, str]

    @classmethod
    def from_runs(cls, runs: list[Run], columns: list[Column]) -> References:
        counts: dict[str, list[int]] = {}
        for run in runs:
            for dataset, record in run.records.items():
                if _is_number(record.get("num_images")):
                    counts.setdefault(dataset, []).append(int(record["num_images"]))
        options = {
            column: _most_common(
                [
                    _metric_options(run.records[column.dataset], column.metric)
                    for run in runs
                    if column.metric in run.records.get(column.dataset, {}).get("metrics", {})
                ]
            )
            for column in columns
        }
        return cls({dataset: _most_common(values) for dataset, values in counts.items()}, options)

    def notes_for(self, record: dict, column: Column) -> tuple[str, ...]:
        """Footnote texts for a cell of ``column`` measured as ``record`` says; empty when comparable."""
        notes = []
        options = _metric_options(record, column.metric)
        if options != self.metric_options.get(column):
            notes.append(f"{column.header}: {options} (rest of the column: {self.metric_options[column]})")
        num_images, reference = record.get("num_images"), self.num_images.get(column.dataset)
        if _is_number(num_images) and reference is not None and int(num_images) != reference:
            notes.append(f"{column.dataset}: {int(num_images)} images (most rows: {reference})")
        return tuple(notes)

    def follows(self, record: dict, dataset: str, columns: list[Column]) -> bool:
        return not any(self.notes_for(record, column) for column in columns if column.dataset == dataset)


def _cell(record: dict, column: Column, references: References, source: str = "metrics") -> Cell:
    value = (record.get(source) or {}).get(column.metric)
    if not _is_number(value):
        return Cell()
    return Cell(float(value), references.notes_for(record, column))


def run_row(run: Run, columns: list[Column], references: References, gflops: Cell | None) -> Row:
    """The row of one run; ``gflops`` is one forward's count (None when GFLOPs are left out)."""
    row = Row(
        label=run.label,
        kind="run",
        runs=(run.name,),
        scale=run.scale,
        self_ensemble=run.self_ensemble,
        network=(run.network_opt or {}).get("type") or run.first.get("network"),
        params=run.params,
    )
    if gflops is not None and gflops.value is not None:
        row.gflops = Cell(gflops.value * (SELF_ENSEMBLE_FORWARDS if run.self_ensemble else 1), gflops.notes)
    elif gflops is not None:
        row.gflops = gflops
    for column in columns:
        if column.dataset in run.records:
            row.cells[column] = _cell(run.records[column.dataset], column, references)
    return row


def baseline_label(scale: int | None) -> str:
    return "Input (degraded)" if scale == 1 else f"Bicubic ×{scale}" if scale else "Input baseline"


def baseline_row(
    runs: list[Run], label: str, scale: int | None, columns: list[Column], references: References
) -> Row | None:
    """The input baseline of one scale's runs, per dataset from the first run that follows the column
    references (the first run with a baseline at all when none does); None when no run has one."""
    row = Row(label=label, kind="baseline", runs=(), scale=scale)
    sources = []
    for dataset in dict.fromkeys(column.dataset for column in columns):
        candidates = [run for run in runs if (run.records.get(dataset) or {}).get("baseline")]
        preferred = [run for run in candidates if references.follows(run.records[dataset], dataset, columns)]
        if not candidates:
            continue
        source = (preferred or candidates)[0]
        sources.append(source.name)
        for column in columns:
            if column.dataset == dataset:
                row.cells[column] = _cell(source.records[dataset], column, references, source="baseline")
    if not any(cell.value is not None for cell in row.cells.values()):
        return None
    row.runs = tuple(dict.fromkeys(sources))
    return row


def _sort_key_column(name: str, columns: list[Column], with_flops: bool) -> str | Column:
    """The column ``--sort-by`` names (case-insensitive): 'Params', 'GFLOPs' or a dataset metric."""
    wanted = name.strip().lower()
    if wanted in ("params", "params (m)"):
        return "params"
    if with_flops and wanted == "gflops":
        return "gflops"
    for column in columns:
        if column.header.lower() == wanted:
            return column
    known = ["Params", *(["GFLOPs"] if with_flops else []), *(c.header for c in columns)]
    raise LeaderboardError(f"--sort-by {name!r}: no such column; the columns are {', '.join(known)}")


def sort_rows(rows: list[Row], key: str | Column, reverse: bool = False) -> list[Row]:
    """Best first: larger for quality metrics, smaller for params, FLOPs and LOWER_IS_BETTER metrics;
    rows without a value last, ``reverse`` flips the order of the others."""

    def value(row: Row) -> float | None:
        if key == "params":
            return row.params
        if key == "gflops":
            return row.gflops.value
        cell = row.cells.get(key)
        return cell.value if cell else None

    smaller_first = key in ("params", "gflops") or (isinstance(key, Column) and key.metric.lower() in LOWER_IS_BETTER)
    descending = not smaller_first
    if reverse:
        descending = not descending
    with_value = sorted((r for r in rows if value(r) is not None), key=value, reverse=descending)
    return with_value + [r for r in rows if value(r) is None]


def _size_text(size: tuple[int, int]) -> str:
    return f"{size[0]}×{size[1]}"


def _same_input(run: Run, other: Run) -> bool:
    """False when the runs scored a dataset of the same name, measured the same way, with different
    input baselines: they were tested on different inputs (noise level 15 against 50, another blur
    kernel) under one dataset name, and their numbers must not share a group."""
    for dataset in run.records.keys() & other.records.keys():
        mine, theirs = run.records[dataset], other.records[dataset]
        if (mine.get("metric_opts"), mine.get("num_images")) != (theirs.get("metric_opts"), theirs.get("num_images")):
            continue  # measured differently: the baselines cannot tell, the convention footnotes do
        mine, theirs = mine.get("baseline") or {}, theirs.get("baseline") or {}
        for metric in mine.keys() & theirs.keys():
            if _is_number(mine[metric]) and _is_number(theirs[metric]):
                if not math.isclose(mine[metric], theirs[metric], rel_tol=SAME_INPUT_REL_TOL):
                    return False
    return True


def group_runs(runs: list[Run]) -> list[list[Run]]:
    """Runs that can be compared: same scale and same test inputs (see :func:`_same_input`);
    smallest scale first, then in the order of the runs."""
    groups: list[list[Run]] = []
    for run in runs:
        group = next(
            (g for g in groups if g[0].scale == run.scale and all(_same_input(run, other) for other in g)), None
        )
        if group is None:
            groups.append([run])
        else:
            group.append(run)
    return sorted(groups, key=lambda g: (g[0].scale is None, g[0].scale or 0))


def build_table(
    runs: list[Run],
    *,
    flops_size: tuple[int, int] | None = DEFAULT_FLOPS_SIZE,
    ssim_decimals: int = 4,
    sort_by: str | None = None,
    reverse: bool = False,
    baselines: bool = True,
    flops_cache: FlopsCache | None = None,
) -> Table:
    """The rows, columns and footer of the leaderboard; ``flops_size=None`` leaves GFLOPs out.

    Runs are grouped by :func:`group_runs` (each group under its baseline row) and compared only
    within their group: x2 and x4 numbers differ by construction, the crop border usually follows
    the scale, and denoising at two noise levels reuses the dataset names.
    """
    columns = collect_columns(runs)
    sort_column = _sort_key_column(sort_by, columns, flops_size is not None) if sort_by else None
    cache = flops_cache or FlopsCache()
    groups = group_runs(runs)
    scales = list(dict.fromkeys(group[0].scale for group in groups))
    split_inputs = [scale for scale in scales if sum(group[0].scale == scale for group in groups) > 1]

    rows, footer, base_rows = [], [], []
    for group in groups:
        scale = group[0].scale
        references = References.from_runs(group, columns)
        group_rows = []
        for run in group:
            gflops = None
            if flops_size is not None:
                if run.network_opt is None or run.scale is None:
                    missing = "network_g" if run.network_opt is None else "scale"
                    gflops = Cell(None, (f"GFLOPs of {run.name} not counted: its record has no {missing}",))
                else:
                    gflops = cache.gflops(run.network_opt, input_size(flops_size, run.scale))
            group_rows.append(run_row(run, columns, references, gflops))
        if sort_column is not None:
            group_rows = sort_rows(group_rows, sort_column, reverse)
        label = baseline_label(scale) + (f", input of {group[0].name}" if scale in split_inputs else "")
        baseline = baseline_row(group, label, scale, columns, references) if baselines else None
        if baseline is not None:
            base_rows.append(baseline)
        rows += ([baseline] if baseline else []) + group_rows
        which = f" ×{scale}" if len(scales) > 1 and scale else ""
        which += f" (input of {group[0].name})" if scale in split_inputs else ""
        footer += [
            line
            for dataset in dict.fromkeys(c.dataset for c in columns)
            if (line := _reference_line(dataset, columns, references, which))
        ]

    footer.append(
        f"PSNR in dB with {PSNR_DECIMALS} decimals, SSIM with {ssim_decimals}, other metrics with "
        f"{OTHER_METRIC_DECIMALS}; full values in the CSV. `{MISSING}`: not measured."
    )
    for scale in split_inputs:
        footer.append(
            f"The ×{scale} runs were tested on different inputs under the same dataset names (their input "
            "baselines differ, e.g. two noise levels): each group of runs is listed under its own input row."
        )
    if flops_size is not None:
        footer.append(_flops_line(flops_size, [scale for scale in scales if scale]))
    if any(run.self_ensemble for run in runs):
        footer.append(
            f"`+`: self-ensemble (the {SELF_ENSEMBLE_FORWARDS} flips and rotations of each input, averaged); "
            f"their GFLOPs are {SELF_ENSEMBLE_FORWARDS}× one forward."
        )
    if base_rows:
        sources = "; ".join(f"{row.label} from {', '.join(row.runs)}" for row in base_rows)
        footer.append(
            f"{' / '.join(row.label for row in base_rows)}: the network's input scored with the same metrics "
            f"(bicubically upsampled to the output size for SR), as measured by the test runs ({sources})."
        )
    return Table(rows, columns, footer, mixed_scales=len(scales) > 1, with_flops=flops_size is not None)


def _reference_line(dataset: str, columns: list[Column], references: References, group: str = "") -> str:
    """``Set5 (5 images): PSNR, SSIM: Y channel, crop_border 4``; empty when the group lacks the dataset."""
    by_options: dict[str, list[str]] = {}
    for column in columns:
        if column.dataset == dataset and references.metric_options.get(column) is not None:
            by_options.setdefault(references.metric_options[column], []).append(column.header.split(" ")[-1])
    if not by_options:
        return ""
    count = references.num_images.get(dataset)
    images = f" ({count} images)" if count is not None else ""
    described = "; ".join(f"{', '.join(names)}: {text}" for text, names in by_options.items())
    return f"{dataset}{group}{images}: {described}"


def _flops_line(size: tuple[int, int], scales: list[int]) -> str:
    inputs = []
    for scale in scales:
        lr = input_size(size, scale)
        produced = (lr[0] * scale, lr[1] * scale)
        exact = "" if produced == size else f", i.e. {_size_text(produced)} output"
        inputs.append(f"{_size_text(lr)} input for ×{scale}{exact}")
    where = f" ({'; '.join(inputs)})" if inputs else ""
    return (
        f"GFLOPs: one forward at {_size_text(size)} output{where}, counted on the meta device by "
        "serpent_arch.benchmark.flops (matmuls and convolutions, a multiply-add = 2 FLOPs, plus the "
        "selective scan)."
    )


# ----------------------------------------------------------------------------------------- output


def _decimals(column: Column, ssim_decimals: int) -> int:
    metric = column.metric.lower()
    return PSNR_DECIMALS if metric == "psnr" else ssim_decimals if metric == "ssim" else OTHER_METRIC_DECIMALS


class FootnoteNumbers:
    """Numbers footnote texts in the order the table first shows them, one number per text."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def markers(self, notes: tuple[str, ...]) -> str:
        numbers = [self.numbers.setdefault(note, len(self.numbers) + 1) for note in notes]
        return f" [{','.join(map(str, numbers))}]" if numbers else ""


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(table: Table, ssim_decimals: int = 4) -> str:
    """The table, its conventions and its numbered footnotes as GitHub markdown."""
    footnotes = FootnoteNumbers()
    scale_column = ["Scale"] if table.mixed_scales else []
    flops_column = ["GFLOPs"] if table.with_flops else []
    headers = ["Model", *scale_column, "Params (M)", *flops_column, *(c.header for c in table.columns)]
    lines = ["| " + " | ".join(map(_md_escape, headers)) + " |", "|:---|" + "---:|" * (len(headers) - 1)]
    for row in table.rows:
        cells = [_md_escape(row.label)]
        if table.mixed_scales:
            cells.append(f"×{row.scale}" if row.scale else MISSING)
        cells.append(f"{row.params / 1e6:.2f}" if row.params is not None else MISSING)
        if table.with_flops:
            value = f"{row.gflops.value:.2f}" if row.gflops.value is not None else MISSING
            cells.append(value + footnotes.markers(row.gflops.notes))
        for column in table.columns:
            cell = row.cells.get(column, Cell())
            value = f"{cell.value:.{_decimals(column, ssim_decimals)}f}" if cell.value is not None else MISSING
            cells.append(value + footnotes.markers(cell.notes))
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines += [f"- {line}" for line in table.footer]
    lines += [f"- [{number}] {_md_escape(text)}" for text, number in footnotes.numbers.items()]
    return "\n".join(lines) + "\n"


def write_csv(table: Table, path: Path) -> None:
    """Full-precision values, one row per table row; empty where the markdown has ``-``.

    Columns: model, kind (run | baseline), runs, network, scale, self_ensemble, params (a count),
    gflops (as in the table, 8x for self-ensemble rows), one column per dataset metric (headers as
    in the markdown), notes (the row's footnotes, ``; ``-separated).
    """
    fixed = ["model", "kind", "runs", "network", "scale", "self_ensemble", "params"] + ["gflops"] * table.with_flops
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow([*fixed, *(c.header for c in table.columns), "notes"])
        for row in table.rows:
            cells = [row.cells.get(column, Cell()) for column in table.columns]
            notes = list(row.gflops.notes) if table.with_flops else []
            for cell in cells:
                notes += [note for note in cell.notes if note not in notes]
            values = [row.label, row.kind, " ".join(row.runs), row.network or "", row.scale or ""]
            values += [row.self_ensemble if row.kind == "run" else "", "" if row.params is None else row.params]
            if table.with_flops:
                values.append("" if row.gflops.value is None else repr(row.gflops.value))
            values += ["" if cell.value is None else repr(cell.value) for cell in cells]
            writer.writerow([*values, "; ".join(notes)])


# ----------------------------------------------------------------------------------------- CLI


def parse_size(text: str) -> tuple[int, int]:
    """``256x256``, ``256×256`` or ``256`` -> (H, W)."""
    match = re.fullmatch(r"\s*(\d+)\s*(?:[x×X]\s*(\d+))?\s*", text)
    if not match or int(match.group(1)) < 1 or (match.group(2) and int(match.group(2)) < 1):
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 256x256, got {text!r}")
    height = int(match.group(1))
    return height, int(match.group(2) or height)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="basicsr leaderboard",
        description="Collect the metrics.json of every `basicsr test` run under RESULTS into one table "
        "(markdown on stdout and in RESULTS/leaderboard.md, full values in RESULTS/leaderboard.csv).",
    )
    parser.add_argument(
        "results", nargs="?", default="results", type=Path, metavar="RESULTS", help="results folder (default results)"
    )
    parser.add_argument("--out-md", type=Path, metavar="PATH", help="markdown file (default RESULTS/leaderboard.md)")
    parser.add_argument("--out-csv", type=Path, metavar="PATH", help="CSV file (default RESULTS/leaderboard.csv)")
    parser.add_argument(
        "--sort-by",
        metavar="COLUMN",
        help="order the runs of each scale by a column, best first, e.g. 'Set5 PSNR', 'Params' or 'GFLOPs' "
        "(default: folder name order)",
    )
    parser.add_argument("--reverse", action="store_true", help="with --sort-by: worst first")
    parser.add_argument(
        "--flops-size",
        type=parse_size,
        default=DEFAULT_FLOPS_SIZE,
        metavar="HxW",
        help="output size at which GFLOPs are counted; the input is HxW divided by the scale (default 256x256)",
    )
    parser.add_argument("--no-flops", action="store_true", help="leave the GFLOPs column out (no network is built)")
    parser.add_argument(
        "--ssim-decimals", type=int, default=4, metavar="N", help="decimals of SSIM in the markdown (default 4)"
    )
    parser.add_argument("--no-baseline", action="store_true", help="hide the bicubic / degraded-input rows")
    parser.add_argument(
        "--include-archived", action="store_true", help="also show runs BasicSR renamed NAME_archived_TIME"
    )
    return parser


def main(argv: list[str]) -> int:
    """Run the command; returns the exit status (0 written, 2 nothing to tabulate or bad flags)."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # -h and usage errors: argparse has printed the message
        return exit_.code if isinstance(exit_.code, int) else 2
    if args.ssim_decimals < 0:
        print("basicsr leaderboard: error: --ssim-decimals must be 0 or more", file=sys.stderr)
        return 2
    results: Path = args.results
    try:
        runs, messages = load_runs(results, include_archived=args.include_archived)
        for message in messages:
            print(f"basicsr leaderboard: warning: {message}", file=sys.stderr)
        with_flops = not args.no_flops
        table = build_table(
            runs,
            flops_size=args.flops_size if with_flops else None,
            ssim_decimals=args.ssim_decimals,
            sort_by=args.sort_by,
            reverse=args.reverse,
            baselines=not args.no_baseline,
        )
    except LeaderboardError as err:
        print(f"basicsr leaderboard: error: {err}", file=sys.stderr)
        return 2
    if args.sort_by:
        column = _sort_key_column(args.sort_by, table.columns, with_flops)
        if isinstance(column, Column) and any(r.cells.get(column, Cell()).notes for r in table.rows if r.kind == "run"):
            print(
                f"basicsr leaderboard: warning: {column.header} mixes measuring conventions (see the footnotes); "
                "the order compares numbers that are not comparable",
                file=sys.stderr,
            )

    markdown = render_markdown(table, args.ssim_decimals)
    md_path = args.out_md or results / "leaderboard.md"
    csv_path = args.out_csv or results / "leaderboard.csv"
    for path in (md_path, csv_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown, encoding="utf-8")
    write_csv(table, csv_path)
    print(markdown, end="")
    print(f"wrote {md_path} and {csv_path}", file=sys.stderr)
    return 0

