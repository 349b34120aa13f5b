"""Serpent for BasicSR.

Importing this package makes BasicSR usable on current torch (see :mod:`serpent_arch.compat`)
and registers the Serpent network (``ARCH_REGISTRY``), ``SerpentModel`` (``MODEL_REGISTRY``)
and the on-the-fly degradation dataset (``DATASET_REGISTRY``).
"""

from serpent_arch import compat

compat.apply()

from serpent_arch import archs, data, models  # noqa: E402,F401  (importing registers the classes)

__version__ = "0.1.0"
