"""The station's MQTT link to the grid operator's broker.

Client library: paho-mqtt 2.x (``CallbackAPIVersion.VERSION2``), not aiomqtt. The outbox needs the
broker's PUBACK per message id (``on_publish``) to delete exactly the acknowledged row, and the control
cycle is a thread, not a coroutine; paho gives both directly, while aiomqtt hides message ids behind an
awaitable per publish and needs an event loop the station would run only for this. We drive paho's
``loop()`` from our own thread instead of ``loop_start()``/``loop_forever()``, because their built-in
reconnect silently re-sends in-flight messages with unchanged payloads (``dup`` flag only): exactly the
unmarked duplicates the outbox promises never to produce. Each connection gets a fresh client; rows
whose PUBACK never came are re-sent by the outbox with ``"replay": true``.

Threads:

- ``mqtt-net``: connect (TLS, will, MQTT 5 or 3.1.1), run the network loop, answer ``dispatch/set``
  messages (the handler runs here; acks are published at once, QoS 1, not stored: a request nobody
  answered is re-sent by the operator), reconnect with capped, jittered backoff.
- ``mqtt-outbox``: commit queued messages to the outbox, delete PUBACKed rows, claim and publish the next
  rows in ``seq`` order, at most ``max_inflight_messages`` unacknowledged at a time.

Producers (the control cycle) call :meth:`MqttLink.publish_telemetry` & co., which only append to an
in-memory queue: no disk or network wait in the cycle. A message is durable once the pump has committed
it (``on_committed`` reports seqs; the window is one pump iteration, typically a few milliseconds).
"""

from __future__ import annotations

import contextlib
import logging
import random
import socket
import sqlite3
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from drivers.mqtt.backoff import Backoff
from drivers.mqtt.outbox import PRIORITY_EVENT, PRIORITY_TELEMETRY, Drop, Outbox, Row, stamp
from drivers.mqtt.topics import StationTopics
from station import telemetry as payloads

if TYPE_CHECKING:
    from paho.mqtt.reasoncodes import ReasonCode

    from station.config import MqttConfig, TlsConfig

log = logging.getLogger(__name__)

DispatchHandler = Callable[[bytes], Sequence[Mapping[str, Any]]]
"""Called with each ``dispatch/set`` payload; returns the ack payloads to publish (one per setpoint)."""

_HEADER = frozenset(("seq", "historical", "replay"))  # stamped on by the outbox (drivers/mqtt/outbox.py)
_LOOP_TIMEOUT_S = 0.1  # how long one network loop waits in select(): bounds the reaction to stop()
_AGE_CHECK_S = 1.0  # the pump wakes at least this often to apply the outbox age bound
_SHUTDOWN_FLUSH_S = 2.0
_OUTBOX_RETRY_S = 1.0  # wait after a failed outbox transaction  # how long a clean stop waits for the offline status to be acknowledged


@dataclass
class LinkStats:
    """Counters for telemetry/health (read without a lock: each is written by one thread)."""

    connects: int = 0
    connect_failures: int = 0
    disconnects: int = 0
    last_error: str = ""
    dispatch_received: int = 0
    acks_sent: int = 0
    delivered: int = 0  # outbox rows acknowledged by the broker
    replayed: int = 0  # outbox rows sent with replay=true
    queue_full_drops: int = 0
    handler_errors: int = 0
    outbox_failures: int = 0  # failed outbox transactions (disk full, I/O error); retried
    outbox_error: str = ""  # the last one, "" once writes work again


@dataclass(frozen=True, slots=True)
class _Committed:
    """What one pump transaction did."""

    seqs: list[int]  # newly stored
    drops: list[Drop]
    rows: list[Row]  # claimed, to send now
    hwm_before: int  # sent_hwm before the claim: rows at or below it were sent before (replays)
    stored_max: int


@dataclass(eq=False)
class _Connection:
    """One TCP/TLS connection and what is in flight on it."""

    client: mqtt.Client
    gen: int = 0
    accepted: bool = False
    refused: bool = False
    dead: bool = False
    since: float = 0.0  # wall-clock time of the CONNACK
    cursor: int = 0  # highest outbox seq handed to this connection
    inflight: dict[int, int] = field(default_factory=dict)  # mid -> outbox seq
    early: dict[int, bool] = field(default_factory=dict)  # PUBACKs that beat their mid registration
    direct: set[int] = field(default_factory=set)  # mids of acks/status (not outbox rows)
    props: Properties | None = None


