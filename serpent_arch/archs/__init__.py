"""Networks; importing this package registers them in BasicSR's ARCH_REGISTRY."""

from serpent_arch.archs.serpent_arch import VARIANTS, Serpent

__all__ = ["Serpent", "VARIANTS"]
