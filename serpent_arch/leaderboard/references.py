"""Comparability within a group of runs: the conventions most rows used (image count per dataset,
metric options per column) are the reference, and a cell measured otherwise carries a footnote."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from serpent_arch.leaderboard.cells import Cell, Column
from serpent_arch.leaderboard.runs import Run, is_number


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
                if is_number(record.get("num_images")):
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
        if is_number(num_images) and reference is not None and int(num_images) != reference:
            notes.append(f"{column.dataset}: {int(num_images)} images (most rows: {reference})")
        return tuple(notes)

    def follows(self, record: dict, dataset: str, columns: list[Column]) -> bool:
        return not any(self.notes_for(record, column) for column in columns if column.dataset == dataset)

    def cell(self, record: dict, column: Column, source: str = "metrics") -> Cell:
        """The value of ``column`` in ``record[source]`` (the run's metrics or its input baseline) and
        its footnotes; an empty cell when the record has no number there."""
        value = (record.get(source) or {}).get(column.metric)
        if not is_number(value):
            return Cell()
        return Cell(float(value), self.notes_for(record, column))

    def line(self, dataset: str, columns: list[Column], group: str = "") -> str:
        """``Set5 (5 images): PSNR, SSIM: Y channel, crop_border 4``; empty when the group lacks the dataset."""
        by_options: dict[str, list[str]] = {}
        for column in columns:
            if column.dataset == dataset and self.metric_options.get(column) is not None:
                by_options.setdefault(self.metric_options[column], []).append(column.header.split(" ")[-1])
        if not by_options:
            return ""
        count = self.num_images.get(dataset)
        images = f" ({count} images)" if count is not None else ""
        described = "; ".join(f"{', '.join(names)}: {text}" for text, names in by_options.items())
        return f"{dataset}{group}{images}: {described}"
