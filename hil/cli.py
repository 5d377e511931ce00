"""The ``station-hil`` command: simulators and bench tools (same lazy registry as ``station``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from station.cli import dispatch

COMMANDS: dict[str, str] = {
    "can-hub": "hil.can_hub",
    "bms": "hil.bms.cli",
    "sim": "hil.commands.sim",
    "compare": "hil.commands.compare",
    "device": "hil.devices.cli",
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("station-hil", "Simulators, scenarios and the HIL bench.", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
