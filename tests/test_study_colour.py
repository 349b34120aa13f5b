"""The colour report set (``python -m study colour_set``): which photos the rule takes and how each is cropped;
and its tables (``python -m study colour_report --records-only``) from run records alone. No download, no
training: fake package trees and fake records."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from PIL import Image

from study import colour_report, colour_set

REPO = Path(__file__).resolve().parents[1]
RECORDS = REPO / "study" / "records" / "colour"


def _jpeg(path: Path, size=(1100, 1030), colour=(120, 30, 200)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def _trees(tmp_path: Path) -> dict[str, Path]:
    mate, lomiri = tmp_path / "mate", tmp_path / "lomiri"
    for name in ("Dune.jpg", "Aqua.jpg"):
        _jpeg(mate / colour_set.MATE_NATURE / name)
    _jpeg(mate / "usr/share/backgrounds/mate/abstract/Elephants.jpg")  # not the nature folder
    (mate / colour_set.MATE_NATURE / "readme.xml").write_text("<x/>")  # not a JPEG
    for name in ("Kleiber_by_Lukas_Baubkus.jpg", *colour_set.NOT_PHOTOGRAPHS):
        _jpeg(lomiri / colour_set.LOMIRI_WALLPAPERS / name)
    return {"mate-backgrounds": mate, "lomiri-wallpapers-20.04": lomiri}


def test_the_rule_takes_the_nature_folder_and_the_photographs_of_lomiri(tmp_path):
    assert colour_set.select_photos(_trees(tmp_path)) == [
        ("mate-backgrounds", f"{colour_set.MATE_NATURE}/Aqua.jpg"),
        ("mate-backgrounds", f"{colour_set.MATE_NATURE}/Dune.jpg"),
        ("lomiri-wallpapers-20.04", f"{colour_set.LOMIRI_WALLPAPERS}/Kleiber_by_Lukas_Baubkus.jpg"),
    ]
    assert colour_set.photo_name("usr/share/backgrounds/Kleiber_by_Lukas_Baubkus.jpg") == "Kleiber_by_Lukas_Baubkus.png"


@pytest.mark.parametrize(
    "width, height, size, box",
    [(1024, 1024, 1024, (0, 0, 1024, 1024)), (1680, 1050, 1024, (328, 13, 1352, 1037)), (7, 6, 4, (1, 1, 5, 5))],
)
def test_the_central_crop(width, height, size, box):
    assert colour_set.centre_box(width, height, size) == box


def test_a_photo_smaller_than_the_crop_stops():
    with pytest.raises(ValueError, match="no central 1024x1024 crop"):
        colour_set.centre_box(1280, 1023)


def test_the_crop_takes_the_central_pixels_as_rgb(tmp_path):
    image = Image.new("L", (8, 6), 0)
    image.putpixel((4, 3), 255)  # a pixel inside the central 4x4 (2..5, 1..4): at (2, 2) of the crop
    image.save(tmp_path / "gray.png")
    crop, box, size = colour_set.crop_photo(tmp_path / "gray.png", 4)
    assert (box, size, crop.mode, crop.size) == ((2, 1, 6, 5), (8, 6), "RGB", (4, 4))
    assert crop.getpixel((2, 2)) == (255, 255, 255) and crop.getpixel((0, 0)) == (0, 0, 0)


def test_the_set_is_written_and_checked_against_its_manifest(tmp_path, monkeypatch):
    """--write-manifest records the selection; a later build is checked against it and stops when a photo
    differs (another package version)."""
    trees = _trees(tmp_path / "pkgs")
    packages = {p: {"version": v, "deb": f"{p}.deb", "deb_sha256": "0"} for p, v in colour_set.PACKAGES.items()}
    monkeypatch.setattr(colour_set, "_unpack", lambda debs, work: (trees, packages))
    monkeypatch.setattr(colour_set, "MANIFEST", tmp_path / "colour_set.json")
    photos = colour_set.build_set(tmp_path / "set", tmp_path / "debs", write_manifest=True)
    assert sorted(p.name for p in (tmp_path / "set" / "HR").iterdir()) == [
        "Aqua.png", "Dune.png", "Kleiber_by_Lukas_Baubkus.png"]
    assert Image.open(tmp_path / "set" / "HR" / "Dune.png").size == (1024, 1024)
    manifest = json.loads((tmp_path / "colour_set.json").read_text())
    assert manifest["photos"] == photos and manifest["crop"] == 1024 and photos[0]["crop_box"] == [38, 3, 1062, 1027]
    assert set(manifest["not_photographs"]) == set(colour_set.NOT_PHOTOGRAPHS)
    colour_set.build_set(tmp_path / "again", tmp_path / "debs")  # the same set: passes
    _jpeg(trees["mate-backgrounds"] / colour_set.MATE_NATURE / "Dune.jpg", colour=(1, 2, 3))
    with pytest.raises(SystemExit, match="not the recorded set: differing \\['Dune.png'\\]"):
        colour_set.build_set(tmp_path / "third", tmp_path / "debs")


def _fake_record(out: Path, network: str, seed: int, psnrs: dict[str, float]) -> None:
    colour = {p: {"psnr": v, "ssim": 0.5, "bicubic_psnr": 20.0, "bicubic_ssim": 0.4} for p, v in psnrs.items()}
    record = {"name": f"run_{network}_s{seed}", "network": network, "seed": seed, "lr": 0.001, "iters": 10,
              "retrained_pick_psnr": 25.0, "recorded_pick_psnr": 25.0, "recorded_report_psnr": 24.0,
              "report_psnr": 24.0, "colour": colour, "report": {}}
    (out / "runs").mkdir(parents=True, exist_ok=True)
    (out / "runs" / f"{record['name']}.json").write_text(json.dumps(record))


def test_the_tables_from_fake_records(tmp_path):
    f3 = colour_report.F3_TC
    _fake_record(tmp_path, f3, 0, {"a.png": 22.0, "b.png": 21.0})
    _fake_record(tmp_path, f3, 1, {"a.png": 22.2, "b.png": 21.2})
    _fake_record(tmp_path, "msrresnet", 0, {"a.png": 21.5, "b.png": 21.5})
    _fake_record(tmp_path, "msrresnet", 1, {"a.png": 21.7, "b.png": 21.1})
    assert colour_report.main(["--records-only", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "colour_sr_10min.md").read_text()
    assert "| serpent f3-tc | 0 | 10 | 0.001 | 21.500 | 0.5000 | +1.500 | 1 of 2 | 24.000 (24.000) |" in table
    assert "| serpent f3-tc | 1 | 10 | 0.001 | 21.700 | 0.5000 | +1.700 | 2 of 2 |" in table
    assert "| serpent f3-tc | 0, 1 | 21.600 | +1.600 | 0.200 |" in table
    assert "| msrresnet | 0, 1 | 21.450 | +1.450 | 0.100 |" in table
    assert "| a | 20.00 | 22.10 (+2.10) | 21.60 (+1.60) | +0.500 | 2 of 2 |" in table
    assert "| b | 20.00 | 21.10 (+1.10) | 21.30 (+1.30) | -0.200 | 1 of 2 |" in table
    rows = list(csv.DictReader((tmp_path / "colour_sr_10min.csv").open()))
    assert len(rows) == 4 + 2 * 4 and rows[4] == {"kind": "photo", "network": f3, "seed": "0", "iters": "10",
                                                 "lr": "0.001", "photo": "a", "psnr": "22.0000", "ssim": "0.50000",
                                                 "bicubic_psnr": "20.0000"}


@pytest.mark.skipif(not (RECORDS / "runs").is_dir(), reason="no colour-set records yet")
def test_the_committed_colour_tables_rebuild_byte_for_byte(tmp_path):
    copy = tmp_path / "colour"
    shutil.copytree(RECORDS, copy)
    for table in copy.glob("colour_*_*min.*"):
        table.unlink()
    assert colour_report.main(["--records-only", "--out", str(copy)]) == 0
    if (RECORDS / "deblur_runs").is_dir():
        assert colour_report.main(["--records-only", "--task", "deblur", "--out", str(copy)]) == 0
    tables = sorted(RECORDS.glob("colour_*_*min.*"))
    assert len(tables) >= 2
    for table in tables:
        assert (copy / table.name).read_bytes() == table.read_bytes()


def test_the_deblurring_tables_from_fake_records(tmp_path):
    """--task deblur: records under deblur_runs/, the blurred input as the baseline, Serpent-tiny against the U-Net."""
    for network, seed, psnrs in [("serpent-tiny", 0, {"a.png": 31.0, "b.png": 30.0}),
                                 ("plain-unet", 0, {"a.png": 30.5, "b.png": 30.5})]:
        colour = {p: {"psnr": v, "ssim": 0.5, "input_psnr": 29.0, "input_ssim": 0.4} for p, v in psnrs.items()}
        record = {"name": f"run_{network}_s{seed}", "network": network, "seed": seed, "lr": 0.001, "iters": 10,
                  "retrained_pick_psnr": 25.0, "recorded_pick_psnr": None, "recorded_report_psnr": None,
                  "report_psnr": 24.0, "colour": colour, "report": {}}
        (tmp_path / "deblur_runs").mkdir(exist_ok=True)
        (tmp_path / "deblur_runs" / f"{record['name']}.json").write_text(json.dumps(record))
    assert colour_report.main(["--records-only", "--task", "deblur", "--out", str(tmp_path)]) == 0
    assert not (tmp_path / "colour_sr_10min.md").exists()
    table = (tmp_path / "colour_deblur_5min.md").read_text()
    assert "| serpent-tiny | 0 | 10 | 0.001 | 30.500 | 0.5000 | +1.500 | 1 of 2 | 24.000 (not recorded) |" in table
    assert "| input (blurred) | - | 29.000 | +0.000 | - |" in table
    assert "| a | 29.00 | 31.00 (+2.00) | 30.50 (+1.50) | +0.500 | 1 of 1 |" in table
    assert "| b | 29.00 | 30.00 (+1.00) | 30.50 (+1.50) | -0.500 | 0 of 1 |" in table
