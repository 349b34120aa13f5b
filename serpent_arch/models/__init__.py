"""Models; importing this package registers them in BasicSR's MODEL_REGISTRY."""

from serpent_arch.models.serpent_model import SerpentModel

__all__ = ["SerpentModel"]
