"""Turn downloaded benchmark sets into the layout that the test option files read.

One set per call. ``--src`` is the download as it comes: a folder, a ``.zip`` or a ``.tar``.
The HR images are found in it whatever the archive's layout (images at the top, under ``HR/``,
``original/`` or ``GT*/``, or named ``*_HR.png`` as in the ``image_SRF_<s>/`` zips); LR,
noisy and method-output files that come with a download are ignored: every LR image is made
here, from the HR, the same way for every set. Examples::

    python datasets/prepare_benchmark.py --set Set5 --src ~/Downloads/Set5.zip
    python datasets/prepare_benchmark.py --set CBSD68 --src ~/Downloads/CBSD68
    python datasets/prepare_benchmark.py --set FFHQ --src datasets/FFHQ/images1024x1024

Writes, under ``--root`` (default ``datasets``):

    benchmark/<SET>/HR/<stem>.png                   8-bit, 3-channel (gray copied to B, G, R), not cropped
    benchmark/<SET>/LR_bicubic/X2|X3|X4/<stem>.png  SR sets: MATLAB-style bicubic of the HR mod-cropped
                                                    to the scale (the test sets' PairedImageDataset
                                                    crops the GT to LR size x scale, i.e. the same crop)
    FFHQ/ffhq256_val/<key>.png, FFHQ/ffhq512_val/   FFHQ 69000-69999, MATLAB-style bicubic from 1024

Denoising sets get the HR only: the test options add the noise on the fly with a fixed seed.
The number of HR images found must be the set's (a wrong or partial download is an error);
``--allow-count-mismatch`` prepares a custom set anyway, with a warning. Running it again is
safe: files whose pixels are already right are left alone, and files in the output folders that
are not part of the set (e.g. ``babyx4.png`` from another layout, a previous partial run) are
removed, so each folder holds exactly the set.
"""

from __future__ import annotations

import argparse
import io
import os
import posixpath
import re
import sys
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from os import path as osp

import _checkout  # noqa: F401  (serpent_arch importable from a checkout; BasicSR fixes applied)
import cv2
import numpy as np

from serpent_arch.data.degradations import build_degradations, deterministic_rng
from serpent_arch.data.storage import IMAGE_EXTENSIONS

SR_SCALES = (2, 3, 4)
FFHQ_VAL_KEYS = range(69000, 70000)  # the last 1000 of FFHQ's 70,000; 00000-68999 are for training
FFHQ_SIZES = (256, 512)
PNG_LEVEL = 3


@dataclass(frozen=True)
class BenchmarkSet:
    name: str
    task: str
    num_images: int
    aliases: tuple[str, ...]  # other names of the set, also as folder names inside downloads
    lr_scales: tuple[int, ...] = ()


SETS = {
    s.name: s
    for s in (
        BenchmarkSet("Set5", "classic SR", 5, (), SR_SCALES),
        BenchmarkSet("Set14", "classic SR", 14, (), SR_SCALES),
        BenchmarkSet("B100", "classic SR", 100, ("BSD100", "BSDS100"), SR_SCALES),
        BenchmarkSet("Urban100", "classic SR, colour denoising", 100, (), SR_SCALES),
        BenchmarkSet("Manga109", "classic SR", 109, (), SR_SCALES),
        BenchmarkSet("CBSD68", "colour denoising", 68, ()),
        BenchmarkSet("Kodak24", "colour denoising", 24, ("Kodak",)),
        BenchmarkSet("McMaster", "colour denoising", 18, ("McM",)),
        BenchmarkSet("FFHQ", "face deblurring and 8x SR", len(FFHQ_VAL_KEYS), ()),
    )
}

# Folders of a download that hold the HR images, most specific first (BasicSR's own archives have
# both `original/` and `GTmod12/`; the original, uncropped images are wanted).
_HR_FOLDERS = ("hr", "original", "original_png", "gt", "gtmod12")
# Folders of a download that hold anything but HR images: LR_bicubic, LRbicx4, LQ, noisy25 ...
_NOT_HR_FOLDER = re.compile(r"^(lr|lq|noisy|noise\d|sigma\d)", re.IGNORECASE)
_NOT_HR_STEM = re.compile(r"_(lr|lq)$", re.IGNORECASE)
_HR_STEM = re.compile(r"(_srf_\d+)?_hr$", re.IGNORECASE)  # img_001_SRF_4_HR -> img_001


class BenchmarkSetError(ValueError):
    """A download that cannot be turned into the set: the message names the set and what is wrong."""


