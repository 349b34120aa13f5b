"""``python -m serpent_arch.benchmark COMMAND [args...]``: run one benchmark's ``main`` (COMMANDS lists them)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from serpent_arch import subcommands

# Subcommand -> module with ``main(argv)``; imported only when chosen (some import much: triton, BasicSR's networks).
# The equal-budget study's commands (budget, layout, contrast, ...) are ``python -m study`` (study/, not installed).
COMMANDS = {
    "network": "serpent_arch.benchmark.network",
    "scan": "serpent_arch.benchmark.scan",
    "scan_cuda": "serpent_arch.benchmark.scan_cuda",
    "cross_scan_cuda": "serpent_arch.benchmark.cross_scan_cuda",
    "triton_build": "serpent_arch.benchmark.triton_build",
    "train": "serpent_arch.benchmark.train",
    "fused": "serpent_arch.benchmark.fused",
    "versus": "serpent_arch.benchmark.versus",
    "quickstart": "serpent_arch.benchmark.quickstart",
    "export": "serpent_arch.benchmark.export",
    "gpu": "serpent_arch.benchmark.gpu",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen command with the remaining arguments; returns the exit status."""
    return subcommands.run("python -m serpent_arch.benchmark", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
