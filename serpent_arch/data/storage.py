"""Where images are stored: the image-file extensions read, and LMDB folders.

An LMDB folder (``*.lmdb``) holds ``data.mdb`` and ``meta_info.txt``, whose lines
``name.png (h,w,c) compression`` (written by ``basicsr.utils.lmdb_util``) list its keys and image
shapes. Everything that reads an LMDB folder's listing or checks its integrity uses this module.
"""

from __future__ import annotations

import re
from os import path as osp
from typing import NamedTuple

__all__ = ["IMAGE_EXTENSIONS", "LmdbEntry", "is_image_file", "lmdb_entries", "lmdb_problems", "listing"]

# Extensions that OpenCV decodes, lower case; image folders are filtered with them everywhere.
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")

# The name may contain dots and spaces (BasicSR's own paths_from_lmdb cuts it at the first '.').
_META_LINE = re.compile(r"^(?P<name>.+?) \((?P<shape>\d+(?:, ?\d+)*)\) \d+$")
_MAX_LISTED = 5


class LmdbEntry(NamedTuple):
    """One line of ``meta_info.txt``: the key (name without extension) and (h, w) if stated."""

    key: str
    hw: tuple[int, int] | None


def is_image_file(name: str) -> bool:
    """Whether a file name has an image extension and is not hidden."""
    return name.lower().endswith(IMAGE_EXTENSIONS) and not osp.basename(name).startswith(".")


def lmdb_entries(lmdb_dir: str) -> list[LmdbEntry]:
    """The keys (and shapes) listed in ``lmdb_dir/meta_info.txt``, in file order."""
    entries = []
    with open(osp.join(lmdb_dir, "meta_info.txt")) as f:
        for raw in f:
            line = raw.strip()
            if not line:
                continue
            match = _META_LINE.match(line)
            if match:
                dims = [int(v) for v in match.group("shape").split(",")]
                entries.append(LmdbEntry(osp.splitext(match.group("name"))[0], (dims[0], dims[1])))
            else:  # a plain ``name`` line (meta_info files written by hand)
                entries.append(LmdbEntry(osp.splitext(line.split()[0])[0], None))
    return entries


def listing(items: list[str]) -> str:
    """The first few of ``items`` for a message, with the count of the rest."""
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f", ... ({len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def lmdb_problems(lmdb_dir: str, check_keys: bool = True) -> list[str]:
    """What is wrong with an LMDB folder: no meta_info.txt or data.mdb, a truncated or foreign
    data.mdb, or (``check_keys``) keys listed in meta_info.txt that the database lacks."""
    import lmdb

    meta, data_file = osp.join(lmdb_dir, "meta_info.txt"), osp.join(lmdb_dir, "data.mdb")
    if not osp.isfile(data_file):
        return [f"LMDB {lmdb_dir} has no data.mdb: not an LMDB folder"]
    if not osp.isfile(meta):
        return [f"LMDB {lmdb_dir} has no meta_info.txt listing its keys (datasets/make_lmdb.py writes it)"]
    try:
        env = lmdb.open(lmdb_dir, readonly=True, lock=False, readahead=False, meminit=False)
    except lmdb.Error as err:
        return [f"LMDB {lmdb_dir} cannot be opened: {err}"]
    try:
        # Reading a page beyond the end of a truncated data.mdb is a SIGBUS, not an exception.
        needed = (env.info()["last_pgno"] + 1) * env.stat()["psize"]
        size = osp.getsize(data_file)
        if size < needed:
            return [f"LMDB {data_file} is truncated: {size} bytes, its header says {needed}; copy or rebuild it"]
        if not check_keys:
            return []
        with env.begin() as txn:
            stored = {bytes(key).decode("utf-8", "replace") for key in txn.cursor().iternext(values=False)}
    except lmdb.Error as err:
        return [f"LMDB {lmdb_dir} is damaged: {err}"]
    finally:
        env.close()
    listed = [entry.key for entry in lmdb_entries(lmdb_dir)]
    missing = [key for key in listed if key not in stored]
    if missing:
        return [
            f"LMDB {lmdb_dir}: {len(missing)} of the {len(listed)} keys in meta_info.txt are not in the database "
            f"({listing(missing)}); rebuild it with datasets/make_lmdb.py"
        ]
    return []
