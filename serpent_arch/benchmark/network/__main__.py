"""``python -m serpent_arch.benchmark.network``: the same as ``python -m serpent_arch.benchmark network``."""

from serpent_arch.benchmark.network.cli import main

main()
