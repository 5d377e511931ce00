"""The SQLite outbox on a real file: order, durability across reopen, replay marking, bounds, drops."""

from __future__ import annotations

import json
from pathlib import Path

from drivers.mqtt.outbox import PRIORITY_EVENT, PRIORITY_TELEMETRY, Outbox, stamp
from tests.conftest import ManualClock as Clock


def body(i: int, pad: int = 0) -> bytes:
    """A message body whose size depends only on ``pad``."""
    return json.dumps({"v": 1, "i": f"{i:04d}", "pad": "x" * pad}).encode()


def test_stamp_adds_the_stream_header_and_stays_json() -> None:
    out = json.loads(stamp(b'{"v":1,"ts":2.5}', 42, True, False))
    assert out == {"seq": 42, "historical": True, "replay": False, "v": 1, "ts": 2.5}


def test_rows_survive_reopen_in_order_and_seq_is_never_reused(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    seqs = [box.append("t", body(i), PRIORITY_TELEMETRY) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    with box.batch() as b:
        b.delete([4, 5])
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    with box.batch() as b:
        rows = b.claim(0, 100)
    assert [json.loads(r.body)["i"] for r in rows] == ["0000", "0001", "0002"]
    assert box.append("t", body(9), PRIORITY_TELEMETRY) == 6  # AUTOINCREMENT: 4 and 5 never come back
    assert box.stats()["pending"] == 4


def test_claim_raises_the_sent_mark_before_sending(tmp_path: Path) -> None:
    """What was claimed once counts as possibly delivered, even if the process dies right after."""
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(4):
        box.append("t", body(i), PRIORITY_TELEMETRY)
    with box.batch() as b:
        assert [r.seq for r in b.claim(0, 2)] == [1, 2]
    box.close()  # "SIGKILL" before any PUBACK
    box = Outbox(tmp_path / "o.sqlite")
    assert box.sent_hwm == 2  # so rows 1 and 2 go out again with replay=true, 3 and 4 without


def test_connection_generation_is_persisted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    assert box.new_generation() == 1
    box.close()
    assert Outbox(tmp_path / "o.sqlite").new_generation() == 2


def test_age_bound_drops_old_rows_and_counts_them(tmp_path: Path) -> None:
    clock = Clock(1_800_000_000.0)
    box = Outbox(tmp_path / "o.sqlite", max_age_s=60.0, clock=clock)
    for i in range(3):
        box.append("t", body(i), PRIORITY_TELEMETRY)
        clock.t += 20
    box.append("e", body(99), PRIORITY_EVENT)  # created at +60
    clock.t += 30  # now +90: rows created at +0 and +20 are older than 60 s
    with box.batch() as b:
        drops = b.enforce_bounds()
    assert [(d.reason, d.count, d.first_seq, d.last_seq) for d in drops] == [("age", 2, 1, 2)]
    box.close()
    box = Outbox(tmp_path / "o.sqlite", max_age_s=60.0, clock=clock)
    stats = box.stats()
    assert (stats["pending"], stats["dropped_age"], stats["oldest_age_s"]) == (2, 2, 50.0)


def test_size_bound_drops_oldest_telemetry_before_any_event(tmp_path: Path) -> None:
    size = len(body(0, 100))
    box = Outbox(tmp_path / "o.sqlite", max_bytes=5 * size)
    box.append("e", body(0, 100), PRIORITY_EVENT)  # oldest of all, but an event
    for i in range(1, 5):
        box.append("t", body(i, 100), PRIORITY_TELEMETRY)
    with box.batch() as b:
        b.append("t", body(5, 100), PRIORITY_TELEMETRY)
        b.append("e", body(6, 100), PRIORITY_EVENT)
        drops = b.enforce_bounds()
    assert [(d.reason, d.count, d.first_seq, d.last_seq) for d in drops] == [("size", 2, 2, 3)]
    with box.batch() as b:
        kept = [r.seq for r in b.claim(0, 100)]
    assert kept == [1, 4, 5, 6, 7]
    assert box.stats()["pending_bytes"] <= 5 * size
    # only events left beyond the bound: then events go too, oldest first
    with box.batch() as b:
        b.delete([4, 5, 6])
        for i in range(5):
            b.append("e", body(10 + i, 100), PRIORITY_EVENT)
        drops = b.enforce_bounds()
    assert [(d.count, d.first_seq) for d in drops] == [(2, 1)]
    assert box.stats()["dropped_size"] == 4


def test_rejected_by_broker_is_counted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite")
    with box.batch() as b:
        b.count_rejected(3)
    assert box.stats()["rejected_by_broker"] == 3


def test_unreadable_outbox_is_set_aside_and_the_station_keeps_going(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite"
    path.write_bytes(b"this is not a database, a flash cell flipped " * 100)
    box = Outbox(path, clock=Clock(1_800_000_000.0))
    assert box.quarantined == tmp_path / "o.sqlite.corrupt-1800000000"
    assert box.quarantined.read_bytes().startswith(b"this is not a database")
    assert box.append("t", body(1), PRIORITY_TELEMETRY) == 1
