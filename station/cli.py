"""The ``station`` command. Sub-commands are registered by module path and imported lazily, so each area
owns its command next to its code and ``station --help`` does not pay for Numba or the drivers.

A command module provides ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``; the
module itself must import cheaply (heavy imports go inside ``run``)."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Mapping, Sequence

COMMANDS: dict[str, str] = {
    "check-config": "station.commands.check_config",
    "allocate": "station.commands.allocate",
    "gbt": "drivers.gbt27930.cli",
}


def build_parser(prog: str, description: str, commands: Mapping[str, str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_path in commands.items():
        module = importlib.import_module(module_path)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def dispatch(prog: str, description: str, commands: Mapping[str, str], argv: Sequence[str] | None) -> int:
    """Shared entry point of ``station`` and ``station-hil``."""
    parser = build_parser(prog, description, commands)
    args = parser.parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # e.g. `station gbt decode x | head`
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("station", "Station controller for megawatt EV charging stations.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
