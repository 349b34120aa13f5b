"""``basicsr presets``: one row per named network, its numbers those of the network the preset builds."""

import pytest

import serpent_arch  # noqa: F401
from serpent_arch.archs import PRESETS, Serpent
from serpent_arch.cli import main as basicsr
from serpent_arch.presets import COUNTED_AT, markdown_table, preset_rows


def test_every_preset_has_a_row_with_its_parameters_and_flops():
    rows = {row["name"]: row for row in preset_rows()}
    assert list(rows) == list(PRESETS)
    for name, row in rows.items():
        upscale = COUNTED_AT[row["family"]][0]
        assert row["params"] == sum(p.numel() for p in Serpent(preset=name, upscale=upscale).parameters()), name
        assert row["gflops"] > 0
    # the same structure at a larger size costs more, and within a family larger members cost more
    for family in ("unet", "sr"):
        costs = [row["gflops"] for row in rows.values() if row["family"] == family]
        assert costs == sorted(costs), family


def test_command_prints_the_markdown_table(capsys):
    assert basicsr(["presets", "--family", "sr"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(markdown_table(preset_rows("sr")))
    assert "`sr-tiny`" in out and "`base`" not in out
    with pytest.raises(SystemExit):
        basicsr(["presets", "--family", "huge"])


def test_basicsr_help_keeps_names_and_texts_apart(capsys):
    assert basicsr(["--help"]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert ["leaderboard", "collect"] == lines[3][:2]


def test_readme_shows_the_table_the_command_prints():
    from e2e_util import REPO

    assert markdown_table(preset_rows()) in (REPO / "README.md").read_text(encoding="utf-8")


def test_every_shipped_option_file_names_a_preset():
    """Shipped option files pick a network by name: `preset` and at most 5 other keys (the quick start: upscale)."""
    import yaml
    from e2e_util import REPO

    files = sorted((REPO / "options").rglob("*.yml"))
    assert files
    for path in files:
        net = yaml.safe_load(path.read_text(encoding="utf-8"))["network_g"]
        assert net["preset"] in PRESETS and len(net) <= 6, (path, net)
        if path.parent == REPO / "options":
            assert set(net) == {"type", "preset", "upscale"}, (path, net)
