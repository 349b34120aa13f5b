"""The footer of the table: the reference conventions of each group, then the lines that explain
the decimals, split inputs, GFLOPs, self-ensemble and baseline rows where the table has them."""

from __future__ import annotations

from serpent_arch.leaderboard.cells import MISSING, OTHER_METRIC_DECIMALS, PSNR_DECIMALS, Column, Row
from serpent_arch.leaderboard.gflops import input_size, size_text
from serpent_arch.leaderboard.groups import Group, split_input_scales
from serpent_arch.leaderboard.references import References
from serpent_arch.leaderboard.runs import SELF_ENSEMBLE_FORWARDS, Run


def reference_lines(columns: list[Column], references: References, group_name: str) -> list[str]:
    """One line per dataset the group scored: its image count and metric options (see References.line)."""
    datasets = dict.fromkeys(column.dataset for column in columns)
    return [line for dataset in datasets if (line := references.line(dataset, columns, group_name))]


def _decimals_line(ssim_decimals: int) -> str:
    return (
        f"PSNR in dB with {PSNR_DECIMALS} decimals, SSIM with {ssim_decimals}, other metrics with "
        f"{OTHER_METRIC_DECIMALS}; full values in the CSV. `{MISSING}`: not measured."
    )


def _split_input_line(scale: int | None) -> str:
    return (
        f"The ×{scale} runs were tested on different inputs under the same dataset names (their input "
        "baselines differ, e.g. two noise levels): each group of runs is listed under its own input row."
    )


def _flops_line(size: tuple[int, int], scales: list[int]) -> str:
    inputs = []
    for scale in scales:
        lr = input_size(size, scale)
        produced = (lr[0] * scale, lr[1] * scale)
        exact = "" if produced == size else f", i.e. {size_text(produced)} output"
        inputs.append(f"{size_text(lr)} input for ×{scale}{exact}")
    where = f" ({'; '.join(inputs)})" if inputs else ""
    return (
        f"GFLOPs: one forward at {size_text(size)} output{where}, counted on the meta device by "
        "serpent_arch.measure.flops (matmuls and convolutions, a multiply-add = 2 FLOPs, plus the "
        "selective scan)."
    )


def _self_ensemble_line() -> str:
    return (
        f"`+`: self-ensemble (the {SELF_ENSEMBLE_FORWARDS} flips and rotations of each input, averaged); "
        f"their GFLOPs are {SELF_ENSEMBLE_FORWARDS}× one forward."
    )


def _baselines_line(base_rows: list[Row]) -> str:
    sources = "; ".join(f"{row.label} from {', '.join(row.runs)}" for row in base_rows)
    return (
        f"{' / '.join(row.label for row in base_rows)}: the network's input scored with the same metrics "
        f"(bicubically upsampled to the output size for SR), as measured by the test runs ({sources})."
    )


def closing_lines(
    runs: list[Run],
    groups: list[Group],
    base_rows: list[Row],
    flops_size: tuple[int, int] | None,
    ssim_decimals: int,
) -> list[str]:
    """The lines after the reference conventions, each where the table needs it."""
    lines = [_decimals_line(ssim_decimals)]
    lines += [_split_input_line(scale) for scale in split_input_scales(groups)]
    if flops_size is not None:
        lines.append(_flops_line(flops_size, [scale for scale in dict.fromkeys(g.scale for g in groups) if scale]))
    if any(run.self_ensemble for run in runs):
        lines.append(_self_ensemble_line())
    if base_rows:
        lines.append(_baselines_line(base_rows))
    return lines
