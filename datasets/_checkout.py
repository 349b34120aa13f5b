"""Imported first by every script in this folder: makes ``serpent_arch`` importable when a script
runs from a checkout without ``pip install -e .``, and imports it, which applies the BasicSR
compatibility fixes before anything loads ``basicsr``."""

import sys
from os import path as osp

try:
    import serpent_arch  # noqa: F401
except ModuleNotFoundError:
    sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
    import serpent_arch  # noqa: F401
