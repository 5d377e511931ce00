"""Store-and-forward outbox: every telemetry, event and report message is on disk before it is sent.

One SQLite file (WAL). A row is deleted only when the broker's PUBACK for it arrived, so nothing is lost
while the broker is away or the controller restarts. Every row gets a sequence number (``seq``, the
AUTOINCREMENT rowid: strictly increasing across restarts, never reused) and is sent in ``seq`` order.

Duplicates are never silent: ``sent_hwm`` (persisted *before* a row is handed to the client) is the
highest ``seq`` ever sent. A row sent again after a lost connection or a restart has ``seq <= sent_hwm``
and goes out with ``"replay": true`` (the broker may already have had it: its PUBACK was lost).
A row is ``"historical": true`` when it is published on a later connection than the one it was queued on
(it waited through an outage or a restart); see :func:`stamp`.

Bounds (``mqtt.outbox``): rows older than ``max_age_s`` are dropped, and when the stored bodies exceed
``max_bytes`` the oldest are dropped, telemetry before events and reports. Drop counters are persisted
and published (telemetry ``outbox`` block and an ``outbox_dropped`` event).

All methods are thread-safe (one connection behind a lock); in the link a single pump thread does the
work, so one transaction (one fsync) covers a batch of inserts, the deletes of a batch of PUBACKs and the
claim of the next batch to send.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from station.config import OutboxConfig

log = logging.getLogger(__name__)

PRIORITY_TELEMETRY = 0  # dropped first when the outbox is full
PRIORITY_EVENT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    body BLOB NOT NULL,
    priority INTEGER NOT NULL,
    created_at REAL NOT NULL,
    conn_gen INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_created ON outbox(created_at);
CREATE INDEX IF NOT EXISTS outbox_priority ON outbox(priority, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
_COUNTERS = ("sent_hwm", "conn_gen", "dropped_age", "dropped_size", "rejected_by_broker")


@dataclass(frozen=True, slots=True)
class Row:
    seq: int
    topic: str
    body: bytes
    priority: int
    created_at: float
    conn_gen: int


@dataclass(frozen=True, slots=True)
class Drop:
    """Rows removed by a bound: why, how many, their bytes and seq range."""

    reason: str  # "age" or "size"
    count: int
    bytes: int
    first_seq: int
    last_seq: int


def stamp(body: bytes, seq: int, historical: bool, replay: bool) -> bytes:
    """Prefix the stream header to a stored JSON object body without re-parsing it.

    ``body`` is our own ``json.dumps`` of a non-empty object (``{"v":1,...}``), so splicing after the
    opening brace is exact and ~20x cheaper than load/modify/dump on every (re)send.
    """
    head = b'{"seq":%d,"historical":%s,"replay":%s,' % (
        seq, b"true" if historical else b"false", b"true" if replay else b"false")
    return head + body[1:]


class Outbox:
    def __init__(
        self,
        path: str | Path,
        *,
        max_age_s: float = 7 * 24 * 3600.0,
        max_bytes: int = 256 * 1024 * 1024,
        fsync: bool = True,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_age_s = max_age_s
        self.max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self.quarantined: Path | None = None  # where an unreadable outbox file was moved at open
        try:
            self._open(fsync)
        except sqlite3.DatabaseError as exc:
            # A corrupt file must not keep the station off the air: set it aside for analysis, start empty.
            self._db.close()
            self.quarantined = self.path.with_name(f"{self.path.name}.corrupt-{int(clock())}")
            self.path.rename(self.quarantined)
            for suffix in ("-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)
            log.error("outbox %s unreadable (%s): moved to %s, starting empty", self.path, exc, self.quarantined)
            self._open(fsync)

    def _open(self, fsync: bool) -> None:
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # FULL: each commit is fsynced (survives power loss). NORMAL: survives a process crash, not power loss.
        self._db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        for key in _COUNTERS:
            self._db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES (?, 0)", (key,))
        self._meta = {k: v for k, v in self._db.execute("SELECT key, value FROM meta")}
        count, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(length(body)), 0) FROM outbox").fetchone()
        self._count = int(count)
        self._bytes = int(size)

    @classmethod
    def from_config(cls, cfg: OutboxConfig, base_dir: Path = Path("."),
                    clock: Callable[[], float] = time.time) -> Outbox:
        path = Path(cfg.path)
        return cls(path if path.is_absolute() else base_dir / path, max_age_s=cfg.max_age_s,
                   max_bytes=cfg.max_bytes, fsync=cfg.fsync_each_commit, clock=clock)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ state

    @property
    def sent_hwm(self) -> int:
        return self._meta["sent_hwm"]

    def stats(self) -> dict[str, int | float | None]:
        """The ``outbox`` block of the telemetry."""
        with self._lock:
            oldest = self._db.execute("SELECT MIN(created_at) FROM outbox").fetchone()[0]
            return {
                "pending": self._count,
                "pending_bytes": self._bytes,
                "oldest_age_s": None if oldest is None else max(0.0, self._clock() - oldest),
                "dropped_age": self._meta["dropped_age"],
                "dropped_size": self._meta["dropped_size"],
                "rejected_by_broker": self._meta["rejected_by_broker"],
            }

    def new_generation(self) -> int:
        """A new connection to the broker: rows queued before it are historical from now on."""
        with self._lock, self._tx():
            return self._bump("conn_gen", 1)

    # ------------------------------------------------------------------ one transaction

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """One transaction (one fsync) for any mix of appends, deletes and claims."""
        with self._lock, self._tx():
            yield Batch(self)

    def append(self, topic: str, body: bytes, priority: int, conn_gen: int = 0) -> int:
        """Store one message durably (convenience for single writes; the link batches)."""
        with self.batch() as b:
            return b.append(topic, body, priority, conn_gen)

    # ------------------------------------------------------------------ internals (lock held)

    @contextmanager
    def _tx(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        saved = (dict(self._meta), self._count, self._bytes)
        try:
            yield
        except BaseException:
            if self._db.in_transaction:  # SQLite has already rolled back after some errors (disk full)
                self._db.execute("ROLLBACK")
            self._meta, self._count, self._bytes = saved
            raise
        self._db.execute("COMMIT")

    def _bump(self, key: str, by: int) -> int:
        self._meta[key] += by
        self._db.execute("UPDATE meta SET value = ? WHERE key = ?", (self._meta[key], key))
        return self._meta[key]

    def _drop(self, reason: str, where: str, args: tuple[object, ...]) -> Drop | None:
        count, size, lo, hi = self._db.execute(
            f"SELECT COUNT(*), COALESCE(SUM(length(body)), 0), MIN(seq), MAX(seq) FROM outbox WHERE {where}", args
        ).fetchone()
        if not count:
            return None
        self._db.execute(f"DELETE FROM outbox WHERE {where}", args)
        self._count -= count
        self._bytes -= size
        self._bump(f"dropped_{reason}", count)
        return Drop(reason, count, size, lo, hi)


class Batch:
    """Operations inside one outbox transaction (see :meth:`Outbox.batch`)."""

    def __init__(self, box: Outbox) -> None:
        self._box = box
        self._db = box._db

    def append(self, topic: str, body: bytes, priority: int, conn_gen: int = 0) -> int:
        box = self._box
        cur = self._db.execute(
            "INSERT INTO outbox(topic, body, priority, created_at, conn_gen) VALUES (?, ?, ?, ?, ?)",
            (topic, body, priority, box._clock(), conn_gen),
        )
        box._count += 1
        box._bytes += len(body)
        return int(cur.lastrowid or 0)

    def delete(self, seqs: Iterable[int]) -> None:
        box = self._box
        for seq in seqs:
            row = self._db.execute("SELECT length(body) FROM outbox WHERE seq = ?", (seq,)).fetchone()
            if row is not None:
                self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))
                box._count -= 1
                box._bytes -= int(row[0])

    def count_rejected(self, n: int) -> None:
        """Rows the broker refused (MQTT 5 PUBACK reason >= 0x80): deleted, counted, never retried."""
        self._box._bump("rejected_by_broker", n)

    def enforce_bounds(self) -> list[Drop]:
        """Apply ``max_age_s`` then ``max_bytes`` (oldest telemetry first, then oldest events)."""
        box = self._box
        drops: list[Drop] = []
        aged = box._drop("age", "created_at < ?", (box._clock() - box.max_age_s,))
        if aged:
            drops.append(aged)
        if box._bytes > box.max_bytes:
            excess = box._bytes - box.max_bytes
            cut_priority, cut_seq, freed = PRIORITY_TELEMETRY, -1, 0
            cur = self._db.execute("SELECT priority, seq, length(body) FROM outbox ORDER BY priority, seq")
            for priority, seq, size in cur:
                cut_priority, cut_seq = priority, seq
                freed += size
                if freed >= excess:
                    break
            cur.close()
            sized = box._drop("size", "priority < ? OR (priority = ? AND seq <= ?)",
                              (cut_priority, cut_priority, cut_seq))
            if sized:
                drops.append(sized)
        return drops

    def max_seq(self) -> int:
        """The highest seq stored (0 when empty)."""
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0])

    def claim(self, after_seq: int, limit: int) -> list[Row]:
        """The next rows to send (``seq > after_seq``, in order); raises ``sent_hwm`` over them first,
        so a crash after sending can never lead to an unmarked resend."""
        rows = [Row(*r) for r in self._db.execute(
            "SELECT seq, topic, body, priority, created_at, conn_gen FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )]
        if rows and rows[-1].seq > self._box._meta["sent_hwm"]:
            self._box._bump("sent_hwm", rows[-1].seq - self._box._meta["sent_hwm"])
        return rows
