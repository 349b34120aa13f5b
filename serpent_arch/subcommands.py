"""One command of several, each a module with ``main(argv) -> exit status`` imported only when chosen (some
import much: triton, BasicSR's networks): the dispatch of ``python -m serpent_arch.benchmark`` and of the
study's ``python -m study``."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence


def run(prog: str, commands: dict[str, str], argv: Sequence[str] | None = None) -> int:
    """Run ``commands[argv[0]]``'s ``main`` with the rest of ``argv`` (default ``sys.argv[1:]``); usage and
    exit status 2 for no command or an unknown one."""
    usage = f"usage: {prog} {{{','.join(commands)}}} [args...] (--help after a command lists its options)"
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command not in commands:
        print(f"{prog}: unknown command {command!r}\n{usage}", file=sys.stderr)
        return 2
    sys.argv = [f"{prog} {command}", *rest]  # for the usage lines of argparse
    result = importlib.import_module(commands[command]).main(rest)
    return result if isinstance(result, int) else 0
