"""``python -m study colour_set``: the colour report set, natural colour photographs from two Debian wallpaper
packages (issue 34).

    python -m study colour_set [--out datasets/colour_report] [--debs DIR] [--write-manifest]

``colour_set`` downloads the two packages of the manifest (``apt-get download PKG=VERSION``; ``--debs`` names a
folder that already holds them), checks their SHA-256, unpacks them (``dpkg -x``, nothing is installed),
selects the photographs by the rule below, checks that the selection and every source file's SHA-256 are those
of the manifest (``study/records/colour/colour_set.json``), and writes the central ``CROP`` x ``CROP`` pixels
of each as a PNG into ``OUT/HR``. ``--write-manifest`` writes the manifest from what it unpacked instead.

The rule (fixed before any network saw a photo; no photo is ever trained on or used for a choice):

* ``mate-backgrounds``: every JPEG in ``usr/share/backgrounds/mate/nature/``, the package's own category of
  nature photographs (its ``abstract/`` and ``desktop/`` folders hold renders, gradients and logos);
* ``lomiri-wallpapers-20.04``: its wallpapers (``usr/share/backgrounds/*.jpg``) less those that are not
  photographs of a scene (``NOT_PHOTOGRAPHS``, each with the reason).

The crop: the central 1024 x 1024 pixels, the short side of the smallest photo selected (GreenMeadow,
1280 x 1024), so every photo weighs the same in a mean, none is padded or rescaled (rescaling would change the
photo's own detail), and 13 photos x 7 runs evaluate in minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tempfile
from pathlib import Path

CROP = 1024
OUT_DIR = Path("study/records/colour")
MANIFEST = OUT_DIR / "colour_set.json"
DATA_DIR = Path("datasets/colour_report")

PACKAGES = {"mate-backgrounds": "1.26.0-1", "lomiri-wallpapers-20.04": "20.04.0-2"}
MATE_NATURE = "usr/share/backgrounds/mate/nature"
LOMIRI_WALLPAPERS = "usr/share/backgrounds"
NOT_PHOTOGRAPHS = {
    "Fossa_by_Jasper_Roks.jpg": "an abstract render of curved coloured planes",
    "Painting-Colors_by__herobrine7gamer.jpg": "flat diagonal colour stripes (made in GIMP)",
    "Infinite-Sea_by_Aury88.jpg": "a composite: a Milky Way and a sea under drawn gradient polygons",
}

def select_photos(trees: dict[str, Path]) -> list[tuple[str, str]]:
    """The photographs the rule takes from the unpacked packages ``trees`` (package -> folder):
    sorted (package, path inside the package)."""
    chosen = []
    nature = trees["mate-backgrounds"] / MATE_NATURE
    chosen += [("mate-backgrounds", f"{MATE_NATURE}/{p.name}") for p in sorted(nature.glob("*.jpg"))]
    lomiri = trees["lomiri-wallpapers-20.04"] / LOMIRI_WALLPAPERS
    chosen += [
        ("lomiri-wallpapers-20.04", f"{LOMIRI_WALLPAPERS}/{p.name}")
        for p in sorted(lomiri.glob("*.jpg"))
        if p.name not in NOT_PHOTOGRAPHS
    ]
    return chosen


def centre_box(width: int, height: int, size: int = CROP) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the central ``size`` x ``size`` square; a photo smaller than that stops."""
    if width < size or height < size:
        raise ValueError(f"a {width}x{height} photo has no central {size}x{size} crop")
    left, top = (width - size) // 2, (height - size) // 2
    return left, top, left + size, top + size


def photo_name(path: str) -> str:
    """The set's file name of a source photo: its stem, as PNG."""
    return Path(path).stem + ".png"


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def crop_photo(source: Path, size: int = CROP):
    """The central ``size`` square of ``source`` as an RGB PIL image, and the box taken."""
    from PIL import Image

    with Image.open(source) as im:
        box = centre_box(*im.size, size)
        return im.convert("RGB").crop(box), box, im.size


def _unpack(debs: Path, work: Path) -> tuple[dict[str, Path], dict[str, dict]]:
    trees, packages = {}, {}
    for package, version in PACKAGES.items():
        found = sorted(debs.glob(f"{package}_{version.replace(':', '%3a')}_*.deb"))
        if not found:
            subprocess.run(["apt-get", "download", f"{package}={version}"], cwd=debs, check=True)
            found = sorted(debs.glob(f"{package}_{version}_*.deb"))
        deb = found[0]
        trees[package] = work / package
        trees[package].mkdir(parents=True)
        subprocess.run(["dpkg", "-x", str(deb), str(trees[package])], check=True)
        packages[package] = {"version": version, "deb": deb.name, "deb_sha256": _sha256(deb)}
    return trees, packages


def build_set(out: Path, debs: Path | None, write_manifest: bool = False) -> list[dict]:
    """Write ``out/HR/*.png``; returns the photos' manifest entries."""
    manifest = None if write_manifest else json.loads(MANIFEST.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        debs = debs or Path(tmp) / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        trees, packages = _unpack(debs, Path(tmp) / "unpacked")
        if manifest is not None:
            for package, entry in packages.items():
                if entry["deb_sha256"] != manifest["packages"][package]["deb_sha256"]:
                    print(f"[colour_set] {entry['deb']}: not the recorded package file; checking its photos")
        photos = []
        (out / "HR").mkdir(parents=True, exist_ok=True)
        for package, path in select_photos(trees):
            source = trees[package] / path
            image, box, size = crop_photo(source)
            name = photo_name(path)
            image.save(out / "HR" / name)
            photos.append({"name": name, "package": package, "path": path, "width": size[0], "height": size[1],
                           "bytes": source.stat().st_size, "sha256": _sha256(source), "crop_box": list(box),
                           "crop_rgb_sha256": hashlib.sha256(image.tobytes()).hexdigest()})
    if manifest is None:
        MANIFEST.parent.mkdir(parents=True, exist_ok=True)
        MANIFEST.write_text(json.dumps({"rule": __doc__.split("The rule")[1].split("\n\n")[1],
                                        "crop": CROP, "packages": packages, "not_photographs": NOT_PHOTOGRAPHS,
                                        "photos": photos}, indent=1) + "\n")
        print(f"[colour_set] wrote {MANIFEST}")
    else:
        wrong = [p["name"] for p in photos if p not in manifest["photos"]]
        missing = [p["name"] for p in manifest["photos"] if p not in photos]
        if wrong or missing:
            raise SystemExit(f"[colour_set] not the recorded set: differing {wrong}, missing {missing}")
    print(f"[colour_set] {len(photos)} photos, central {CROP}x{CROP}, in {out / 'HR'}")
    return photos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m study colour_set", description="the colour report set")
    parser.add_argument("--out", type=Path, default=DATA_DIR, help="folder of the set (HR/ is written)")
    parser.add_argument("--debs", type=Path, default=None, help="folder holding (or to receive) the two .deb files")
    parser.add_argument("--write-manifest", action="store_true", help=f"write {MANIFEST} instead of checking it")
    args = parser.parse_args(argv)
    build_set(args.out, args.debs, args.write_manifest)
    return 0


