"""The two ways `basicsr infer` fails, and how a note about one image is printed."""

from __future__ import annotations

import sys
from pathlib import Path

PROG = "basicsr infer"


class InferError(Exception):
    """Nothing can be restored (bad flags, option file or weights): exit status 2."""


class ImageError(Exception):
    """One image cannot be restored; the others still are."""


def note(path: Path, message: str) -> None:
    """``basicsr infer: PATH: MESSAGE`` on stderr, above the progress bar."""
    from tqdm import tqdm

    tqdm.write(f"{PROG}: {path}: {message}", file=sys.stderr)
