"""``python -m study COMMAND [args...]`` (from the repository root): run one of the study's commands (COMMANDS)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# Subcommand -> module with ``main(argv)``; imported only when chosen (some import much: BasicSR's networks).
COMMANDS = {
    "budget": "study.budget",
    "tables": "study.tables",
    "options": "study.contenders",
    "layout": "study.layout",
    "upsampler": "study.upsampler",
    "contrast": "study.contrast",
    "spectrum": "study.spectrum",
    "dark": "study.dark",
    "colour_set": "study.colour_set",
    "colour_report": "study.colour_report",
}
USAGE = f"usage: python -m study {{{','.join(COMMANDS)}}} [args...] (--help after a command lists its options)"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen command with the remaining arguments; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"unknown study command {command!r}\n{USAGE}", file=sys.stderr)
        return 2
    sys.argv = [f"python -m study {command}", *rest]  # for the usage lines of argparse
    result = importlib.import_module(COMMANDS[command]).main(rest)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
