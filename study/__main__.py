"""``python -m study COMMAND [args...]`` (from the repository root): run one of the study's commands (COMMANDS)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from serpent_arch import subcommands

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
    "edges": "study.edges",
    "edges_breakdown": "study.edges_breakdown",
    "colour_set": "study.colour_set",
    "colour_report": "study.colour_report",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen command with the remaining arguments; returns the exit status."""
    return subcommands.run("python -m study", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
