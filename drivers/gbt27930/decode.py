"""Passive decoding of a GB/T 27930 capture into one record per message, transport-reassembled.

A field engineer's view of a log: every single-frame message and every completed TP transfer becomes a
JSON-ready dict ``{"t", "name", "from", "id", "fields"}`` (plus ``"packets"`` for TP messages). Malformed
messages, aborted transfers and unparsable lines become records with an ``"error"`` key; nothing stops the
decode. TP.CM/TP.DT frames themselves are folded into the messages they carry.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from drivers.gbt27930.candump import LogFrame, LogLineError
from drivers.gbt27930.frame import BMS_ADDRESS, CHARGER_ADDRESS, Frame
from drivers.gbt27930.messages import BY_PGN, MalformedMessage
from drivers.gbt27930.transport import TP_CM_PGN, TP_DT_PGN, Reassembled, TpObserver, TransferAborted

_NODES = {CHARGER_ADDRESS: "charger", BMS_ADDRESS: "bms"}


def _between_nodes(frame: Frame) -> bool:
    return {frame.source, frame.destination} == {CHARGER_ADDRESS, BMS_ADDRESS}


class Decoder:
    """Feed frames in time order; each call returns the records they complete."""

    def __init__(self, include_foreign: bool = False) -> None:
        self.include_foreign = include_foreign
        self._observers = {
            BMS_ADDRESS: TpObserver(BMS_ADDRESS, CHARGER_ADDRESS),
            CHARGER_ADDRESS: TpObserver(CHARGER_ADDRESS, BMS_ADDRESS),
        }

    def feed(self, t: float, frame: Frame) -> list[dict[str, Any]]:
        if not _between_nodes(frame):
            if self.include_foreign:
                return [{"t": t, "name": None, "id": f"{frame.can_id:08X}", "data": frame.data.hex().upper(),
                         "note": "not between charger 0x56 and BMS 0xF4"}]
            return []
        pgn = frame.pgn
        if pgn in (TP_CM_PGN, TP_DT_PGN):
            out = []
            for observer in self._observers.values():
                for ev in observer.observe(frame):
                    sender = _NODES[observer.sender]
                    if isinstance(ev, Reassembled):
                        out.append(self._message(t, ev.pgn, ev.data, sender, None, ev.packets))
                    elif isinstance(ev, TransferAborted):
                        name = BY_PGN[ev.pgn].NAME if ev.pgn in BY_PGN else f"PGN 0x{ev.pgn:04X}"
                        out.append({"t": t, "name": name, "from": sender, "error": f"transfer aborted: {ev.detail}"})
            return out
        return [self._message(t, pgn, frame.data, _NODES[frame.source], frame, None)]

    def _message(self, t: float, pgn: int, data: bytes, sender: str, frame: Frame | None,
                 packets: int | None) -> dict[str, Any]:
        record: dict[str, Any] = {"t": t}
        cls = BY_PGN.get(pgn)
        record["name"] = cls.NAME if cls else None
        record["from"] = sender
        if frame is not None:
            record["id"] = f"{frame.can_id:08X}"
        if packets is not None:
            record["packets"] = packets
        if cls is None:
            record["error"] = f"PGN 0x{pgn:04X} is not a GB/T 27930 message"
            record["data"] = data.hex().upper()
            return record
        if cls.SENDER.value != sender:
            record["warning"] = f"{cls.NAME} is sent by the {cls.SENDER.value}, not the {sender}"
        try:
            record["fields"] = cls.decode(data).fields()
        except MalformedMessage as exc:
            record["error"] = exc.reason
            record["data"] = data.hex().upper()
        return record


def decode_log(items: Iterable[LogFrame | LogLineError], include_foreign: bool = False) -> Iterator[dict[str, Any]]:
    decoder = Decoder(include_foreign)
    for item in items:
        if isinstance(item, LogLineError):
            yield {"error": item.reason} if item.line_no is None else {"line": item.line_no, "error": item.reason}
            continue
        yield from decoder.feed(item.t, item.frame)
