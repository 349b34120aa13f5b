"""``python -m study upsampler``: the fused nearest+conv upsampler against the layers as written, interleaved."""

import pytest

from study import throughput, upsampler

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_the_network_rows_differ_only_in_upsampler_fused(monkeypatch):
    seen = {}

    def fake(networks, **kw):
        seen.update(networks)
        return {name: {"s_per_iter": 1.0, "blocks": [1.0, 2.0]} for name in networks}

    monkeypatch.setattr(throughput, "seconds_per_iteration", fake)
    row = upsampler.time_network("serpent-cffn-nc-amp-lmn15-e3-f2-lr", "sr", repeats=2, block_seconds=0.01)
    written, fused = seen["as written"], seen["fused"]
    assert written.pop("upsampler_fused") is False and fused.pop("upsampler_fused") is True
    assert written == fused and row["ratio"] == 1.0


def test_upsampler_writes_both_tables_and_the_machine(tmp_path, monkeypatch):
    real_step = upsampler.time_step  # the layer rows at a small shape, to keep the test fast
    monkeypatch.setattr(upsampler, "time_step", lambda b, c, size, r, s: real_step(1, 4, size // 4, r, s))
    argv = ["--network", "serpent-cffn-nc-lr", "--repeats", "1", "--block-seconds", "0.01", "--threads", "1"]
    assert upsampler.main([*argv, "--out", str(tmp_path)]) == 0
    text = (tmp_path / "upsampler.md").read_text()
    rows = [line for line in text.splitlines() if line.startswith("| 1x4x") or line.startswith("| forward, L1")]
    assert len(rows) == 3
    for row in rows:
        written, fused, ratio = (float(cell) for cell in row.strip("|").split("|")[1:])
        assert written > 0 and fused > 0 and ratio > 0
    assert "vector extensions" in text and "`python -m study upsampler --network" in text


def test_upsampler_refuses_a_network_without_nearest_conv():
    with pytest.raises(SystemExit, match="no nearest\\+conv upsampler"):
        upsampler.time_network("serpent-tiny-lr", "sr", repeats=1, block_seconds=0.01)


def test_upsampler_refuses_a_record_only_network():
    with pytest.raises(SystemExit, match="cannot time serpent-cffn-nc-amp-lmn15-e3-f3-cl-lr: it is record-only"):
        upsampler.time_network("serpent-cffn-nc-amp-lmn15-e3-f3-cl-lr", "sr", repeats=1, block_seconds=0.01)
