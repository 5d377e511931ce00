"""J1939-21 connection-mode transport (RTS/CTS) for GB/T 27930, both directions, sans-IO (reference §3.6).

GB/T sends every message longer than 8 bytes (BRM, BCP, BCS, BMV, BMT, BSP) with TP.CM/TP.DT between exactly
two fixed addresses, so one :class:`Transport` is one point-to-point link: at most one transfer in each
direction at a time, as J1939 allows between a pair of nodes.

Receiving is strict where it protects the data and lenient where the field demands it:

* DT sequence numbers are checked: a gap aborts the transfer (reason 7, bad sequence), a repeated packet is
  ignored and counted (the data stays right).
* A BMS that sends its DTs on a fixed tick without waiting for our CTS (reference §3.6, P1) still works: any
  DT carrying the next expected sequence number is accepted, whether or not its CTS window was granted. A
  CTS is computed when frames are collected, so no redundant CTS is sent for packets that already arrived.
* J1939 timers: T1 (750 ms) between DTs, T2 (1250 ms) after a CTS, T3 (1250 ms) for the sender waiting for
  CTS or EndOfMsgAck, T4 (1050 ms) after a hold CTS. On expiry the side that waited aborts with reason 3.

Use: feed TP.CM/TP.DT frames addressed to this node to :meth:`Transport.receive`; call :meth:`Transport.poll`
to collect frames due and timer events; start an outgoing transfer with :meth:`Transport.send`.
:class:`TpObserver` reassembles transfers passively from a log (no replies, no timers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from drivers.gbt27930.frame import Frame, make_id

TP_CM_PGN = 0xEC00
TP_DT_PGN = 0xEB00
TP_PRIORITY = 7
MAX_TP_SIZE = 1785

RTS, CTS, EOM_ACK, BAM, ABORT = 0x10, 0x11, 0x13, 0x20, 0xFF


class AbortReason(enum.IntEnum):
    """J1939-21 connection abort reasons (2006 table 7)."""

    ALREADY_IN_SESSION = 1
    NO_RESOURCES = 2
    TIMEOUT = 3
    CTS_DURING_TRANSFER = 4
    RETRANSMIT_LIMIT = 5
    UNEXPECTED_DT = 6
    BAD_SEQUENCE = 7
    DUPLICATE_SEQUENCE = 8
    TOO_LARGE = 9


@dataclass(frozen=True)
class TpTimers:
    t1_s: float = 0.750  # receiver: between DTs
    t2_s: float = 1.250  # receiver: after sending a CTS
    t3_s: float = 1.250  # sender: waiting for CTS or EndOfMsgAck
    t4_s: float = 1.050  # sender: after a hold (CTS with 0 packets)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class Reassembled:
    """A complete multi-packet message arrived."""

    pgn: int
    data: bytes
    packets: int


@dataclass(frozen=True)
class TransferSent:
    """The peer acknowledged our transfer (EndOfMsgAck)."""

    pgn: int


@dataclass(frozen=True)
class TransferAborted:
    """A transfer ended without its data. ``by_peer``: the other side sent the abort (or the reason is its)."""

    pgn: int
    reason: int
    by_peer: bool
    outgoing: bool
    detail: str


@dataclass(frozen=True)
class TpAnomaly:
    """Something tolerated but worth counting: duplicate DT, DT without RTS, malformed TP.CM, BAM."""

    kind: str
    detail: str


TpEvent = Reassembled | TransferSent | TransferAborted | TpAnomaly


# --------------------------------------------------------------------------- frame builders


def _pgn_bytes(pgn: int) -> bytes:
    return pgn.to_bytes(3, "little")


def cm_rts(size: int, packets: int, max_per_cts: int, pgn: int) -> bytes:
    return bytes([RTS]) + size.to_bytes(2, "little") + bytes([packets, max_per_cts]) + _pgn_bytes(pgn)


def cm_cts(count: int, next_seq: int, pgn: int) -> bytes:
    return bytes([CTS, count, next_seq, 0xFF, 0xFF]) + _pgn_bytes(pgn)


def cm_ack(size: int, packets: int, pgn: int) -> bytes:
    return bytes([EOM_ACK]) + size.to_bytes(2, "little") + bytes([packets, 0xFF]) + _pgn_bytes(pgn)


def cm_abort(reason: int, pgn: int) -> bytes:
    return bytes([ABORT, reason, 0xFF, 0xFF, 0xFF]) + _pgn_bytes(pgn)


def packets_for(size: int) -> int:
    return (size + 6) // 7


def dt_payloads(data: bytes) -> list[bytes]:
    """The TP.DT payloads of a message: sequence byte + 7 data bytes, the last padded with 0xFF."""
    out = []
    for i in range(packets_for(len(data))):
        chunk = data[7 * i : 7 * i + 7]
        out.append(bytes([i + 1]) + chunk + b"\xff" * (7 - len(chunk)))
    return out


# --------------------------------------------------------------------------- reassembly (shared)


@dataclass
class _Inbound:
    """One incoming transfer: announced by RTS, filled by DTs in sequence order."""

    pgn: int
    size: int
    packets: int
    max_per_cts: int
    data: bytearray = field(default_factory=bytearray)
    next_seq: int = 1
    window_end: int = 0  # last sequence number granted by our latest CTS
    deadline: float = float("inf")

    @property
    def complete(self) -> bool:
        return self.next_seq > self.packets

    def payload(self) -> bytes:
        return bytes(self.data[: self.size])


def _parse_rts(data: bytes) -> tuple[_Inbound | None, str]:
    """An RTS -> the transfer it announces, or None and why it cannot be accepted."""
    if len(data) != 8:
        return None, f"TP.CM RTS of {len(data)} bytes, expected 8"
    size = int.from_bytes(data[1:3], "little")
    packets, max_per_cts = data[3], data[4]
    pgn = int.from_bytes(data[5:8], "little")
    if size < 9 or size > MAX_TP_SIZE:
        return None, f"RTS announces {size} bytes, transport carries 9..{MAX_TP_SIZE}"
    if packets != packets_for(size):
        return None, f"RTS announces {packets} packets for {size} bytes (needs {packets_for(size)})"
    return _Inbound(pgn, size, packets, max_per_cts or 0xFF), ""


def _accept_dt(inbound: _Inbound, data: bytes) -> tuple[str, str]:
    """Apply one DT. Returns (outcome, detail): 'stored', 'duplicate' or 'gap'."""
    if len(data) < 2:
        return "gap", "DT without payload"
    seq = data[0]
    if seq == inbound.next_seq:
        inbound.data += data[1:8].ljust(7, b"\xff")
        inbound.next_seq += 1
        return "stored", ""
    if 1 <= seq < inbound.next_seq:
        return "duplicate", f"DT {seq} repeated (expected {inbound.next_seq})"
    return "gap", f"DT {seq} arrived, expected {inbound.next_seq}"


# --------------------------------------------------------------------------- outbound


class _Phase(enum.Enum):
    WAIT_CTS = "wait-cts"
    SENDING = "sending"
    WAIT_ACK = "wait-ack"


@dataclass
class _Outbound:
    pgn: int
    data: bytes
    dts: list[bytes]
    phase: _Phase
    deadline: float
    next_seq: int = 1
    send_until: int = 0
    next_dt_at: float = 0.0


class Transport:
    """The TP link between this node (``local``) and its one peer (``remote``).

    ``max_packets_per_cts`` limits what our CTS grants (255 = the whole message, as the real charger does);
    ``dt_interval_s`` spaces our DTs (real BMSs send one every ~10 ms); ``send_without_cts`` makes us the
    field deviation that blasts all DTs after the RTS without waiting (for the BMS simulator's fault knob).
    """

    def __init__(
        self,
        local: int,
        remote: int,
        *,
        timers: TpTimers = TpTimers(),
        max_packets_per_cts: int = 255,
        dt_interval_s: float = 0.0,
        send_without_cts: bool = False,
    ) -> None:
        if not 1 <= max_packets_per_cts <= 255:
            raise ValueError("max_packets_per_cts must be 1..255")
        self.local = local
        self.remote = remote
        self.timers = timers
        self.max_packets_per_cts = max_packets_per_cts
        self.dt_interval_s = dt_interval_s
        self.send_without_cts = send_without_cts
        self._cm_id = make_id(TP_PRIORITY, TP_CM_PGN, remote, local)
        self._dt_id = make_id(TP_PRIORITY, TP_DT_PGN, remote, local)
        self._inbound: _Inbound | None = None
        self._cts_due = False
        self._outbound: _Outbound | None = None
        self._outbox: list[Frame] = []

    # ---- queries

    @property
    def sending(self) -> bool:
        return self._outbound is not None

    def next_deadline(self) -> float | None:
        times = []
        if self._inbound is not None:
            times.append(self._inbound.deadline)
        if self._outbound is not None:
            out = self._outbound
            times.append(out.next_dt_at if out.phase is _Phase.SENDING else out.deadline)
        if self._outbox or self._cts_due:
            times.append(float("-inf"))
        return min(times) if times else None

    def reset(self) -> None:
        """Drop any transfer in progress without telling the peer (the session restarts)."""
        self._inbound = None
        self._outbound = None
        self._cts_due = False
        self._outbox.clear()

    # ---- sending

    def send(self, pgn: int, data: bytes, now: float) -> bool:
        """Start a transfer; False if one is already in progress (J1939: one per direction)."""
        if not 9 <= len(data) <= MAX_TP_SIZE:
            raise ValueError(f"transport carries 9..{MAX_TP_SIZE} bytes, got {len(data)}")
        if self._outbound is not None:
            return False
        dts = dt_payloads(data)
        self._outbox.append(Frame(self._cm_id, cm_rts(len(data), len(dts), 0xFF, pgn)))
        if self.send_without_cts:
            out = _Outbound(pgn, data, dts, _Phase.SENDING, float("inf"), 1, len(dts), now + self.dt_interval_s)
        else:
            out = _Outbound(pgn, data, dts, _Phase.WAIT_CTS, now + self.timers.t3_s)
        self._outbound = out
        return True

    # ---- receiving

    def receive(self, frame: Frame, now: float) -> list[TpEvent]:
        """Process a TP.CM or TP.DT frame from the peer."""
        if frame.source != self.remote or frame.destination != self.local:
            return []
        pgn = frame.pgn
        if pgn == TP_DT_PGN:
            return self._on_dt(frame.data, now)
        if pgn != TP_CM_PGN:
            return []
        data = frame.data
        if not data:
            return [TpAnomaly("malformed-cm", "empty TP.CM")]
        control = data[0]
        if control == RTS:
            return self._on_rts(data, now)
        if len(data) != 8:
            return [TpAnomaly("malformed-cm", f"TP.CM 0x{control:02X} of {len(data)} bytes")]
        target = int.from_bytes(data[5:8], "little")
        if control == CTS:
            return self._on_cts(data[1], data[2], target, now)
        if control == EOM_ACK:
            return self._on_ack(target)
        if control == ABORT:
            return self._on_abort(data[1], target)
        if control == BAM:
            return [TpAnomaly("bam", f"BAM for PGN 0x{target:04X} is not used by GB/T")]
        return [TpAnomaly("malformed-cm", f"unknown TP.CM control byte 0x{control:02X}")]

    def _on_rts(self, data: bytes, now: float) -> list[TpEvent]:
        events: list[TpEvent] = []
        inbound, why = _parse_rts(data)
        if inbound is None:
            pgn = int.from_bytes(data[5:8], "little") if len(data) >= 8 else 0
            reason = AbortReason.TOO_LARGE if "transport carries" in why else AbortReason.NO_RESOURCES
            self._outbox.append(Frame(self._cm_id, cm_abort(reason, pgn)))
            return [TransferAborted(pgn, reason, True, False, why)]
        if self._inbound is not None:
            events.append(
                TpAnomaly("rts-restart", f"RTS for PGN 0x{inbound.pgn:04X} replaced an unfinished transfer "
                          f"of PGN 0x{self._inbound.pgn:04X}")
            )
        inbound.deadline = now + self.timers.t2_s
        self._inbound = inbound
        self._cts_due = True
        return events

    def _on_dt(self, data: bytes, now: float) -> list[TpEvent]:
        inbound = self._inbound
        if inbound is None:
            return [TpAnomaly("unexpected-dt", "DT without an open transfer")]
        outcome, detail = _accept_dt(inbound, data)
        if outcome == "duplicate":
            return [TpAnomaly("duplicate-dt", detail)]
        if outcome == "gap":
            self._inbound = None
            self._cts_due = False
            self._outbox.append(Frame(self._cm_id, cm_abort(AbortReason.BAD_SEQUENCE, inbound.pgn)))
            return [TransferAborted(inbound.pgn, AbortReason.BAD_SEQUENCE, True, False, detail)]
        if inbound.complete:
            self._inbound = None
            self._cts_due = False
            self._outbox.append(Frame(self._cm_id, cm_ack(inbound.size, inbound.packets, inbound.pgn)))
            return [Reassembled(inbound.pgn, inbound.payload(), inbound.packets)]
        inbound.deadline = now + self.timers.t1_s
        if inbound.next_seq > inbound.window_end:
            self._cts_due = True  # window used up: grant the next one when frames are collected
        return []

    def _on_cts(self, count: int, next_seq: int, pgn: int, now: float) -> list[TpEvent]:
        out = self._outbound
        if out is None or out.pgn != pgn:
            return [TpAnomaly("unexpected-cts", f"CTS for PGN 0x{pgn:04X} without our transfer")]
        if self.send_without_cts:
            return []  # the field deviation this mode models ignores CTS
        if count == 0:
            out.phase = _Phase.WAIT_CTS
            out.deadline = now + self.timers.t4_s
            return []
        if not 1 <= next_seq <= len(out.dts):
            self._outbound = None
            self._outbox.append(Frame(self._cm_id, cm_abort(AbortReason.BAD_SEQUENCE, pgn)))
            return [TransferAborted(pgn, AbortReason.BAD_SEQUENCE, True, True, f"CTS asks for packet {next_seq}")]
        out.next_seq = next_seq
        out.send_until = min(len(out.dts), next_seq + count - 1)
        out.phase = _Phase.SENDING
        out.next_dt_at = now
        return []

    def _on_ack(self, pgn: int) -> list[TpEvent]:
        out = self._outbound
        if out is None or out.pgn != pgn:
            return [TpAnomaly("unexpected-ack", f"EndOfMsgAck for PGN 0x{pgn:04X} without our transfer")]
        self._outbound = None
        return [TransferSent(pgn)]

    def _on_abort(self, reason: int, pgn: int) -> list[TpEvent]:
        events: list[TpEvent] = []
        if self._outbound is not None and self._outbound.pgn == pgn:
            self._outbound = None
            events.append(TransferAborted(pgn, reason, True, True, "peer aborted our transfer"))
        if self._inbound is not None and self._inbound.pgn == pgn:
            self._inbound = None
            self._cts_due = False
            events.append(TransferAborted(pgn, reason, True, False, "peer aborted its transfer"))
        return events or [TpAnomaly("unexpected-abort", f"abort for PGN 0x{pgn:04X} without a transfer")]

    # ---- time

    def poll(self, now: float) -> tuple[list[Frame], list[TpEvent]]:
        """Frames due now (replies, DTs, aborts) and timer expiries."""
        events: list[TpEvent] = []
        inbound = self._inbound
        if inbound is not None and now >= inbound.deadline:
            self._inbound = None
            self._cts_due = False
            self._outbox.append(Frame(self._cm_id, cm_abort(AbortReason.TIMEOUT, inbound.pgn)))
            events.append(TransferAborted(inbound.pgn, AbortReason.TIMEOUT, False, False,
                                          f"no DT {inbound.next_seq} of {inbound.packets} in time"))
        elif inbound is not None and self._cts_due:
            self._cts_due = False
            count = min(inbound.packets - inbound.next_seq + 1, inbound.max_per_cts, self.max_packets_per_cts)
            inbound.window_end = inbound.next_seq + count - 1
            inbound.deadline = now + self.timers.t2_s
            self._outbox.append(Frame(self._cm_id, cm_cts(count, inbound.next_seq, inbound.pgn)))
        out = self._outbound
        if out is not None:
            if out.phase is _Phase.SENDING:
                while out.next_seq <= out.send_until and now >= out.next_dt_at:
                    self._outbox.append(Frame(self._dt_id, out.dts[out.next_seq - 1]))
                    out.next_seq += 1
                    out.next_dt_at = max(out.next_dt_at, now) + self.dt_interval_s if self.dt_interval_s else now
                if out.next_seq > out.send_until:
                    out.phase = _Phase.WAIT_ACK if out.next_seq > len(out.dts) else _Phase.WAIT_CTS
                    out.deadline = now + self.timers.t3_s
            elif now >= out.deadline:
                self._outbound = None
                self._outbox.append(Frame(self._cm_id, cm_abort(AbortReason.TIMEOUT, out.pgn)))
                waited = "CTS" if out.phase is _Phase.WAIT_CTS else "EndOfMsgAck"
                events.append(TransferAborted(out.pgn, AbortReason.TIMEOUT, False, True, f"no {waited} in time"))
        frames, self._outbox = self._outbox, []
        return frames, events


class TpObserver:
    """Passive reassembly of one direction's transfers from a log: never replies, applies no timers
    (logs can have equal or missing timestamps). Feed it every TP.CM/TP.DT frame between the two nodes."""

    def __init__(self, sender: int, receiver: int) -> None:
        self.sender = sender
        self.receiver = receiver
        self._inbound: _Inbound | None = None

    def observe(self, frame: Frame) -> list[TpEvent]:
        pgn = frame.pgn
        data = frame.data
        from_sender = frame.source == self.sender and frame.destination == self.receiver
        from_receiver = frame.source == self.receiver and frame.destination == self.sender
        if not (from_sender or from_receiver):
            return []
        if pgn == TP_DT_PGN and from_sender:
            inbound = self._inbound
            if inbound is None:
                return [TpAnomaly("unexpected-dt", "DT without an open transfer")]
            outcome, detail = _accept_dt(inbound, data)
            if outcome == "duplicate":
                return [TpAnomaly("duplicate-dt", detail)]
            if outcome == "gap":
                self._inbound = None
                return [TransferAborted(inbound.pgn, AbortReason.BAD_SEQUENCE, True, False, detail)]
            if inbound.complete:
                self._inbound = None
                return [Reassembled(inbound.pgn, inbound.payload(), inbound.packets)]
            return []
        if pgn != TP_CM_PGN or not data:
            return []
        if data[0] == RTS and from_sender:
            inbound, why = _parse_rts(data)
            events: list[TpEvent] = []
            if self._inbound is not None:
                events.append(TpAnomaly("rts-restart", f"unfinished transfer of PGN 0x{self._inbound.pgn:04X}"))
            self._inbound = inbound
            if inbound is None:
                events.append(TpAnomaly("malformed-cm", why))
            return events
        if data[0] == ABORT and len(data) == 8:
            target = int.from_bytes(data[5:8], "little")
            if self._inbound is not None and self._inbound.pgn == target:
                self._inbound = None
                who = "sender" if from_sender else "receiver"
                return [TransferAborted(target, data[1], from_sender, False, f"{who} aborted (reason {data[1]})")]
        return []
