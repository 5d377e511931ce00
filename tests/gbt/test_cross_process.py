"""Our charger session against our BMS simulator across processes, through the software CAN hub.

The hub and each vehicle run as ``station-hil`` processes; the charger side is a :class:`ChargerLink` in
this process using python-can's stock socketcand client, exactly as the controller does. A small control
loop plays the controller and an ideal power stage (answers the hooks, delivers the setpoint).

Every fault knob runs here on the real clock; timeouts longer than a test should wait (the 10-minute pause,
the 60 s BRO wait, three 5 s BRM retries) are shortened through the session's ``Timeouts``. Their standard
values, and the timeouts that need a frame dropped on purpose (BCP, BRO, BST, BSD, the vehicle's CCS),
are checked on a simulated clock in test_session.py.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from drivers.can.charger import ChargerLink
from drivers.gbt27930.attribution import Attribution, ChargerStop
from drivers.gbt27930.events import (
    Event,
    InsulationCheckRequested,
    OutputAllowed,
    PhaseChanged,
    PrechargeRequested,
    Retrying,
    SessionEnded,
    SessionStopped,
    StopOutput,
    VehicleAnomaly,
)
from drivers.gbt27930.session import Timeouts
from drivers.gbt27930.transitions import Phase
from station.config import CanLink, Gun

TIMEOUT_S = 60.0


class Process:
    """A child process whose JSON stdout lines are collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hil.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        self.seen: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, predicate, timeout: float = TIMEOUT_S) -> dict:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; saw {self.seen[-5:]}; stderr: {self.stderr()}")
            try:
                item = self.lines.get(timeout=remaining)
            except queue.Empty:
                continue
            self.seen.append(item)
            if predicate(item):
                return item

    def stderr(self) -> str:
        if self.proc.poll() is None:
            return ""
        return self.proc.stderr.read() if self.proc.stderr else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def hub() -> Iterator[int]:
    p = Process("can-hub", "--port", "0")
    first = p.wait_for(lambda item: "listening" in item, timeout=30)
    yield int(first["listening"].rsplit(":", 1)[1])
    p.stop()


def vehicle(port: int, channel: str, *args: str) -> Process:
    p = Process("bms", "--port", str(port), "--channel", channel, "--capacity-kwh", "20", "--exit-when-done", *args)
    p.wait_for(lambda item: item.get("event") == "ready", timeout=30)
    return p


@dataclass
class Controller:
    """Plays the control cycle for one gun: answers hooks, allows a current, reports the output."""

    link: ChargerLink
    limit_a: float = 200.0
    events: queue.Queue[Event] = field(default_factory=queue.Queue)
    history: list[tuple[float, Event]] = field(default_factory=list)

    def on_event(self, gun: str, ev: Event) -> None:
        self.events.put(ev)

    def run_until(self, predicate, timeout: float = TIMEOUT_S) -> Event:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.link.set_current_limit(self.limit_a)
            st = self.link.status()
            self.link.set_measurements(st.battery.measured_voltage_v or 400.0, st.setpoint_current_a)
            try:
                ev = self.events.get(timeout=0.05)  # the 50 ms control period
            except queue.Empty:
                continue
            self.history.append((time.monotonic(), ev))
            if isinstance(ev, InsulationCheckRequested):
                self.link.insulation_done(True)
            elif isinstance(ev, PrechargeRequested):
                self.link.precharge_done(ev.battery_voltage_v)
            if predicate(ev):
                return ev
        raise AssertionError(f"timed out in phase {self.link.status().phase}; last events {self.history[-5:]}")


def charger(port: int, channel: str, **session_overrides: object) -> Controller:
    gun = Gun(id=channel, max_current_a=250.0, max_voltage_v=1000.0, max_power_kw=240.0,
              can=CanLink(interface="socketcand", channel=channel, options={"host": "127.0.0.1", "port": port}))
    box: dict[str, Controller] = {}
    link = ChargerLink.for_gun(gun, on_event=lambda g, e: box["c"].on_event(g, e), **session_overrides)
    box["c"] = ctl = Controller(link)
    link.open()
    return ctl


