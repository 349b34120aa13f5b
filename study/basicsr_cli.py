"""``python -m study.basicsr_cli ARGS``: ``basicsr ARGS`` with the study's own networks registered (PlainUNet);
the budget command runs its ``basicsr train`` / ``basicsr test`` subprocesses through it."""

from __future__ import annotations

import sys

import serpent_arch  # noqa: F401  (registers Serpent and BasicSR's compat fixes first)
import study.plain_unet  # noqa: F401
from serpent_arch.cli import main

if __name__ == "__main__":
    sys.exit(main())
