"""The equal-budget study's record of seconds per training iteration
(``OUT/throughput_<task>_<T>threads.json``): measured interleaved on an idle machine, kept and
reused by later sittings, which measure only the networks they add, beside a recorded anchor: their
time / the anchor's in each interleaved round (median over rounds) times the anchor's recorded time;
``--recheck-throughput`` measures again beside the record.
"""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path

from serpent_arch.measure import machine
from study.contenders import NETWORKS, TASKS
from study.serpent_candidates import RECORD_ONLY, refuse_record_only


def throughput_path(task: str, out: Path, threads: int | None, recheck: bool = False) -> Path:
    import torch

    return out / f"throughput_{task}_{threads or torch.get_num_threads()}threads{'_recheck' if recheck else ''}.json"


def measure(
    task: str,
    networks: list[str],
    out: Path,
    threads: int | None,
    repeats: int,
    recheck: bool = False,
    records_only: bool = False,
) -> dict[str, dict]:
    """s / iteration of ``networks`` on ``task``: from ``out``'s record, measuring the missing ones.

    ``recheck`` measures all of ``networks`` afresh, interleaved in one run, into a separate record
    (``..._recheck.json``) that never changes the iteration counts: the table sets it beside the
    record the counts came from, so a measurement taken in several sittings can be checked.
    ``records_only`` stops, naming them, where networks are missing from the record instead of measuring them.
    """
    import torch

    import serpent_arch  # noqa: F401  (registers Serpent before BasicSR builds networks)
    import study.plain_unet  # noqa: F401  (registers the study's PlainUNet)
    from study.throughput import seconds_per_iteration

    t = TASKS[task]
    path = throughput_path(task, out, threads, recheck)
    record = json.loads(path.read_text()) if path.is_file() and not recheck else {}
    shape = dict(batch=t["batch"], gt_size=t["gt_size"], scale=t["scale"])
    if record.get("shape") != shape:
        record = {"shape": shape, "networks": {}}
    missing = [n for n in networks if n not in record["networks"]]
    if missing and records_only:
        raise SystemExit(f"[budget] --records-only: {path} has no s / iteration of {', '.join(missing)}")
    for n in missing:
        refuse_record_only(n, "time")
    if missing:
        anchor = None if recheck else _anchor(record["networks"], networks)
        what = "checking" if recheck else "measuring"
        print(
            f"[budget] {task}: {what} s/iteration of {', '.join(missing)} (interleaved, {repeats} rounds"
            + (f", with {anchor} as the anchor)" if anchor else ")")
        )
        listed = {n: NETWORKS[n][task] for n in missing + ([anchor] if anchor else [])}
        measured = seconds_per_iteration(listed, repeats=repeats, **shape)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        for n in missing:
            m = dict(measured[n], measured=stamp, threads=torch.get_num_threads(), machine=machine.describe())
            if anchor:
                m.update(_scaled(m, measured[anchor], record["networks"][anchor]["s_per_iter"]), anchor=anchor)
            record["networks"][n] = m
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=1))
    return {n: record["networks"][n] for n in networks}


def _scaled(new: dict, anchor: dict, anchor_recorded: float) -> dict:
    """``new``'s s / iteration in the record's time scale: the median over the interleaved rounds of
    its time / the anchor's time in the same round, times the anchor's recorded time. Ratios taken
    round by round cancel a load that changes between rounds, which the ratio of two medians
    (taken from different rounds) does not."""
    ratios = [b / a for b, a in zip(new["blocks"], anchor["blocks"])]
    s_per_iter = anchor_recorded * statistics.median(ratios)
    return dict(s_per_iter=s_per_iter, raw_s_per_iter=new["s_per_iter"], ratio_to_anchor=ratios,
                anchor_factor=s_per_iter / new["s_per_iter"])


def _anchor(recorded: dict[str, dict], networks: list[str]) -> str | None:
    """The recorded network that a later sitting measures beside its new ones: a listed one if any
    (the user lists the network the new ones are to be compared with; a close relative gives the
    steadiest ratio), else any recorded one; within each, one measured directly (not itself scaled
    by an anchor) first. Never a record-only network: Serpent no longer builds it."""
    listed = [n for n in networks if n in recorded and n in NETWORKS and n not in RECORD_ONLY]
    others = [n for n in recorded if n in NETWORKS and n not in listed and n not in RECORD_ONLY]
    for group in (listed, others):
        if group:
            return next((n for n in group if "anchor" not in recorded[n]), group[0])
    return None


def rechecked(task: str, out: Path, threads: int | None) -> dict[str, dict]:
    """The last ``--recheck-throughput`` record of ``task`` (empty when there is none)."""
    path = throughput_path(task, out, threads, recheck=True)
    return json.loads(path.read_text())["networks"] if path.is_file() else {}
