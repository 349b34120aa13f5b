"""``python -m serpent_arch.benchmark COMMAND [args...]``: run one benchmark's ``main`` (COMMANDS lists them)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Subcommand -> module with ``main(argv)``; imported only when chosen (some import much: triton, BasicSR's networks).
# The equal-budget study's commands (budget, layout, contrast, ...) are ``python -m study`` (study/, not installed).
COMMANDS = {
    "network": "serpent_arch.benchmark.network",
    "scan": "serpent_arch.benchmark.scan",
    "scan_cuda": "serpent_arch.benchmark.scan_cuda",
    "triton_build": "serpent_arch.benchmark.triton_build",
    "train": "serpent_arch.benchmark.train",
    "quickstart": "serpent_arch.benchmark.quickstart",
    "gpu": "serpent_arch.benchmark.gpu",
}
USAGE = (
    f"usage: python -m serpent_arch.benchmark {{{','.join(COMMANDS)}}} [args...]"
    " (--help after a command lists its options)"
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmark with the remaining arguments; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown benchmark {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    sys.argv = [f"python -m {COMMANDS[command]}", *rest]  # for the usage lines of argparse
    result = importlib.import_module(COMMANDS[command]).main(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
