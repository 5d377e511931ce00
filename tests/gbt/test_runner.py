"""The CAN runner's event delivery contract, on python-can's in-process ``virtual`` bus.

Events reach ``on_events`` in the order they arose, whichever thread produced them, and a callback may call
back into the endpoint (as a controller answering a hook does). The endpoint here is a scripted stand-in:
what is under test is the runner's threading, not a protocol.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import can
import pytest

from drivers.can.runner import CanRunner
from drivers.gbt27930.frame import Frame

WAIT_S = 30.0


class Scripted:
    """Every received frame yields the events named by its data bytes (b"ab" -> ["a", "b"])."""

    def receive(self, frame: Frame, now: float) -> list[str]:
        return [chr(b) for b in frame.data]

    def poll(self, now: float) -> tuple[list[Frame], list[str]]:
        return [], []

    def next_deadline(self) -> float | None:
        return None


@pytest.fixture
def buses() -> Iterator[tuple[can.BusABC, can.BusABC]]:
    channel = f"runner-{uuid.uuid4().hex}"
    ours, peer = can.Bus(interface="virtual", channel=channel), can.Bus(interface="virtual", channel=channel)
    yield ours, peer
    ours.shutdown()
    peer.shutdown()


def send(bus: can.BusABC, events: str) -> None:
    bus.send(can.Message(arbitration_id=0x1856F4, data=events.encode(), is_extended_id=True))


def test_a_callback_may_call_back_and_its_events_follow_the_rest_of_the_batch(buses) -> None:  # type: ignore[no-untyped-def]
    ours, peer = buses
    seen: list[str] = []
    done = threading.Event()
    runner: CanRunner

    def on_events(events: list[str]) -> None:
        for ev in events:
            seen.append(ev)
            if ev == "a":  # answering a hook from inside the callback, in the CAN thread
                runner.call(lambda: ["c"])
            if ev == "c":
                done.set()

    runner = CanRunner(ours, Scripted(), on_events=on_events)
    runner.start()
    try:
        send(peer, "ab")
        assert done.wait(WAIT_S), seen
        assert seen == ["a", "b", "c"]  # "b" arose before "c": nested delivery would give a, c, b
    finally:
        runner.stop()


def test_events_from_another_thread_wait_for_the_ones_the_can_thread_found_first(buses) -> None:  # type: ignore[no-untyped-def]
    """A StopOutput raised by the controller's thread never overtakes an event the CAN thread produced
    before it, and :meth:`CanRunner.call` returns only once its own events were delivered."""
    ours, peer = buses
    seen: list[tuple[str, str]] = []
    produced = threading.Event()
    returned: list[list[tuple[str, str]]] = []
    controller_done = threading.Event()
    runner: CanRunner

    def controller() -> None:
        def stop_now() -> list[str]:
            produced.set()
            return ["stop"]
        runner.call(stop_now)
        returned.append(list(seen))
        controller_done.set()

    def on_events(events: list[str]) -> None:
        for ev in events:
            seen.append((ev, threading.current_thread().name))
            if ev == "a":  # the CAN thread is busy delivering when the controller's stop arises
                threading.Thread(target=controller, name="controller").start()
                assert produced.wait(WAIT_S)

    runner = CanRunner(ours, Scripted(), on_events=on_events, name="can")
    runner.start()
    try:
        send(peer, "ab")
        assert controller_done.wait(WAIT_S), seen
        assert [ev for ev, _ in seen] == ["a", "b", "stop"]
        assert seen[0][1] == seen[1][1] == "can"
        assert returned == [seen]  # the controller's call returned after its event was delivered
        assert runner.error is None and runner.running
    finally:
        runner.stop()
