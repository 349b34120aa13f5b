"""The pieces of exact resume, without running a trainer (the end-to-end runs are in test_resume.py)."""

import random

import cv2
import numpy as np
import pytest
import torch
from basicsr.data.data_sampler import EnlargedSampler

from serpent_arch.data.degraded_image_dataset import DegradedImageDataset
from serpent_arch.training import ResumableSampler, SampleId, TrackedLoader, forked_rng, rng_state


class _Items:
    def __init__(self, n, uses_sample_ids=False):
        self.n, self.uses_sample_ids = n, uses_sample_ids

    def __len__(self):
        return self.n


@pytest.mark.parametrize("ratio", [1, 3])
def test_sampler_keeps_basicsr_order_and_skips_inside_one_epoch(ratio):
    for rank in (0, 1):
        plain, ours = EnlargedSampler(_Items(10), 2, rank, ratio), ResumableSampler(_Items(10), 2, rank, ratio)
        for epoch in (0, 1):
            plain.set_epoch(epoch)
            ours.set_epoch(epoch)
            assert list(ours) == list(plain)
        ours.skip_in_epoch(1, 4)
        assert list(ours) == list(plain)[4:]
        ours.set_epoch(2)
        plain.set_epoch(2)
        assert list(ours) == list(plain)  # only the resumed epoch is shortened


def test_sample_ids_are_unique_positions_across_ranks():
    ids = []
    for rank in (0, 1):
        sampler = ResumableSampler(_Items(7, uses_sample_ids=True), 2, rank, ratio=2)
        sampler.seed = 11
        sampler.set_epoch(3)
        ids += list(sampler)
    assert all(isinstance(i, SampleId) and i.epoch == 3 and i.seed == 11 for i in ids)
    assert sorted(i.position for i in ids) == list(range(14))
    assert sorted(i.index for i in ids) == sorted(list(range(7)) * 2)


@pytest.fixture
def train_set(tmp_path):
    rng = np.random.default_rng(0)
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), (rng.random((48, 48, 3)) * 255).astype(np.uint8))
    opt = {
        "phase": "train",
        "scale": 2,
        "dataroot_gt": str(tmp_path),
        "gt_size": 16,
        "use_hflip": True,
        "use_rot": True,
        "degradations": [{"type": "bicubic_down"}, {"type": "noise", "sigma": [0, 20]}],
    }
    return DegradedImageDataset(opt)


def test_training_item_depends_only_on_its_sample_id(train_set):
    sid = SampleId(index=1, epoch=2, position=5, seed=0)
    first = train_set[sid]
    train_set[0], train_set[SampleId(0, 0, 0, 0)]  # other draws in between change nothing
    random.random(), np.random.random(), torch.rand(1)
    again = train_set[sid]
    assert torch.equal(first["lq"], again["lq"]) and torch.equal(first["gt"], again["gt"])
    other = train_set[sid._replace(position=6)]
    assert not torch.equal(first["lq"], other["lq"])


def test_tracked_loader_counts_and_restores_random_state_after_set_epoch():
    sampler = ResumableSampler(_Items(6), 1, 0)
    loader = TrackedLoader(torch.utils.data.DataLoader(list(range(6)), batch_size=2, sampler=sampler), sampler, 0)
    torch.manual_seed(1)
    saved = rng_state()
    expected = torch.rand(3)
    loader.pending_rng = saved
    torch.manual_seed(2)
    iter(loader)  # a prefetcher's first iterator, before the epoch is set: not consumed, nothing restored
    sampler.set_epoch(0)
    batches = iter(loader)
    next(batches)
    assert loader.consumed == 1 and loader.pending_rng is None
    assert torch.equal(torch.rand(3), expected)
    assert len(list(batches)) == 2 and loader.consumed == 3


def test_tracked_loader_counts_from_the_resumed_position():
    """A run resumed after 2 batches of epoch 1 is at batch 3 after one more, so a second
    interruption in the same epoch saves and later skips 3 batches, not 1."""
    sampler = ResumableSampler(_Items(8), 1, 0)
    loader = TrackedLoader(torch.utils.data.DataLoader(list(range(8)), batch_size=2, sampler=sampler), sampler, 0)
    sampler.skip_in_epoch(1, 4)
    sampler.set_epoch(1)
    batches = iter(loader)
    next(batches)
    assert loader.consumed == 3
    assert len(list(batches)) == 1 and loader.consumed == 4
    sampler.set_epoch(2)  # the next epoch is whole again
    assert len(list(loader)) == 4 and loader.consumed == 4


def test_forked_rng_leaves_every_generator_as_it_was():
    state = rng_state()
    with forked_rng():
        torch.rand(5), np.random.random(5), random.random()
    after = rng_state()
    assert torch.equal(state["torch"], after["torch"]) and state["python"] == after["python"]
    assert all(np.array_equal(a, b) for a, b in zip(state["numpy"], after["numpy"], strict=True))