def test_two_guns_charge_to_the_soc_target_on_separate_channels(hub: int) -> None:
    cars = {ch: vehicle(hub, ch, "--soc", "0.8998", "--id", f"LVIN{ch}") for ch in ("A1", "A2")}
    ctls = {ch: charger(hub, ch) for ch in cars}
    try:
        ends: dict[str, Event] = {}
        errors: list[BaseException] = []

        def serve(ch: str) -> None:  # one control loop per gun, as both sessions run at once
            try:
                ends[ch] = ctls[ch].run_until(lambda e: isinstance(e, SessionEnded))
            except BaseException as exc:  # reported below, in the test thread
                errors.append(exc)

        threads = [threading.Thread(target=serve, args=(ch,)) for ch in ctls]
        for c in ctls.values():
            c.link.start()
        for t in threads:
            t.start()
        for t in threads:
            t.join(TIMEOUT_S + 10)
        assert not errors, errors
        for ch, end in ends.items():
            assert isinstance(end, SessionEnded)
            assert end.reason.attribution is Attribution.VEHICLE_DONE and end.reason.code == "bst:soc_reached"
            status = ctls[ch].link.status()
            assert status.identity.vin.startswith(f"LVIN{ch}")  # each gun talked to its own vehicle
            health = ctls[ch].link.health()
            assert health["healthy"] and health["frames_in"] > 20 and health["error_frames"] == 0
            summary = cars[ch].wait_for(lambda item: "summary" in item)["summary"]
            assert summary["phase"] == "done" and summary["soc"] >= 0.9
            assert summary["csd_energy_kwh"] == pytest.approx(summary["energy_in_kwh"], abs=0.06)
    finally:
        for c in ctls.values():
            c.link.close()
        for p in cars.values():
            p.stop()


def test_operator_stop_commands_stop_output_before_the_call_returns_and_cst_reaches_the_vehicle(hub: int) -> None:
    car = vehicle(hub, "B1", "--soc", "0.5")
    ctl = charger(hub, "B1")
    try:
        ctl.link.start()
        ctl.run_until(lambda e: isinstance(e, OutputAllowed))
        assert ctl.link.status().setpoint_current_a > 0
        returned = ctl.link.stop(ChargerStop.OPERATOR)
        stops = [e for e in returned if isinstance(e, StopOutput)]
        assert len(stops) == 1 and ctl.link.status().setpoint_current_a == 0.0
        assert stops[0].current_deadline - stops[0].at == pytest.approx(0.1)
        assert any(isinstance(e, StopOutput) for e in list(ctl.events.queue))  # on_event ran before stop() returned
        end = ctl.run_until(lambda e: isinstance(e, SessionEnded))
        assert end.reason.code == "manual" and end.reason.attribution is Attribution.OPERATOR
        car.wait_for(lambda item: item.get("new") == "stopping" and item.get("by") == "charger")
        summary = car.wait_for(lambda item: "summary" in item)["summary"]
        assert summary["cst"] == ["manual_stop"] and summary["phase"] == "done"
    finally:
        ctl.link.close()
        car.stop()


def test_a_silent_vehicle_is_retried_and_charging_resumes(hub: int) -> None:
    car = vehicle(hub, "C1", "--soc", "0.8996", "--knob", "silence_after_s=2.0", "--knob", "silence_for_s=1.5")
    ctl = charger(hub, "C1")
    try:
        ctl.link.start()
        retry = ctl.run_until(lambda e: isinstance(e, Retrying))
        assert retry.reason.attribution is Attribution.VEHICLE_TIMEOUT and retry.reason.retryable
        stops = [e for _, e in ctl.history if isinstance(e, StopOutput)]
        assert stops and stops[0].reason.code in ("bcl_timeout", "bcs_timeout")
        end = ctl.run_until(lambda e: isinstance(e, SessionEnded))
        assert end.reason.code == "bst:soc_reached" and 1 <= end.retries <= 3
        assert sum(isinstance(e, OutputAllowed) for _, e in ctl.history) >= 2
        summary = car.wait_for(lambda item: "summary" in item)["summary"]
        assert summary["restarts"] >= 1 and summary["soc"] >= 0.9
    finally:
        ctl.link.close()
        car.stop()


