"""docs/draw_architecture.py: the diagram in docs/architecture.md is drawn from the network the code
builds, so the script has to keep working as the network changes."""

import re

import pytest
from e2e_util import REPO, repo_script

from serpent_arch.archs import PRESETS

draw_architecture = repo_script("docs/draw_architecture.py")


def test_draws_a_png(tmp_path):
    out = tmp_path / "serpent.png"
    argv = ["--preset", "tiny", "--size", "20", "28", "--dpi", "30", "--out", str(out)]
    assert draw_architecture.main(argv) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "upsampler, size, padded, output",
    [
        # interpolate: bicubic x2 first, then padded to patch 4 * 2**3 = 32
        ("interpolate", (20, 36), (1, 3, 64, 96), (1, 3, 40, 72)),
        ("pixelshuffle", (20, 36), (1, 3, 32, 64), (1, 3, 40, 72)),
    ],
)
def test_walk_reads_stages_widths_and_shapes_from_the_network(upsampler, size, padded, output):
    config = PRESETS["small"].structure
    walked = draw_architecture.walk(dict(type="Serpent", preset="small", upscale=2, upsampler=upsampler), size)
    c, p = config["embed_dim"], config["patch_size"]
    assert [stage.depth for stage in walked.encoder] == list(config["depths"])
    assert [stage.depth for stage in walked.decoder] == list(reversed(config["depths"][:-1]))
    assert [stage.width for stage in walked.encoder] == [c * 2**i for i in range(len(config["depths"]))]
    assert walked.padded_shape == padded and walked.output_shape == output
    h, w = padded[2] // p, padded[3] // p
    assert [stage.shape for stage in walked.encoder] == [(1, h >> i, w >> i, c << i) for i in range(4)]
    assert [stage.shape for stage in walked.decoder] == [(1, h >> i, w >> i, c << i) for i in (2, 1, 0)]
    assert walked.upsample_factors == ([2] if upsampler == "pixelshuffle" else [])


def test_unknown_preset_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        draw_architecture.main(["--preset", "huge", "--out", str(tmp_path / "x.png")])
    assert stop.value.code == 2
    assert "unknown preset 'huge'" in capsys.readouterr().err


def test_module_table_names_every_module_and_only_existing_ones():
    """docs/architecture.md, section 5: every module of the package has a row (or its folder does),
    and every path the table names exists."""
    text = (REPO / "docs" / "architecture.md").read_text(encoding="utf-8")
    table = text.split("## 5. Where each piece lives", 1)[1]
    named = set(re.findall(r"`((?:serpent_arch|datasets|options|docs|tests|study)/[^`]*)`", table))
    assert named, "no paths found in section 5"
    assert [path for path in named if not (REPO / path).exists()] == []
    modules = [
        path.relative_to(REPO).as_posix()
        for path in (REPO / "serpent_arch").rglob("*.py")
        if path.name != "__init__.py" or path.parent.name == "serpent_arch"
    ]
    unlisted = [m for m in modules if m not in named and not any(m.startswith(n) for n in named if n.endswith("/"))]
    assert unlisted == []
