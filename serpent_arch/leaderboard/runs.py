"""Reading ``RESULTS/*/metrics.json``: one :class:`Run` per ``basicsr test`` run folder.

A malformed file or record is skipped with a warning naming it; :class:`LeaderboardError` is raised
only when nothing is left to tabulate.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

SELF_ENSEMBLE_FORWARDS = 8  # 4 rotations x 2 flips


class LeaderboardError(Exception):
    """A problem that leaves nothing to tabulate (exit status 2)."""


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
        return int(scale) if is_number(scale) else None

    @property
    def params(self) -> int | None:
        params = self.first.get("params")
        return int(params) if is_number(params) else None

    @property
    def network_opt(self) -> dict | None:
        network_opt = self.first.get("network_g")
        return network_opt if isinstance(network_opt, dict) and network_opt.get("type") else None


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


def _run_paths(results_dir: Path, include_archived: bool) -> tuple[list[Path], list[str]]:
    """The metrics.json files to read, in folder-name order, and a warning when archived runs are left out."""
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
    return paths, messages


def load_runs(results_dir: Path, include_archived: bool = False) -> tuple[list[Run], list[str]]:
    """Every readable ``results_dir/*/metrics.json`` in folder-name order, and warnings.

    Raises :class:`LeaderboardError` when the folder is missing or no run can be read.
    """
    paths, messages = _run_paths(results_dir, include_archived)
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