def test_losing_the_bus_still_stops_the_output_by_timeout() -> None:
    hub = Process("can-hub", "--port", "0")
    port = int(hub.wait_for(lambda item: "listening" in item, timeout=30)["listening"].rsplit(":", 1)[1])
    car = vehicle(port, "E1", "--soc", "0.5")
    ctl = charger(port, "E1")
    try:
        ctl.link.start()
        ctl.run_until(lambda e: isinstance(e, OutputAllowed))
        hub.proc.kill()  # the hub (the bus) dies mid-charge
        stop = ctl.run_until(lambda e: isinstance(e, StopOutput), timeout=10)
        assert stop.reason.code in ("bcl_timeout", "bcs_timeout")
        assert ctl.link.status().setpoint_current_a == 0.0
        retry = ctl.run_until(lambda e: isinstance(e, Retrying))  # CEM for 500 ms, then identification again
        assert retry.attempt == 1 and retry.reason.attribution is Attribution.VEHICLE_TIMEOUT
        health = ctl.link.health()
        assert health["healthy"] is False and health["bus_errors"] >= 1
    finally:
        ctl.link.close()
        car.stop()
        hub.stop()


def test_a_paced_hub_with_error_frames_still_carries_a_full_session() -> None:
    """The hub process at 250 kbit/s with 2 % of frames hit by an error frame (then retransmitted)."""
    hub = Process("can-hub", "--port", "0", "--pace", "--bitrate", "250000", "--error-rate", "0.02", "--seed", "3")
    port = int(hub.wait_for(lambda item: "listening" in item, timeout=30)["listening"].rsplit(":", 1)[1])
    car = vehicle(port, "P1", "--soc", "0.5", "--target-soc", "0.5003")
    ctl = charger(port, "P1")
    try:
        ctl.link.start()
        end = ctl.run_until(lambda e: isinstance(e, SessionEnded))
        assert end.reason.code == "bst:soc_reached" and end.retries == 0
        health = ctl.link.health()
        assert health["healthy"] and health["error_frames"] > 0
        summary = car.wait_for(lambda item: "summary" in item)["summary"]
        assert summary["phase"] == "done" and summary["error_frames"] > 0  # the vehicle saw them too
    finally:
        ctl.link.close()
        car.stop()
        hub.stop()
    stats = hub.wait_for(lambda item: "stats" in item, timeout=10)["stats"]["channels"]["P1"]
    assert stats["errors_injected"] >= health["error_frames"] > 0
    assert stats["busy_s"] >= stats["frames"] * 67 / 250_000  # every frame took its bits' time on the bus


def test_field_deviations_over_the_hub(hub: int) -> None:
    car = vehicle(hub, "D1", "--soc", "0.8998", "--knob", "tp_without_cts=true", "--knob", "brm_length=41",
                  "--knob", "garbage_per_s=30", "--knob", "bcl_over_bcp=true")
    ctl = charger(hub, "D1")
    try:
        ctl.link.start()
        end = ctl.run_until(lambda e: isinstance(e, SessionEnded))
        assert end.reason.code == "bst:soc_reached" and end.retries == 0
        status = ctl.link.status()
        assert status.frames_rejected > 0 and status.phase is Phase.ENDED
        assert status.demand.raw_current_a > status.limits.max_current_a >= status.demand.current_a
    finally:
        ctl.link.close()
        car.stop()