def find_set(name: str) -> BenchmarkSet:
    """The set called ``name`` or one of its aliases, in any letter case."""
    for spec in SETS.values():
        if name.lower() in (n.lower() for n in (spec.name, *spec.aliases)):
            return spec
    raise BenchmarkSetError(f"unknown set {name!r}; choose one of {', '.join(SETS)}")


def hr_folder(root: str, name: str) -> str:
    return osp.join(root, "benchmark", name, "HR")


def lr_folder(root: str, name: str, scale: int) -> str:
    return osp.join(root, "benchmark", name, "LR_bicubic", f"X{scale}")


def face_folder(root: str, size: int) -> str:
    return osp.join(root, "FFHQ", f"ffhq{size}_val")


def output_folders(root: str, spec: BenchmarkSet) -> list[str]:
    """Every folder that preparing ``spec`` writes (and keeps to exactly the set's files)."""
    if spec.name == "FFHQ":
        return [face_folder(root, size) for size in FFHQ_SIZES]
    return [hr_folder(root, spec.name)] + [lr_folder(root, spec.name, s) for s in spec.lr_scales]


# ---------------------------------------------------------------- reading a download


@dataclass(frozen=True)
class SourceImage:
    path: str  # inside the download, '/'-separated
    read: Callable[[], bytes]

    @property
    def folders(self) -> list[str]:
        return self.path.split("/")[:-1]

    @property
    def stem(self) -> str:
        return osp.splitext(self.path.rsplit("/", 1)[-1])[0]


def _archive_path(name: str) -> str:
    """``./Set5/HR/baby.png`` -> ``Set5/HR/baby.png``."""
    return posixpath.normpath(name).lstrip("/")


def _is_image(path: str) -> bool:
    parts = path.split("/")
    hidden = any(p.startswith(".") or p == "__MACOSX" for p in parts)
    return not hidden and path.lower().endswith(IMAGE_EXTENSIONS)


def list_images(src: str, open_archives: list) -> list[SourceImage]:
    """The image files in a folder (searched recursively), a zip or a tar, sorted by path.

    Archives stay open (appended to ``open_archives``) so that images are read one at a time.
    """
    if osp.isdir(src):
        found = []
        for folder, _dirs, files in os.walk(src, followlinks=True):
            for name in files:
                full = osp.join(folder, name)
                rel = osp.relpath(full, src).replace(os.sep, "/")
                if _is_image(rel):
                    found.append(SourceImage(rel, lambda full=full: _read_file(full)))
        return sorted(found, key=lambda img: img.path)
    if not osp.isfile(src):
        raise BenchmarkSetError(f"--src {src} does not exist")
    if zipfile.is_zipfile(src):
        archive = zipfile.ZipFile(src)
        open_archives.append(archive)
        names = [n for n in archive.namelist() if not n.endswith("/") and _is_image(_archive_path(n))]
        return sorted(
            (SourceImage(_archive_path(n), lambda n=n: archive.read(n)) for n in names), key=lambda img: img.path
        )
    if tarfile.is_tarfile(src):
        archive = tarfile.open(src)
        open_archives.append(archive)
        members = [m for m in archive.getmembers() if m.isfile() and _is_image(_archive_path(m.name))]
        return sorted(
            (SourceImage(_archive_path(m.name), lambda m=m: archive.extractfile(m).read()) for m in members),
            key=lambda img: img.path,
        )
    raise BenchmarkSetError(f"--src {src} is neither a folder nor a .zip or .tar archive")


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _under_set_folder(images: list[SourceImage], spec: BenchmarkSet) -> list[SourceImage]:
    """Only the images inside a folder named like the set, when the download holds several sets."""
    names = {n.lower() for n in (spec.name, *spec.aliases)}
    inside = [img for img in images if any(f.lower() in names for f in img.folders)]
    return inside or images


def select_hr(images: list[SourceImage], spec: BenchmarkSet) -> tuple[list[tuple[str, SourceImage]], list[str]]:
    """The HR image of each stem in a benchmark download, and notes on what was chosen.

    Returns ``([(stem, image), ...] sorted by stem, notes)``.
    """
    images = _under_set_folder(images, spec)
    images = [
        img
        for img in images
        if not any(_NOT_HR_FOLDER.match(f) for f in img.folders) and not _NOT_HR_STEM.search(img.stem)
    ]
    marked = [img for img in images if _HR_STEM.search(img.stem)]
    if marked:  # the image_SRF_<s>/*_HR.png zips also hold each method's output under other suffixes
        named = [(_HR_STEM.sub("", img.stem), img) for img in marked]
    else:
        for folder in _HR_FOLDERS:
            chosen = [img for img in images if folder in (f.lower() for f in img.folders)]
            if chosen:
                images = chosen
                break
        named = [(img.stem, img) for img in images]
    return _one_per_stem(named)


