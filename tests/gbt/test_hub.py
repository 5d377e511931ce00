"""The software CAN hub with python-can's stock socketcand client over real sockets: handshake, channels,
no echo, one order for all listeners, pacing, error frames, and frames held (not lost) during a handshake."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator

import can
import pytest

from hil.can_hub import CanHub

HubFactory = Callable[..., tuple[CanHub, asyncio.AbstractEventLoop]]


@pytest.fixture
def hub_factory() -> Iterator[HubFactory]:
    running: list[tuple[asyncio.AbstractEventLoop, threading.Thread]] = []

    def make(**kwargs: object) -> tuple[CanHub, asyncio.AbstractEventLoop]:
        ready = threading.Event()
        box: dict[str, object] = {}

        def serve() -> None:
            loop = asyncio.new_event_loop()
            hub = CanHub(port=0, **kwargs)  # type: ignore[arg-type]
            loop.run_until_complete(hub.start())
            box.update(hub=hub, loop=loop)
            ready.set()
            loop.run_forever()
            loop.run_until_complete(hub.close())
            loop.close()

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        assert ready.wait(10)
        loop = box["loop"]
        running.append((loop, thread))  # type: ignore[arg-type]
        return box["hub"], loop  # type: ignore[return-value]

    yield make
    for loop, thread in running:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)


def bus(hub: CanHub, channel: str) -> can.BusABC:
    return can.Bus(interface="socketcand", host="127.0.0.1", port=hub.port, channel=channel)


def msg(can_id: int, data: bytes) -> can.Message:
    return can.Message(arbitration_id=can_id, data=data, is_extended_id=True)


def collect(b: can.BusABC, n: int, timeout: float = 10.0) -> list[can.Message]:
    out = []
    while len(out) < n:
        m = b.recv(timeout)
        assert m is not None, f"only {len(out)} of {n} frames arrived"
        out.append(m)
    return out


def test_channels_are_separate_buses_and_senders_do_not_hear_themselves(hub_factory: HubFactory) -> None:
    hub, _ = hub_factory()
    a1, b1, a2 = bus(hub, "A1"), bus(hub, "A1"), bus(hub, "A2")
    try:
        a1.send(msg(0x1826F456, b"\x01\x01\x00"))
        a1.send(msg(0x1826F456, b""))  # zero-length frames survive the ASCII protocol
        got = collect(b1, 2)
        assert [(m.arbitration_id, bytes(m.data), m.is_extended_id) for m in got] == [
            (0x1826F456, b"\x01\x01\x00", True), (0x1826F456, b"", True)]
        assert a2.recv(0.3) is None and a1.recv(0.0) is None
        a2.send(msg(0x181056F4, bytes(5)))
        assert a2.recv(0.3) is None and b1.recv(0.3) is None
    finally:
        for b in (a1, b1, a2):
            b.shutdown()


def test_every_listener_sees_one_order(hub_factory: HubFactory) -> None:
    hub, _ = hub_factory()
    s1, s2, l1, l2 = (bus(hub, "A1") for _ in range(4))
    try:
        for i in range(200):
            (s1 if i % 3 else s2).send(msg(0x18000000 | i, i.to_bytes(2, "little")))
        seen1 = [m.arbitration_id for m in collect(l1, 200)]
        seen2 = [m.arbitration_id for m in collect(l2, 200)]
        assert seen1 == seen2
        stamps = [m.timestamp for m in collect(s1, 67)]  # s1 hears only what s2 sent
        assert stamps == sorted(stamps)
        from_s1 = [m & 0xFFFF for m in seen1 if (m & 0xFFFF) % 3]
        assert from_s1 == sorted(from_s1)  # per-sender order is kept
    finally:
        for b in (s1, s2, l1, l2):
            b.shutdown()


def test_clients_joining_a_busy_channel_complete_the_handshake_and_lose_nothing(hub_factory: HubFactory) -> None:
    hub, _ = hub_factory(grace_s=0.05)
    sender = bus(hub, "A1")
    stop = threading.Event()
    sent: list[int] = []

    def flood() -> None:
        i = 0
        while not stop.is_set():
            sender.send(msg(0x18000000 | (i & 0xFFFF), b"\x55" * 8))
            sent.append(i)
            i += 1
            stop.wait(0.0005)

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    joined = []
    try:
        for _ in range(15):
            joined.append(bus(hub, "A1"))  # python-can raises CanError if "< ok >" came with frame data
        first = [collect(b, 1)[0].arbitration_id & 0xFFFF for b in joined]
        stop.set()
        t.join(5)
        last = len(sent) - 1
        for b, start in zip(joined, first):
            rest = [m.arbitration_id & 0xFFFF for m in collect(b, last - start)]
            assert rest == [(start + 1 + k) & 0xFFFF for k in range(last - start)]  # no gap, no reorder
    finally:
        stop.set()
        for b in (sender, *joined):
            b.shutdown()


def test_pacing_at_250_kbit_s(hub_factory: HubFactory) -> None:
    hub, _ = hub_factory(bitrate=250_000)
    a, b = bus(hub, "A1"), bus(hub, "A1")
    try:
        for _ in range(100):
            a.send(msg(0x181056F4, bytes(8)))
        stamps = [m.timestamp for m in collect(b, 100)]
        per_frame = (67 + 64) / 250_000  # 0.524 ms
        gaps = [y - x for x, y in zip(stamps, stamps[1:])]
        assert min(gaps) >= per_frame - 2e-6  # the protocol carries microseconds: +-1 us per stamp
        assert stamps[-1] - stamps[0] >= 99 * per_frame * 0.999
    finally:
        a.shutdown()
        b.shutdown()


def test_error_frames_on_demand_and_at_random_with_retransmission(hub_factory: HubFactory) -> None:
    hub, loop = hub_factory(error_rate=0.3, seed=7)
    a, b = bus(hub, "A1"), bus(hub, "A1")
    try:
        loop.call_soon_threadsafe(hub.inject_error, "A1")
        first = b.recv(10)
        assert first is not None and first.is_error_frame
        for i in range(100):
            a.send(msg(0x18000000 | i, bytes([i])))
        got = []
        errors = 0
        while len(got) < 100:
            m = b.recv(10)
            assert m is not None
            if m.is_error_frame:
                errors += 1
            else:
                got.append(m.arbitration_id & 0xFF)
        assert got == list(range(100))  # every corrupted frame was retransmitted, in order
        assert 10 <= errors <= 60
        sender_errors = sum(1 for _ in iter(lambda: a.recv(0.2), None))
        assert sender_errors == errors + 1  # the sender sees every error frame too, never its own frames
    finally:
        a.shutdown()
        b.shutdown()


def test_protocol_details_echo_and_bad_commands(hub_factory: HubFactory) -> None:
    hub, _ = hub_factory()
    with socket.create_connection(("127.0.0.1", hub.port), timeout=5) as s:
        assert s.recv(64) == b"< hi >"
        s.sendall(b"< open A9 >")
        assert s.recv(64) == b"< ok >"
        s.sendall(b"< send 1826F456 3 1 1 0 >")  # before rawmode: refused
        s.sendall(b"< rawmode >")
        assert s.recv(64) == b"< ok >"
        s.sendall(b"< echo >< send 1826F456 9 1 >< send XYZ 1 0 >< bogus >")
        assert s.recv(64) == b"< echo >"
    listener = bus(hub, "A9")
    listener.shutdown()
    assert hub.stats()["bad_commands"] == 4
