"""CAN frames and 29-bit identifiers as GB/T 27930 uses them (J1939-21 PDU1 layout, no python-can).

``ID = P << 26 | DP << 24 | PF << 16 | DA << 8 | SA`` (reference §1). Every GB/T message has PF < 240, so
it is a PDU1 (peer-to-peer) message: PS is the destination address and the PGN is ``PF << 8``.
"""

from __future__ import annotations

from dataclasses import dataclass

CHARGER_ADDRESS = 0x56
BMS_ADDRESS = 0xF4

MAX_DLC = 8


@dataclass(frozen=True, slots=True)
class Frame:
    """One classic CAN frame with a 29-bit identifier. ``data`` holds 0..8 bytes (the DLC is its length)."""

    can_id: int
    data: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.can_id <= 0x1FFF_FFFF:
            raise ValueError(f"CAN id 0x{self.can_id:X} does not fit in 29 bits")
        if len(self.data) > MAX_DLC:
            raise ValueError(f"CAN frame carries {len(self.data)} bytes, at most {MAX_DLC}")

    @property
    def priority(self) -> int:
        return (self.can_id >> 26) & 0x7

    @property
    def pgn(self) -> int:
        """The parameter group number; for PDU1 frames the destination byte is not part of it."""
        dp_pf = (self.can_id >> 16) & 0x1FF  # DP + PF (the reserved bit is not part of it)
        pf = dp_pf & 0xFF
        if pf < 240:
            return dp_pf << 8
        return ((self.can_id >> 8) & 0x3FFFF)

    @property
    def destination(self) -> int:
        return (self.can_id >> 8) & 0xFF

    @property
    def source(self) -> int:
        return self.can_id & 0xFF

    def __str__(self) -> str:  # candump style, handy in assertion messages and logs
        return f"{self.can_id:08X}#{self.data.hex().upper()}"


def make_id(priority: int, pgn: int, destination: int, source: int) -> int:
    """The 29-bit identifier of a PDU1 message (``pgn`` is ``PF << 8``, its low byte must be 0)."""
    if not 0 <= priority <= 7:
        raise ValueError(f"priority {priority} is outside 0..7")
    if pgn & 0xFF or not 0 <= pgn <= 0x3FFFF or ((pgn >> 8) & 0xFF) >= 240:
        raise ValueError(f"PGN 0x{pgn:X} is not a PDU1 PGN (PF < 240, low byte 0)")
    if not (0 <= destination <= 0xFF and 0 <= source <= 0xFF):
        raise ValueError("addresses must be 0..255")
    return (priority << 26) | (pgn << 8) | (destination << 8) | source


def parse_candump_frame(text: str) -> Frame:
    """``1826F456#010100`` -> Frame. Raises ValueError naming what is wrong."""
    ident, sep, payload = text.strip().partition("#")
    if not sep:
        raise ValueError(f"'{text.strip()}' has no '#' between identifier and data")
    if len(ident) != 8:
        raise ValueError(f"'{ident}' is not a 29-bit identifier (8 hex digits)")
    if payload.startswith("R"):
        raise ValueError("remote frames carry no GB/T data")
    try:
        return Frame(int(ident, 16), bytes.fromhex(payload))
    except ValueError as exc:
        raise ValueError(f"'{text.strip()}': {exc}") from None