def test_event_callbacks_may_call_back_into_the_link(hub: int) -> None:
    """The controller may answer a hook from inside on_event (in the CAN thread): no deadlock, and events
    still arrive in the order they arose."""
    car = vehicle(hub, "F1", "--soc", "0.8998")
    gun = Gun(id="F1", max_current_a=250.0, max_voltage_v=1000.0, max_power_kw=240.0,
              can=CanLink(interface="socketcand", channel="F1", options={"host": "127.0.0.1", "port": hub}))
    seen: list[Event] = []
    done = threading.Event()
    box: dict[str, ChargerLink] = {}

    def on_event(gun_id: str, ev: Event) -> None:
        seen.append(ev)
        link = box["link"]
        if isinstance(ev, InsulationCheckRequested):
            link.insulation_done(True)
        elif isinstance(ev, PrechargeRequested):
            link.precharge_done(ev.battery_voltage_v)
        elif isinstance(ev, OutputAllowed):
            link.set_current_limit(100.0)
        elif isinstance(ev, SessionEnded):
            done.set()

    box["link"] = link = ChargerLink.for_gun(gun, on_event=on_event)
    link.open()
    try:
        link.start()
        deadline = time.monotonic() + TIMEOUT_S
        while not done.wait(0.05):  # the 50 ms cycle reports the (ideal) output; hooks are answered above
            assert time.monotonic() < deadline, link.status().phase
            st = link.status()
            link.set_measurements(st.battery.measured_voltage_v or 400.0, st.setpoint_current_a)
        phases = [e.new for e in seen if hasattr(e, "new")]
        assert phases[:8] == [Phase.HANDSHAKE, Phase.INSULATION, Phase.IDENTIFY, Phase.AWAIT_BCP,
                              Phase.AWAIT_BRO, Phase.PRECHARGE, Phase.OUTPUT_READY, Phase.CHARGING]
        assert isinstance(seen[-1], SessionEnded) and seen[-1].reason.code == "bst:soc_reached"
    finally:
        link.close()
        car.stop()


def _events(ctl: Controller, cls: type) -> list:
    return [e for _, e in ctl.history if isinstance(e, cls)]


def _paused_then_resumed(ctl: Controller) -> None:
    pauses = [e for e in _events(ctl, StopOutput) if e.pause]
    assert pauses and any(e.at > pauses[0].at for e in _events(ctl, OutputAllowed))


def _pause_ended_after_the_limit(ctl: Controller) -> None:
    (pause,) = [e for e in _events(ctl, StopOutput) if e.pause]
    (stopped,) = _events(ctl, SessionStopped)
    assert stopped.reason.at - pause.at == pytest.approx(2.0, abs=0.1)


def _waited_for_bhm_then_2011(ctl: Controller) -> None:
    (ins,) = _events(ctl, InsulationCheckRequested)
    (handshake,) = [e for e in _events(ctl, PhaseChanged) if e.new is Phase.HANDSHAKE]
    assert ins.at - handshake.at == pytest.approx(5.0, abs=0.1)
    assert ctl.link.status().identity.protocol == "2011"


def _precharged_twice(ctl: Controller) -> None:
    assert sum(e.new is Phase.PRECHARGE for e in _events(ctl, PhaseChanged)) == 2
    assert any(a.kind == "bro-withdrawn" for a in _events(ctl, VehicleAnomaly))


def _never_energised(ctl: Controller) -> None:
    assert _events(ctl, OutputAllowed) == [] and ctl.link.status().setpoint_current_a == 0.0


def _retried_three_times(ctl: Controller) -> None:
    assert [r.attempt for r in _events(ctl, Retrying)] == [1, 2, 3]
    (end,) = _events(ctl, SessionEnded)
    assert "45 bytes, expected 41 or 49" in end.reason.detail and end.retries == 3


def _bsd_timed_out_after_the_vehicle_stopped(ctl: Controller) -> None:
    """The vehicle's BST is the reason; the BSD it never sent is the later, recorded one (not retried)."""
    history = ctl.link.runner.call(lambda: list(ctl.link.session.history))
    assert [(r.code, r.attribution) for r in history] == [
        ("bst:soc_reached", Attribution.VEHICLE_DONE), ("bsd_timeout", Attribution.VEHICLE_TIMEOUT)]
    (end,) = _events(ctl, SessionEnded)
    assert end.retries == 0


@dataclass(frozen=True)
class KnobCase:
    knobs: tuple[str, ...]
    code: str
    attribution: Attribution
    check: Callable[[Controller], None] | None = None
    soc: tuple[str, str] = ("0.5", "0.9")  # initial and target SoC: 0.1 % of 20 kWh takes ~1.8 s at 2C
    timeouts: Timeouts = field(default_factory=Timeouts)
    until: type = SessionEnded  # SessionStopped: the session would go on retrying; its first reason is enough


