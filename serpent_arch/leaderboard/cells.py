"""What a leaderboard is made of: cells (a number and its footnotes), columns, rows and the table,
and how many decimals each metric is shown with."""

from __future__ import annotations

from dataclasses import dataclass, field

METRIC_DISPLAY_NAMES = {"psnr": "PSNR", "ssim": "SSIM", "lpips": "LPIPS", "niqe": "NIQE", "dists": "DISTS"}
PSNR_DECIMALS = 2
OTHER_METRIC_DECIMALS = 4  # LPIPS, NIQE, MS-SSIM ...: values near 0-1 need more than 2 decimals
MISSING = "-"


@dataclass
class Cell:
    """A number and the footnotes (texts; numbered when rendered) that qualify it."""

    value: float | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Column:
    """One dataset x metric column; ``metric`` is the key in the records' ``metrics``."""

    dataset: str
    metric: str

    @property
    def header(self) -> str:
        return f"{self.dataset} {METRIC_DISPLAY_NAMES.get(self.metric.lower(), self.metric)}"

    def decimals(self, ssim_decimals: int) -> int:
        """Decimals in the markdown: PSNR 2, SSIM ``ssim_decimals``, other metrics 4."""
        metric = self.metric.lower()
        return PSNR_DECIMALS if metric == "psnr" else ssim_decimals if metric == "ssim" else OTHER_METRIC_DECIMALS


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
