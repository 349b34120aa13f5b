"""``python -m study layout``: NCHW against channels-last training steps, interleaved."""

import pytest
import torch

from study import layout, throughput

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_channels_last_networks_get_converted_weights_and_input(monkeypatch):
    seen = {}
    real_step = throughput._step

    def spy(net, optimizer, lq, gt):
        conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
        key = "last" if lq.is_contiguous(memory_format=torch.channels_last) and not lq.is_contiguous() else "nchw"
        seen.setdefault(key, set()).add(conv.weight.is_contiguous(memory_format=torch.channels_last))
        real_step(net, optimizer, lq, gt)

    monkeypatch.setattr(throughput, "_step", spy)
    net = layout.NETWORKS["serpent-tiny-lr"]["sr"]
    result = throughput.seconds_per_iteration(
        {"a": net, "b": net},
        batch=2,
        gt_size=32,
        scale=4,
        repeats=1,
        block_seconds=0.01,
        channels_last=frozenset({"b"}),
    )
    assert set(result) == {"a", "b"}
    assert seen == {"nchw": {False}, "last": {True}}


def test_layout_writes_a_table_with_both_layouts(tmp_path, capsys):
    argv = ["--networks", "serpent-tiny-lr", "--repeats", "2", "--block-seconds", "0.01", "--threads", "1"]
    assert layout.main([*argv, "--out", str(tmp_path)]) == 0
    text = (tmp_path / "layout_sr.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| serpent-tiny-lr |"))
    nchw, last, ratio, nchw_to_first, last_to_first = (float(cell) for cell in row.strip("|").split("|")[1:])
    assert nchw > 0 and last > 0 and ratio > 0
    assert nchw_to_first == 1.0  # the first network is its own reference, round by round
    assert last_to_first > 0
    assert "vector extensions" in text  # the machine it ran on
    assert "`python -m study layout --networks serpent-tiny-lr" in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--networks", "no-such-net"], "--networks: unknown no-such-net"),
        (["--networks", "serpent-tiny-p2"], "take no part in task 'sr'"),
        (["--task", "denoise"], "--task: unknown 'denoise'"),
        (["--repeats", "0"], "--repeats must be >= 1"),
    ],
)
def test_layout_names_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit):
        layout.main(argv)
    assert message in capsys.readouterr().err


def test_layout_refuses_a_record_only_network():
    """A candidate whose network_g uses an option Serpent no longer has cannot be timed: one line names both."""
    with pytest.raises(SystemExit, match="cannot time serpent-cffn-nc-amp-lmn15-e3-f3-cl-lr: it is record-only.*"
                                         "upsampler_channels_last"):
        layout.main(["--networks", "msrresnet,serpent-cffn-nc-amp-lmn15-e3-f3-cl-lr"])