def select_ffhq_val(images: list[SourceImage]) -> tuple[list[tuple[str, SourceImage]], list[str]]:
    """The validation images (keys 69000-69999) of an FFHQ download: the 70 folders, or flat."""
    return _one_per_stem(
        [(str(int(img.stem)), img) for img in images if img.stem.isdigit() and int(img.stem) in FFHQ_VAL_KEYS]
    )


def _one_per_stem(named: list[tuple[str, SourceImage]]) -> tuple[list[tuple[str, SourceImage]], list[str]]:
    """Keep the largest copy of an image found more than once.

    The ``image_SRF_2/3/4`` zips hold one HR per scale, each mod-cropped to its scale; the largest
    is the least cropped. Ties keep the first path.
    """
    by_stem: dict[str, list[SourceImage]] = {}
    for stem, img in named:
        by_stem.setdefault(stem, []).append(img)
    chosen, repeated = [], []
    for stem in sorted(by_stem):
        copies = by_stem[stem]
        if len(copies) > 1:
            copies = sorted(copies, key=lambda img: (-_pixel_count(img), img.path))
            repeated.append(stem)
        chosen.append((stem, copies[0]))
    notes = []
    if repeated:
        notes.append(
            f"{len(repeated)} image(s) found more than once (e.g. {repeated[0]}); kept the largest copy of each"
        )
    return chosen, notes


def _pixel_count(img: SourceImage) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(img.read())) as im:
        return im.width * im.height


def to_bgr8(img: np.ndarray | None, where: str) -> tuple[np.ndarray, str]:
    """8-bit 3-channel BGR from what cv2 decodes; also says what was converted ('' if nothing).

    Gray images become 3 equal channels: BasicSR loads every image as BGR, and the Y-channel
    metrics of a gray image stored this way are those of the gray values.
    """
    if img is None:
        raise BenchmarkSetError(f"cannot decode {where}: not a readable image")
    note = ""
    if img.dtype == np.uint16:
        img = np.rint(img / 257.0).astype(np.uint8)
        note = "16-bit to 8-bit"
    elif img.dtype != np.uint8:
        raise BenchmarkSetError(f"{where}: unsupported pixel type {img.dtype}; convert it to 8-bit")
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), ", ".join(filter(None, [note, "gray to 3 channels"]))
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR), ", ".join(filter(None, [note, "alpha dropped"]))
    return img, note


