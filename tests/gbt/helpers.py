"""Helpers shared by the GB/T tests."""

from __future__ import annotations

from pathlib import Path

from drivers.gbt27930.candump import LogFrame, read_candump

TRACE_NAMES = ("candump-2023-12-25_220841.log", "candump2.log", "candump3.log")
T1 = TRACE_NAMES[0]
# completed transfers per trace (BRM + BCP + BCS), counted by hand from the TP.CM frames
TP_TRANSFERS = {TRACE_NAMES[0]: 112, TRACE_NAMES[1]: 0, TRACE_NAMES[2]: 296}


def load(path: Path) -> list[LogFrame]:
    items = list(read_candump(path.read_text(encoding="ascii").splitlines()))
    bad = [i for i in items if not isinstance(i, LogFrame)]
    assert not bad, bad[:3]
    return items  # type: ignore[return-value]
