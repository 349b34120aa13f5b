"""The BasicSR layer: every patch is listed, checked against the installed BasicSR, and applied."""

import dataclasses
from pathlib import Path

import basicsr.train
import pytest

import serpent_arch  # noqa: F401
from serpent_arch import compat

BASICSR_LAYER_PAGE = Path(__file__).resolve().parents[1] / "docs" / "basicsr_layer.md"


def test_every_target_of_the_installed_basicsr_matches():
    assert compat.check() == []


def test_import_patches_are_applied_and_train_patches_are_not_yet():
    assert basicsr.train.load_resume_state is compat.fixes.load_resume_state
    from basicsr.data.paired_image_dataset import PairedImageDataset

    assert PairedImageDataset.__getitem__.__wrapped__ is not None  # functools.wraps of the wrapper
    assert {patch.stage for patch in compat.PATCHES} == {"import", "train"}


def test_a_changed_target_stops_with_the_version_and_the_patch(monkeypatch):
    changed = dataclasses.replace(
        next(p for p in compat.PATCHES if p.target == "basicsr.train.load_resume_state"),
        stage="probe",
        params=("opt", "device"),
    )
    missing = compat.Patch(
        "basicsr.train.no_such_function", "a test", "serpent_arch.compat.fixes:replace_init_dist", "probe"
    )
    monkeypatch.setattr(compat, "PATCHES", (changed, missing))
    with pytest.raises(compat.BasicSRCompatError) as err:
        compat.apply("probe")
    message = str(err.value)
    assert f"tested with BasicSR {compat.TESTED_BASICSR}" in message and "BasicSR 1.4.2 differs" in message
    assert "basicsr.train.load_resume_state: it takes (opt), without device" in message
    assert "basicsr.train.no_such_function: module basicsr.train has no attribute 'no_such_function'" in message
    assert "probe" not in compat._applied  # nothing was replaced


def test_docs_list_every_patch():
    assert compat.describe() in BASICSR_LAYER_PAGE.read_text(encoding="utf-8")


def test_train_stage_is_bound_to_one_run_and_undone_afterwards():
    from serpent_arch import training

    before = basicsr.train.build_model, basicsr.train.EnlargedSampler
    run = training.TrainingRun()
    with compat.applied("train", run=run):
        assert basicsr.train.EnlargedSampler is training.ResumableSampler
        assert basicsr.train.build_model is not before[0]
    assert (basicsr.train.build_model, basicsr.train.EnlargedSampler) == before