KNOB_CASES = {
    "brm-45-bytes": KnobCase(("brm_length=45",), "brm_timeout", Attribution.VEHICLE_PROTOCOL,
                             _retried_three_times, timeouts=Timeouts(brm_s=0.5)),
    "2011-no-bhm": KnobCase(("legacy_2011=true",), "bst:soc_reached", Attribution.VEHICLE_DONE,
                            _waited_for_bhm_then_2011, soc=("0.5", "0.5003")),
    "short-bsm-pause": KnobCase(("pause_after_s=0.3", "pause_for_s=1.0"), "bst:soc_reached",
                                Attribution.VEHICLE_DONE, _paused_then_resumed, soc=("0.5", "0.5012")),
    "long-bsm-pause": KnobCase(("pause_after_s=0.3", "pause_for_s=700"), "pause_timeout",
                               Attribution.VEHICLE_TIMEOUT, _pause_ended_after_the_limit,
                               timeouts=Timeouts(pause_s=2.0)),
    "bro-withdrawn-briefly": KnobCase(("bro_withdraw_s=1.0",), "bst:soc_reached", Attribution.VEHICLE_DONE,
                                      _precharged_twice, soc=("0.5", "0.5003")),
    "bro-withdrawn-for-good": KnobCase(("bro_withdraw_s=inf",), "bro_ready_timeout", Attribution.VEHICLE_TIMEOUT,
                                       _never_energised, timeouts=Timeouts(bro_ready_s=3.0), until=SessionStopped),
    "bst-insulation-fault": KnobCase(("bst_reason=insulation_fault", "bst_after_s=0.5"), "bst:insulation_fault",
                                     Attribution.VEHICLE_FAULT),
    "bst-current-too-high": KnobCase(("bst_reason=current_too_high", "bst_after_s=0.5"), "bst:current_too_high",
                                     Attribution.CHARGER_FAULT),
    "cell-over-voltage": KnobCase(("cell_over_voltage_after_s=0.5",), "cell_over_voltage",
                                  Attribution.VEHICLE_FAULT),
    # the charger's own timeouts on a vehicle message, provoked from the vehicle's process
    "never-bcp": KnobCase(("never_send=BCP",), "bcp_timeout", Attribution.VEHICLE_TIMEOUT,
                          timeouts=Timeouts(bcp_s=0.5), until=SessionStopped),
    "never-bro": KnobCase(("never_send=BRO",), "bro_timeout", Attribution.VEHICLE_TIMEOUT,
                          timeouts=Timeouts(bro_s=0.5), until=SessionStopped),
    "never-bcs": KnobCase(("never_send=BCS",), "bem:ccs_timeout", Attribution.VEHICLE_PROTOCOL,
                          until=SessionStopped),
    "never-bsd": KnobCase(("never_send=BSD",), "bst:soc_reached", Attribution.VEHICLE_DONE,
                          _bsd_timed_out_after_the_vehicle_stopped, soc=("0.5", "0.5003"),
                          timeouts=Timeouts(bsd_s=0.5)),
}


@pytest.mark.parametrize("case", KNOB_CASES.values(), ids=KNOB_CASES.keys())
def test_each_fault_knob_across_processes(hub: int, case: KnobCase) -> None:
    car = vehicle(hub, "K1", "--soc", case.soc[0], "--target-soc", case.soc[1],
                  *[a for k in case.knobs for a in ("--knob", k)])
    ctl = charger(hub, "K1", timeouts=case.timeouts)
    try:
        ctl.link.start()
        ev = ctl.run_until(lambda e: isinstance(e, case.until))
        reason = ev.reason
        assert (reason.code, reason.attribution) == (case.code, case.attribution), reason
        if case.check is not None:
            case.check(ctl)
        stops = _events(ctl, StopOutput)
        assert ctl.link.status().setpoint_current_a == 0.0
        assert not _events(ctl, OutputAllowed) or stops[-1].at >= _events(ctl, OutputAllowed)[-1].at
    finally:
        ctl.link.close()
        car.stop()