def bicubic_down(img: np.ndarray, scale: int, key: str) -> np.ndarray:
    """MATLAB-style bicubic (antialiased) downscale of a uint8 image mod-cropped to ``scale``, as uint8.

    The degradation pipeline's ``bicubic_down`` (BasicSR's ``imresize``), the one training uses;
    rounded to 8 bits like every benchmark LR file.
    """
    h, w = img.shape[:2]
    cropped = img[: h - h % scale, : w - w % scale]
    pipeline = build_degradations([{"type": "bicubic_down"}], scale)
    lr = pipeline(cropped.astype(np.float32) / np.float32(255.0), deterministic_rng(0, key))
    return np.clip(np.rint(lr * 255.0), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------- writing the set


class _FolderWriter:
    """Writes PNGs into one output folder; leaves files with the right pixels alone."""

    def __init__(self, folder: str, log: Callable[[str], None]):
        self.folder, self.log = folder, log
        self.expected: set[str] = set()
        self.written = self.unchanged = 0
        os.makedirs(folder, exist_ok=True)

    def put(self, stem: str, img: np.ndarray) -> None:
        name = f"{stem}.png"
        self.expected.add(name)
        path = osp.join(self.folder, name)
        if osp.isfile(path):
            old = cv2.imread(path, cv2.IMREAD_UNCHANGED)
            if old is not None and old.shape == img.shape and np.array_equal(old, img):
                self.unchanged += 1
                return
        ok, encoded = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
        if not ok:
            raise OSError(f"cannot encode {path}")
        tmp = osp.join(self.folder, f".{name}.tmp")
        with open(tmp, "wb") as f:
            f.write(encoded.tobytes())
        os.replace(tmp, path)  # never a half-written file under the final name
        self.written += 1
        self.log(f"wrote {path} ({img.shape[0]}x{img.shape[1]})")

    def finish(self) -> str:
        """Remove files that are not part of the set; returns a one-line summary."""
        removed = 0
        for name in sorted(os.listdir(self.folder)):
            path = osp.join(self.folder, name)
            if name not in self.expected and osp.isfile(path):
                os.remove(path)
                removed += 1
                self.log(f"removed {path} (not part of the set)")
        return (
            f"{self.folder}: {len(self.expected)} images ({self.written} written, {self.unchanged} unchanged, "
            f"{removed} other files removed)"
        )


def _check_count(spec: BenchmarkSet, found: list, src: str, allow_mismatch: bool, warn) -> None:
    what = "HR images" if spec.name != "FFHQ" else f"validation images ({FFHQ_VAL_KEYS[0]}-{FFHQ_VAL_KEYS[-1]})"
    if not found:
        raise BenchmarkSetError(f"{spec.name}: no {what} found in {src}")
    if len(found) == spec.num_images:
        return
    message = f"{spec.name}: expected {spec.num_images} {what}, found {len(found)} in {src}"
    if not allow_mismatch:
        raise BenchmarkSetError(
            f"{message}; is the download complete and the right set? (--allow-count-mismatch prepares a "
            "custom set anyway)"
        )
    warn(
        f"warning: {message}; preparing them anyway (--allow-count-mismatch); a test option file's "
        f"num_images: {spec.num_images} will not match them (basicsr test says so and names the flag that "
        "leaves the count out: --remove_yml datasets:<section>:num_images)"
    )


def prepare_set(
    name: str,
    src: str,
    root: str = "datasets",
    allow_count_mismatch: bool = False,
    log: Callable[[str], None] = print,
    warn: Callable[[str], None] = lambda message: print(message, file=sys.stderr),
) -> list[str]:
    """Prepare one benchmark set from its download; returns the output folders.

    Raises:
        BenchmarkSetError: unknown set, unreadable source, no images, or (unless
            ``allow_count_mismatch``) a number of HR images other than the set's.
    """
    spec = find_set(name)
    archives: list = []
    try:
        images = list_images(src, archives)
        if spec.name == "FFHQ":
            chosen, notes = select_ffhq_val(images)
        else:
            chosen, notes = select_hr(images, spec)
        _check_count(spec, chosen, src, allow_count_mismatch, warn)
        for note in notes:
            log(f"{spec.name}: {note}")
        writers = [_FolderWriter(folder, log) for folder in output_folders(root, spec)]
        converted: dict[str, list[str]] = {}
        for stem, source in chosen:
            where = f"{source.path} in {src}"
            img, note = to_bgr8(cv2.imdecode(np.frombuffer(source.read(), np.uint8), cv2.IMREAD_UNCHANGED), where)
            if note:
                converted.setdefault(note, []).append(stem)
            for writer, out in zip(writers, _outputs(spec, img, stem, where)):
                writer.put(stem, out)
    finally:
        for archive in archives:
            archive.close()
    for note, stems in converted.items():
        log(f"{spec.name}: {note}: {', '.join(stems)}")
    for writer in writers:
        log(writer.finish())
    return [w.folder for w in writers]


def _outputs(spec: BenchmarkSet, img: np.ndarray, key: str, where: str) -> Iterator[np.ndarray]:
    """The images to write for one source image, in the order of :func:`output_folders`."""
    if spec.name != "FFHQ":
        yield img
        for scale in spec.lr_scales:
            yield bicubic_down(img, scale, key)
        return
    h, w = img.shape[:2]
    largest = max(FFHQ_SIZES)
    if h != w or h % largest:
        raise BenchmarkSetError(
            f"FFHQ: {where} is {h}x{w}; expected a square image whose side is a multiple of {largest} "
            "(FFHQ's 1024x1024 images)"
        )
    for size in FFHQ_SIZES:
        yield img if size == h else bicubic_down(img, h // size, key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--set", required=True, help=f"which set: {', '.join(SETS)} (any letter case)")
    parser.add_argument("--src", required=True, help="the download: a folder, .zip or .tar holding the set's HR images")
    parser.add_argument("--root", default="datasets", help="datasets folder to write into (default datasets)")
    parser.add_argument(
        "--allow-count-mismatch",
        action="store_true",
        help="prepare a set whose number of HR images differs from the standard one (a custom set), with a warning",
    )
    args = parser.parse_args(argv)
    try:
        folders = prepare_set(args.set, args.src, args.root, args.allow_count_mismatch)
    except BenchmarkSetError as err:
        parser.error(str(err))
    print(f"Prepared {find_set(args.set).name}: {', '.join(folders)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
