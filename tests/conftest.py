"""Import serpent_arch before anything imports torch, so its OpenMP setting (GOMP_SPINCOUNT) applies to
every test: on a busy 2-core machine torch's default spin-waiting makes small ops 5-10x slower."""

import serpent_arch  # noqa: F401
