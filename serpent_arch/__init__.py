"""Serpent for BasicSR.

Importing this package makes BasicSR usable on current torch (see :mod:`serpent_arch.compat`)
and registers the Serpent network (``ARCH_REGISTRY``), ``SerpentModel`` (``MODEL_REGISTRY``)
and the on-the-fly degradation dataset (``DATASET_REGISTRY``).
"""

import os

# torch's OpenMP threads spin-wait ~300k cycles at every barrier. When another process holds one
# of the cores, a spinning thread keeps a descheduled partner from running, and a CPU training step
# of the quick start took 5.3 s instead of 0.1 s. A short spin costs nothing on an idle machine
# (measured 0.096 vs 0.098 s per step) and keeps a busy one usable (0.21 s). Only takes effect when
# torch is imported after this package and the user has set neither variable.
if "GOMP_SPINCOUNT" not in os.environ and "OMP_WAIT_POLICY" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"

from serpent_arch import compat  # noqa: E402

compat.apply()

from serpent_arch import archs, data, models  # noqa: E402,F401  (importing registers the classes)

__version__ = "0.2.0"
