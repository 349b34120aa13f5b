"""Data: on-the-fly degradations, the ``DegradedImageDataset`` and the built-in sample set.

Importing this package registers ``DegradedImageDataset`` in BasicSR's ``DATASET_REGISTRY``.
"""

from serpent_arch.data.degradations import (
    DEGRADATION_TYPES,
    DegradationPipeline,
    build_degradations,
    deterministic_rng,
)
from serpent_arch.data.degraded_image_dataset import DegradedImageDataset
from serpent_arch.data.sample import prepare_sample_set

__all__ = [
    "DEGRADATION_TYPES",
    "DegradationPipeline",
    "DegradedImageDataset",
    "build_degradations",
    "deterministic_rng",
    "prepare_sample_set",
]
