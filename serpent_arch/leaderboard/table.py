"""Building the leaderboard from the runs: the columns, one row per run and one input-baseline row
per group, the order within each group (``--sort-by``), and the footer."""

from __future__ import annotations

from serpent_arch.leaderboard.cells import Cell, Column, Row, Table
from serpent_arch.leaderboard.footer import closing_lines, reference_lines
from serpent_arch.leaderboard.gflops import DEFAULT_FLOPS_SIZE, FlopsCache
from serpent_arch.leaderboard.groups import Group, group_runs
from serpent_arch.leaderboard.references import References
from serpent_arch.leaderboard.runs import SELF_ENSEMBLE_FORWARDS, LeaderboardError, Run

METRIC_ORDER = ("psnr", "ssim")  # then every other metric, in the order it first appears
# Metrics where a smaller value is better: --sort-by puts their smallest first, as for params and FLOPs.
LOWER_IS_BETTER = {"lpips", "niqe", "dists", "fid", "brisque", "pi", "mse", "mae"}


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
            row.cells[column] = references.cell(run.records[column.dataset], column)
    return row


def baseline_row(group: Group, columns: list[Column], references: References) -> Row | None:
    """The input baseline of one group's runs, per dataset from the first run that follows the column
    references (the first run with a baseline at all when none does); None when no run has one."""
    row = Row(label=group.baseline_label, kind="baseline", runs=(), scale=group.scale)
    sources = []
    for dataset in dict.fromkeys(column.dataset for column in columns):
        candidates = [run for run in group.runs if (run.records.get(dataset) or {}).get("baseline")]
        preferred = [run for run in candidates if references.follows(run.records[dataset], dataset, columns)]
        if not candidates:
            continue
        source = (preferred or candidates)[0]
        sources.append(source.name)
        for column in columns:
            if column.dataset == dataset:
                row.cells[column] = references.cell(source.records[dataset], column, source="baseline")
    if not any(cell.value is not None for cell in row.cells.values()):
        return None
    row.runs = tuple(dict.fromkeys(sources))
    return row


def sort_key_column(name: str, columns: list[Column], with_flops: bool) -> str | Column:
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


def run_rows(
    group: Group,
    columns: list[Column],
    references: References,
    flops_size: tuple[int, int] | None,
    cache: FlopsCache,
    sort_column: str | Column | None,
    reverse: bool,
) -> list[Row]:
    """The rows of one group's runs, ordered by ``sort_column`` when given (else in folder-name order)."""
    rows = []
    for run in group.runs:
        gflops = cache.of_run(run, flops_size) if flops_size is not None else None
        rows.append(run_row(run, columns, references, gflops))
    return sort_rows(rows, sort_column, reverse) if sort_column is not None else rows


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

    Runs are grouped by :func:`~serpent_arch.leaderboard.groups.group_runs` (each group under its
    baseline row) and compared only within their group: x2 and x4 numbers differ by construction,
    the crop border usually follows the scale, and denoising at two noise levels reuses the dataset names.
    """
    columns = collect_columns(runs)
    sort_column = sort_key_column(sort_by, columns, flops_size is not None) if sort_by else None
    cache = flops_cache or FlopsCache()
    groups = group_runs(runs)
    mixed_scales = len({group.scale for group in groups}) > 1
    rows, footer, base_rows = [], [], []
    for group in groups:
        references = References.from_runs(group.runs, columns)
        baseline = baseline_row(group, columns, references) if baselines else None
        base_rows += [baseline] if baseline else []
        rows += [baseline] if baseline else []
        rows += run_rows(group, columns, references, flops_size, cache, sort_column, reverse)
        footer += reference_lines(columns, references, group.footer_name(mixed_scales))
    footer += closing_lines(runs, groups, base_rows, flops_size, ssim_decimals)
    return Table(rows, columns, footer, mixed_scales=mixed_scales, with_flops=flops_size is not None)
