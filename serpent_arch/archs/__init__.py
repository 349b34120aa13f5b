"""Networks; importing this package registers them in BasicSR's ARCH_REGISTRY."""

from serpent_arch.archs.presets import PRESETS
from serpent_arch.archs.serpent_arch import Serpent

__all__ = ["PRESETS", "Serpent"]