def _no_op(*_: Any) -> None:
    pass


def tls_context(tls: TlsConfig, base_dir: Path) -> ssl.SSLContext:
    """Verify the broker against ``ca_file`` (hostname included); present the client certificate if set."""

    def path(p: str) -> str:
        q = Path(p)
        return str(q if q.is_absolute() else base_dir / q)

    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=path(tls.ca_file))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(path(tls.cert_file), path(tls.key_file))
    return ctx


class MqttLink:
    """One station's connection to the operator's broker, with its outbox (see the module docstring).

    ``on_dispatch`` answers ``dispatch/set`` messages (None: the station takes no dispatch and does not
    subscribe). ``base_dir`` resolves relative key, certificate and password paths (the station file's
    directory). ``on_committed`` is told the seqs of messages that became durable. ``yield_to_cycle``
    is called on the network thread before each received message is handled: the service passes the
    control loop's ``CycleGate.wait_turn`` so that a flood of messages cannot hold the control cycle
    off the GIL (station/control/loop.py); it is an attribute, so it can be wired after construction.
    """

    def __init__(
        self,
        cfg: MqttConfig,
        station_id: str,
        outbox: Outbox,
        *,
        on_dispatch: DispatchHandler | None = None,
        firmware: str = "",
        config_sha256: str = "",
        base_dir: Path = Path("."),
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        rng: Callable[[], float] = random.random,
        on_committed: Callable[[list[int]], None] | None = None,
        yield_to_cycle: Callable[[], None] = _no_op,
    ) -> None:
        self.cfg = cfg
        self.yield_to_cycle = yield_to_cycle
        self.topics = StationTopics(cfg.topic_prefix, station_id)
        self.station_id = station_id
        self.outbox = outbox
        self._on_dispatch = on_dispatch
        self._firmware = firmware
        self._config_sha256 = config_sha256
        self._wall = wall_clock
        self._mono = monotonic
        self._backoff = Backoff(cfg.reconnect_min_s, cfg.reconnect_max_s, rng)
        self._on_committed = on_committed
        self._v5 = cfg.protocol == "5"
        self._window = cfg.max_inflight_messages
        self._max_queue = cfg.outbox.max_queued_messages
        self._password = None
        if cfg.password_file:
            pf = Path(cfg.password_file)
            self._password = (pf if pf.is_absolute() else base_dir / pf).read_text(encoding="utf-8").strip()
        self._tls = tls_context(cfg.tls, base_dir) if cfg.tls else None

        self._cv = threading.Condition()
        self._queue: deque[tuple[str, Mapping[str, Any], int]] = deque()
        self._acked: list[tuple[int, bool]] = []  # (outbox seq, broker accepted)
        self._conn: _Connection | None = None  # the accepted connection, if any
        self._stored_max = 0  # highest seq in the outbox
        self._stop = threading.Event()
        self._net_done = threading.Event()  # the pump's last commit waits for the network's last PUBACKs
        self._threads: list[threading.Thread] = []
        self.connected = threading.Event()
        self.subscribed = threading.Event()
        self.stats = LinkStats()

    # ------------------------------------------------------------------ public API

    def start(self) -> None:
        if self._threads:
            raise RuntimeError("link already started")
        with self.outbox.batch() as b:
            self._stored_max = b.max_seq()
        for name, target in (("mqtt-outbox", self._run_pump), ("mqtt-net", self._run_network)):
            t = threading.Thread(target=target, name=f"{name}-{self.station_id}", daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self, timeout: float = 10.0) -> None:
        """Clean stop: queued messages are committed, the retained status says ``shutdown``."""
        self._stop.set()
        with self._cv:
            self._cv.notify_all()
        for t in self._threads:
            t.join(timeout)

    def wait_ready(self, timeout: float) -> bool:
        """Connected and (if it takes dispatch) subscribed to ``dispatch/set``."""
        end = self._mono() + timeout
        if not self.connected.wait(timeout):
            return False
        return self._on_dispatch is None or self.subscribed.wait(max(0.0, end - self._mono()))

    def publish_telemetry(self, body: Mapping[str, Any]) -> bool:
        """Queue a telemetry sample (never blocks). False if the in-memory queue is full (counted)."""
        return self._enqueue(self.topics.telemetry, body, PRIORITY_TELEMETRY)

    def publish_event(self, body: Mapping[str, Any]) -> bool:
        return self._enqueue(self.topics.events, body, PRIORITY_EVENT)

    def publish_report(self, body: Mapping[str, Any]) -> bool:
        return self._enqueue(self.topics.dispatch_report, body, PRIORITY_EVENT)

    def _enqueue(self, topic: str, body: Mapping[str, Any], priority: int) -> bool:
        if not _HEADER.isdisjoint(body):
            raise ValueError(f"{sorted(_HEADER & body.keys())} are added by the outbox, not by the payload")
        with self._cv:
            if len(self._queue) >= self._max_queue:
                self.stats.queue_full_drops += 1
                return False
            self._queue.append((topic, body, priority))
            self._cv.notify()
        return True

    # ------------------------------------------------------------------ network thread

    def _run_network(self) -> None:
        try:
            while not self._stop.is_set():
                self._connect_once()
                if self._stop.is_set():
                    break
                self._stop.wait(self._backoff.next_delay())
        finally:
            self._net_done.set()
            with self._cv:
                self._cv.notify_all()

    def _new_client(self) -> mqtt.Client:
        cid = self.cfg.client_id or f"station-{self.station_id}"
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=cid,
            protocol=mqtt.MQTTv5 if self._v5 else mqtt.MQTTv311,
            clean_session=None if self._v5 else True,
        )
        client.max_inflight_messages_set(self._window)
        client.connect_timeout = self.cfg.connect_timeout_s
        if self.cfg.username:
            client.username_pw_set(self.cfg.username, self._password)
        if self._tls is not None:
            client.tls_set_context(self._tls)
        will = payloads.status_offline("connection_lost", station_id=self.station_id, ts=None, since=self._wall())
        client.will_set(self.topics.status, payloads.encode(will), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        # Without loop_start(), paho writes to the socket from whichever thread calls publish(), and its
        # packet writer has no lock: two threads could interleave partial packets. Registering the
        # external-loop write hooks makes publish() only queue + wake select(); all writes then happen in
        # the network thread's loop().
        client.on_socket_register_write = _no_op
        client.on_socket_unregister_write = _no_op
        return client

    def _connect_once(self) -> None:
        client = self._new_client()
        conn = _Connection(client)
        client.user_data_set(conn)
        if self._v5:
            conn.props = Properties(PacketTypes.PUBLISH)
            conn.props.PayloadFormatIndicator = 1
            conn.props.ContentType = "application/json"
        try:
            if self._v5:
                client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s, clean_start=True)
            else:
                client.connect(self.cfg.host, self.cfg.port, self.cfg.keepalive_s)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._failed(f"connect to {self.cfg.host}:{self.cfg.port}: {exc}")
            return
        sock = client.socket()
        if isinstance(sock, socket.socket):  # SSLSocket included; paho leaves Nagle on
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        deadline = self._mono() + self.cfg.connect_timeout_s
        try:
            while not self._stop.is_set():
                rc = client.loop(_LOOP_TIMEOUT_S)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                    if not conn.accepted and not conn.refused:
                        self._failed(f"connection closed before CONNACK ({rc.name})")
                    break
                if not conn.accepted and self._mono() > deadline:
                    self._failed(f"no CONNACK within {self.cfg.connect_timeout_s:g} s")
                    break
            if self._stop.is_set() and conn.accepted:
                self._say_goodbye(conn)
        except (OSError, ssl.SSLError) as exc:
            self._failed(f"connection error: {exc}")
        finally:
            self._lost(conn)
            if client.disconnect() == MQTTErrorCode.MQTT_ERR_SUCCESS:  # the socket is still open
                with contextlib.suppress(OSError, ssl.SSLError):
                    client.loop_write()  # sends DISCONNECT, then paho closes the socket

    def _say_goodbye(self, conn: _Connection) -> None:
        """Replace the retained status with ``shutdown`` and disconnect cleanly (no last will)."""
        body = payloads.status_offline("shutdown", station_id=self.station_id, ts=self._wall(), since=conn.since)
        info = conn.client.publish(self.topics.status, payloads.encode(body), qos=1, retain=True, properties=conn.props)
        end = self._mono() + _SHUTDOWN_FLUSH_S
        while not info.is_published() and self._mono() < end:
            if conn.client.loop(_LOOP_TIMEOUT_S) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return
        conn.client.disconnect()
        conn.client.loop(_LOOP_TIMEOUT_S)

    def _failed(self, why: str) -> None:
        """A connection attempt failed."""
        self.stats.connect_failures += 1
        self._report(why)

    def _report(self, why: str) -> None:
        """Log a link problem once per distinct message (it repeats on every retry)."""
        if why != self.stats.last_error:
            log.warning("mqtt %s: %s", self.station_id, why)
        self.stats.last_error = why

    def _lost(self, conn: _Connection) -> None:
        with self._cv:
            conn.dead = True
            if self._conn is conn:
                self._conn = None
                self.stats.disconnects += 1
            self._cv.notify_all()
        self.connected.clear()
        self.subscribed.clear()

    # ---- paho callbacks (network thread)

    def _on_connect(self, client: mqtt.Client, conn: _Connection, flags: Any, reason: ReasonCode,
                    properties: Any) -> None:
        if reason.is_failure:
            conn.refused = True
            self._failed(f"broker refused the connection: {reason}")
            return
        conn.gen = self.outbox.new_generation()
        conn.since = self._wall()
        conn.accepted = True
        self._backoff.reset()
        self.stats.connects += 1
        if self.stats.last_error:
            log.info("mqtt %s: connected again (connection %d)", self.station_id, conn.gen)
        self.stats.last_error = ""
        if self._on_dispatch is not None:
            client.subscribe(self.topics.dispatch_set, qos=1)
        birth = payloads.status_online(self._wall(), station_id=self.station_id, firmware=self._firmware,
                                       config_sha256=self._config_sha256, protocol=self.cfg.protocol,
                                       connection=conn.gen)
        self._direct(conn, self.topics.status, payloads.encode(birth), retain=True)
        with self._cv:
            self._conn = conn
            self._cv.notify_all()
        self.connected.set()

    def _on_subscribe(self, client: mqtt.Client, conn: _Connection, mid: int, reasons: list[ReasonCode],
                      properties: Any) -> None:
        if all(not r.is_failure for r in reasons):
            self.subscribed.set()
        else:
            self._failed(f"subscription to {self.topics.dispatch_set} refused: {reasons}")

    def _on_disconnect(self, client: mqtt.Client, conn: _Connection, flags: Any, reason: ReasonCode,
                       properties: Any) -> None:
        if conn.accepted and not self._stop.is_set():
            self._report(f"disconnected: {reason}")

    def _on_message(self, client: mqtt.Client, conn: _Connection, msg: mqtt.MQTTMessage) -> None:
        if msg.topic != self.topics.dispatch_set or self._on_dispatch is None:
            return
        self.stats.dispatch_received += 1
        self.yield_to_cycle()  # a flood must not keep the control cycle from the GIL (CycleGate)
        try:
            acks = self._on_dispatch(bytes(msg.payload))
        except Exception:  # a bug in the handler must not kill the link
            self.stats.handler_errors += 1
            log.exception("dispatch handler failed")
            return
        props = conn.props
        correlation = getattr(msg.properties, "CorrelationData", None) if msg.properties else None
        if correlation is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.PayloadFormatIndicator = 1
            props.ContentType = "application/json"
            props.CorrelationData = correlation
        for ack in acks:
            self._direct(conn, self.topics.dispatch_ack, payloads.encode(ack), props=props)
            self.stats.acks_sent += 1

    def _direct(self, conn: _Connection, topic: str, payload: bytes, *, retain: bool = False,
                props: Properties | None = None) -> None:
        """Publish outside the outbox (status, acks); only from the network thread, so the PUBACK
        cannot be processed before the mid is recorded."""
        info = conn.client.publish(topic, payload, qos=1, retain=retain, properties=props or conn.props)
        conn.direct.add(info.mid)

    def _on_publish(self, client: mqtt.Client, conn: _Connection, mid: int, reason: ReasonCode,
                    properties: Any) -> None:
        if mid in conn.direct:
            conn.direct.discard(mid)
            return
        with self._cv:
            seq = conn.inflight.pop(mid, None)
            if seq is None:
                conn.early[mid] = not reason.is_failure
                return
            self._acked.append((seq, not reason.is_failure))
            self._cv.notify()

    # ------------------------------------------------------------------ outbox pump thread

    def _run_pump(self) -> None:
        next_age_check = self._mono()
        while True:
            with self._cv:
                while not (self._queue or self._acked or self._can_send() or self._net_done.is_set()
                           or self._mono() >= next_age_check):
                    self._cv.wait(max(0.0, next_age_check - self._mono()))
                finished = self._net_done.is_set()
                items = list(self._queue)
                self._queue.clear()
                acked, self._acked = self._acked, []
                conn = None if self._stop.is_set() else self._conn
                room = self._window - len(conn.inflight) if conn else 0
                cursor = conn.cursor if conn else 0
            age_check = self._mono() >= next_age_check
            if age_check:
                next_age_check = self._mono() + _AGE_CHECK_S
            try:
                sent = self._commit(items, acked, cursor if room > 0 else None, room, conn,
                                    age_check or bool(items))
            except sqlite3.Error as exc:  # disk full, I/O error: keep everything in memory and retry
                self._outbox_failed(exc, items, acked, finished)
                if finished:
                    return
                continue
            if self.stats.outbox_error:
                log.info("mqtt %s: outbox writable again", self.station_id)
                self.stats.outbox_error = ""
            if sent.seqs and self._on_committed is not None:
                self._on_committed(sent.seqs)
            now = self._wall()
            for d in sent.drops:
                self._enqueue(self.topics.events, payloads.outbox_dropped(
                    now, reason=d.reason, count=d.count, bytes_=d.bytes, first_seq=d.first_seq,
                    last_seq=d.last_seq), PRIORITY_EVENT)
            if conn is not None and room > 0:
                self._send(conn, sent.rows, sent.hwm_before, sent.stored_max if len(sent.rows) < room else None)
            if finished:
                return

    def _outbox_failed(self, exc: sqlite3.Error, items: list[tuple[str, Mapping[str, Any], int]],
                       acked: list[tuple[int, bool]], finished: bool) -> None:
        """Put the batch back (the queue bound still applies to new messages) and wait before retrying."""
        self.stats.outbox_failures += 1
        if str(exc) != self.stats.outbox_error:
            log.error("mqtt %s: outbox write failed (%s)%s", self.station_id, exc,
                      ": %d queued messages lost at shutdown" % len(items) if finished else "; retrying")
        self.stats.outbox_error = str(exc)
        with self._cv:
            self._queue.extendleft(reversed(items))
            self._acked[:0] = acked
            self._cv.wait(_OUTBOX_RETRY_S)

    def _can_send(self) -> bool:
        c = self._conn
        return (c is not None and not self._stop.is_set() and len(c.inflight) < self._window
                and c.cursor < self._stored_max)

    def _commit(self, items: list[tuple[str, Mapping[str, Any], int]], acked: list[tuple[int, bool]],
                cursor: int | None, room: int, conn: _Connection | None, bounds: bool) -> _Committed:
        """One outbox transaction: store new messages, delete acknowledged ones, apply the bounds, claim
        the next rows to send (when ``cursor`` is not None)."""
        gen = conn.gen if conn is not None else 0
        with self.outbox.batch() as b:
            seqs = [b.append(topic, payloads.encode(body), prio, gen) for topic, body, prio in items]
            if acked:
                b.delete(seq for seq, _ in acked)
                rejected = sum(1 for _, ok in acked if not ok)
                if rejected:
                    b.count_rejected(rejected)
            drops = b.enforce_bounds() if bounds else []
            hwm_before = self.outbox.sent_hwm
            rows = b.claim(cursor, room) if cursor is not None else []
        if seqs:
            self._stored_max = max(self._stored_max, seqs[-1])
        self.stats.delivered += sum(1 for _, ok in acked if ok)
        return _Committed(seqs, drops, rows, hwm_before, self._stored_max)

    def _send(self, conn: _Connection, rows: list[Row], hwm_before: int, caught_up_to: int | None) -> None:
        """Publish claimed rows in order. ``caught_up_to``: the claim found everything up to this seq."""
        if caught_up_to is not None and not rows:
            with self._cv:
                conn.cursor = max(conn.cursor, caught_up_to)
        for row in rows:
            replay = row.seq <= hwm_before
            payload = stamp(row.body, row.seq, row.conn_gen != conn.gen, replay)
            info = conn.client.publish(row.topic, payload, qos=1, properties=conn.props)
            with self._cv:
                conn.cursor = row.seq
                if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS or conn.dead:
                    return  # the connection is gone; the row stays in the outbox for the next one
                if replay:
                    self.stats.replayed += 1
                ok = conn.early.pop(info.mid, None)
                if ok is None:
                    conn.inflight[info.mid] = row.seq
                else:
                    self._acked.append((row.seq, ok))
                    self._cv.notify()
        if caught_up_to is not None and rows:
            with self._cv:
                conn.cursor = max(conn.cursor, caught_up_to)
