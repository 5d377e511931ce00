"""Every multi-packet transfer of the real traces, rebuilt by our transport's sender side, is the same
frames byte for byte: the RTS (size, packet count, window, PGN) and each TP.DT (sequence byte, 7 data
bytes, the last padded with 0xFF) that the real vehicle sent. The codec test checks the reassembled
payloads; this checks the framing around them, which a vehicle's receiver would judge us by."""

from __future__ import annotations

from pathlib import Path

import pytest

from drivers.gbt27930.frame import Frame, make_id
from drivers.gbt27930.transport import (
    TP_CM_PGN,
    TP_DT_PGN,
    TP_PRIORITY,
    Reassembled,
    TpObserver,
    cm_rts,
    dt_payloads,
    packets_for,
)
from tests.gbt.helpers import TP_TRANSFERS, TRACE_NAMES, load


@pytest.mark.parametrize("name", TRACE_NAMES)
def test_every_real_transfer_is_rebuilt_frame_for_frame(traces: Path, name: str) -> None:
    rebuilt = 0
    for sender, receiver in ((0xF4, 0x56), (0x56, 0xF4)):
        observer = TpObserver(sender, receiver)
        rts: Frame | None = None
        dts: list[Frame] = []
        for lf in load(traces / name):
            f = lf.frame
            if f.source != sender or f.destination != receiver or f.pgn not in (TP_CM_PGN, TP_DT_PGN):
                observer.observe(f)
                continue
            if f.pgn == TP_CM_PGN and f.data[0] == 0x10:
                rts, dts = f, []
            elif f.pgn == TP_DT_PGN and rts is not None and (not dts or f.data[0] != dts[-1].data[0]):
                dts.append(f)  # a repeated DT (same sequence number) is the sender's retry, not a new one
            for ev in observer.observe(f):
                if not isinstance(ev, Reassembled):
                    continue
                assert rts is not None
                window = rts.data[4]
                assert rts.data == cm_rts(len(ev.data), packets_for(len(ev.data)), window, ev.pgn)
                assert rts.can_id == make_id(TP_PRIORITY, TP_CM_PGN, receiver, sender)
                ours = [Frame(make_id(TP_PRIORITY, TP_DT_PGN, receiver, sender), p) for p in dt_payloads(ev.data)]
                assert dts == ours, (hex(ev.pgn), [d.data.hex() for d in dts], [o.data.hex() for o in ours])
                rebuilt += 1
                rts, dts = None, []
    assert rebuilt == TP_TRANSFERS[name]
