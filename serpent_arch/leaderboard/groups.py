"""Which runs are compared with each other: one group per scale and set of test inputs, smallest
scale first. x2 and x4 numbers differ by construction; runs of one scale whose input baselines differ
on a dataset of the same name (denoising at two noise levels) were tested on different inputs."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from serpent_arch.leaderboard.runs import Run, is_number

# Input baselines of one dataset closer than this (relative; 0.06 dB at 30 dB) come from the same test
# inputs. Test inputs are made deterministically (DegradedImageDataset seeds from the image key), so
# the same inputs differ by float noise only, while noise levels or blur kernels apart differ by dBs.
SAME_INPUT_REL_TOL = 2e-3


def baseline_label(scale: int | None) -> str:
    return "Input (degraded)" if scale == 1 else f"Bicubic ×{scale}" if scale else "Input baseline"


@dataclass
class Group:
    """Runs that can be compared: one scale, the same test inputs."""

    runs: list[Run]
    split_input: bool = False  # other groups have this scale too, tested on other inputs under the same names

    @property
    def scale(self) -> int | None:
        return self.runs[0].scale

    @property
    def baseline_label(self) -> str:
        """``Bicubic ×4``, and whose input it is when the scale has several groups."""
        return baseline_label(self.scale) + (f", input of {self.runs[0].name}" if self.split_input else "")

    def footer_name(self, mixed_scales: bool) -> str:
        """`` ×4 (input of NAME)``: what tells this group's reference lines apart in the footer."""
        name = f" ×{self.scale}" if mixed_scales and self.scale else ""
        return name + (f" (input of {self.runs[0].name})" if self.split_input else "")


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
            if is_number(mine[metric]) and is_number(theirs[metric]):
                if not math.isclose(mine[metric], theirs[metric], rel_tol=SAME_INPUT_REL_TOL):
                    return False
    return True


def group_runs(runs: list[Run]) -> list[Group]:
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
    groups.sort(key=lambda g: (g[0].scale is None, g[0].scale or 0))
    groups_per_scale = Counter(g[0].scale for g in groups)
    return [Group(g, split_input=groups_per_scale[g[0].scale] > 1) for g in groups]


def split_input_scales(groups: list[Group]) -> list[int | None]:
    """The scales with more than one group, in the groups' order."""
    return list(dict.fromkeys(group.scale for group in groups if group.split_input))
