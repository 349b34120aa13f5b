"""Writing a :class:`~serpent_arch.leaderboard.cells.Table`: GitHub markdown (rounded, with numbered
footnotes) and CSV (full precision, one row per table row)."""

from __future__ import annotations

import csv
from pathlib import Path

from serpent_arch.leaderboard.cells import MISSING, Cell, Row, Table


class FootnoteNumbers:
    """Numbers footnote texts in the order the table first shows them, one number per text."""

    def __init__(self) -> None:
        self.numbers: dict[str, int] = {}

    def markers(self, notes: tuple[str, ...]) -> str:
        numbers = [self.numbers.setdefault(note, len(self.numbers) + 1) for note in notes]
        return f" [{','.join(map(str, numbers))}]" if numbers else ""


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown_header(table: Table) -> list[str]:
    scale_column = ["Scale"] if table.mixed_scales else []
    flops_column = ["GFLOPs"] if table.with_flops else []
    headers = ["Model", *scale_column, "Params (M)", *flops_column, *(c.header for c in table.columns)]
    return ["| " + " | ".join(map(_md_escape, headers)) + " |", "|:---|" + "---:|" * (len(headers) - 1)]


def _markdown_row(row: Row, table: Table, footnotes: FootnoteNumbers, ssim_decimals: int) -> str:
    """``| label | ×4 | 0.33 | 1.09 | 32.71 [1] |``: rounded values, ``-`` where missing, footnote markers."""
    cells = [_md_escape(row.label)]
    if table.mixed_scales:
        cells.append(f"×{row.scale}" if row.scale else MISSING)
    cells.append(f"{row.params / 1e6:.2f}" if row.params is not None else MISSING)
    if table.with_flops:
        value = f"{row.gflops.value:.2f}" if row.gflops.value is not None else MISSING
        cells.append(value + footnotes.markers(row.gflops.notes))
    for column in table.columns:
        cell = row.cells.get(column, Cell())
        value = f"{cell.value:.{column.decimals(ssim_decimals)}f}" if cell.value is not None else MISSING
        cells.append(value + footnotes.markers(cell.notes))
    return "| " + " | ".join(cells) + " |"


def render_markdown(table: Table, ssim_decimals: int = 4) -> str:
    """The table, its conventions and its numbered footnotes as GitHub markdown."""
    footnotes = FootnoteNumbers()
    lines = _markdown_header(table)
    lines += [_markdown_row(row, table, footnotes, ssim_decimals) for row in table.rows]
    lines.append("")
    lines += [f"- {line}" for line in table.footer]
    lines += [f"- [{number}] {_md_escape(text)}" for text, number in footnotes.numbers.items()]
    return "\n".join(lines) + "\n"


def _csv_row(row: Row, table: Table) -> list:
    """The values of one row at full precision (``repr`` of the floats), then its footnotes."""
    cells = [row.cells.get(column, Cell()) for column in table.columns]
    notes = list(row.gflops.notes) if table.with_flops else []
    for cell in cells:
        notes += [note for note in cell.notes if note not in notes]
    values = [row.label, row.kind, " ".join(row.runs), row.network or "", row.scale or ""]
    values += [row.self_ensemble if row.kind == "run" else "", "" if row.params is None else row.params]
    if table.with_flops:
        values.append("" if row.gflops.value is None else repr(row.gflops.value))
    values += ["" if cell.value is None else repr(cell.value) for cell in cells]
    return [*values, "; ".join(notes)]


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
        writer.writerows(_csv_row(row, table) for row in table.rows)
