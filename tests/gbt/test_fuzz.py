"""Fuzz the charger session (h11's rule): random frames, orders and timings, valid and invalid, from any
phase. The only outcomes allowed are events - never an exception - and output is never left enabled
after an error. Each example first walks a random number of steps of a valid session, so the random part
starts from every phase, including charging."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from drivers.gbt27930.attribution import ChargerStop
from drivers.gbt27930.events import (
    Event,
    InsulationCheckRequested,
    OutputAllowed,
    PrechargeRequested,
    SessionStopped,
    StopOutput,
)
from drivers.gbt27930.frame import Frame
from drivers.gbt27930.messages import BCL, BCP, BCS, BEM, BHM, BRM, BRO, BSD, BSM, BST, Permission, Ready, State2
from drivers.gbt27930.session import ChargerSession, SessionConfig
from drivers.gbt27930.transitions import ENERGIZED, FLOWING, Phase
from drivers.gbt27930.transport import cm_rts, dt_payloads

CM, DT = 0x1CEC56F4, 0x1CEB56F4
BMS_IDS = [0x182756F4, 0x100956F4, 0x181056F4, 0x181356F4, 0x101956F4, 0x181C56F4, 0x081E56F4, 0x1C1556F4,
           0x1C1656F4, 0x1C1756F4, 0x1C0256F4, 0x1C1156F4, CM, DT, 0x1826F456, 0x180156F4, 0x181256F4]


def tp(pgn: int, data: bytes) -> list[Frame]:
    return [Frame(CM, cm_rts(len(data), len(dt_payloads(data)), 0xFF, pgn))] + [
        Frame(DT, d) for d in dt_payloads(data)]


BCP_OK = BCP(4.2, 250.0, 60.0, 460.0, 60, 50.0, 400.0)
VALID_STEPS: list[list[Frame]] = [
    [BHM(460.0).frame()],
    tp(BRM.PGN, BRM(battery_type=3, capacity_ah=150.0, rated_voltage_v=400.0, vin="LFUZZ000000000001").encode()),
    tp(BCP.PGN, BCP_OK.encode()),
    [BRO(Ready.NOT_READY).frame(), BRO(Ready.READY).frame()],
    [BCL(460.0, 120.0, 2).frame()] + tp(BCS.PGN, BCS(400.0, 0.0, 3.9, 1, 50, 30).encode()),
    [BSM(1, 30, 1, 25, 1).frame()],
    [BSM(1, 30, 1, 25, 1, charging=Permission.FORBIDDEN).frame()],  # paused
]

raw_frames = st.builds(
    Frame,
    st.one_of(st.sampled_from(BMS_IDS), st.integers(0, 0x1FFFFFFF)),
    st.binary(max_size=8),
)
tp_noise = st.one_of(
    st.builds(lambda c, rest: Frame(CM, bytes([c]) + rest), st.sampled_from([0x10, 0x11, 0x13, 0x20, 0xFF, 0x42]),
              st.binary(min_size=0, max_size=7)),
    st.builds(lambda seq, rest: Frame(DT, bytes([seq]) + rest), st.integers(0, 255), st.binary(min_size=0, max_size=7)),
)
EXTRA_VALID: list[list[Frame]] = [
    [BSM(1, 30, 1, 25, 1, charging=Permission.FORBIDDEN).frame()],
    [BST(soc_reached=State2.ON).frame()],
    [BSD(90, 3.9, 4.0, 25, 30).frame()],
    [BEM(ccs_timeout=State2.ON).frame()],
]
valid_again = st.sampled_from(VALID_STEPS + EXTRA_VALID).map(lambda frames: ("frames", frames))
ops = st.one_of(
    raw_frames.map(lambda f: ("frames", [f])),
    tp_noise.map(lambda f: ("frames", [f])),
    valid_again,
    st.sampled_from([0.0, 0.001, 0.01, 0.05, 0.26, 0.9, 1.01, 5.01, 10.5, 61.0, 601.0]).map(lambda dt: ("wait", dt)),
    st.floats(0.0, 3.0, allow_nan=False).map(lambda dt: ("wait", dt)),
    st.floats(0.0, 1000.0, allow_nan=False).map(lambda a: ("limit", a)),
    st.sampled_from(list(ChargerStop)).map(lambda c: ("stop", c)),
    st.booleans().map(lambda ok: ("insulation", ok)),
    st.floats(0.0, 1200.0, allow_nan=False).map(lambda v: ("precharge", v)),
    st.floats(0.0, 1000.0, allow_nan=False).map(lambda v: ("measure", v)),
)


class Harness:
    def __init__(self) -> None:
        self.s = ChargerSession(SessionConfig(max_voltage_v=1000.0, min_voltage_v=150.0, max_current_a=250.0))
        self.now = 0.0
        self.pending: list[tuple[str, float]] = []
        self.phase = Phase.IDLE

    def check(self, events: list[Event]) -> None:
        """Invariants after every call."""
        s = self.s
        status = s.status()
        left = status.phase is not self.phase and self.phase in ENERGIZED and status.phase not in FLOWING
        if left:  # "stop output now", in this very call
            assert any(isinstance(e, StopOutput) for e in events), (self.phase, status.phase, events)
        self.phase = status.phase
        assert status.setpoint_current_a >= 0.0
        if not status.output_allowed:
            assert status.setpoint_current_a == 0.0
        else:
            assert status.phase is Phase.CHARGING and status.demand is not None and status.limits is not None
            assert status.setpoint_current_a <= min(status.demand.raw_current_a, status.limits.max_current_a) + 1e-9
        errors = [e for e in events if isinstance(e, SessionStopped) and e.reason.attribution.is_error]
        if errors:
            assert not status.output_allowed and status.setpoint_current_a == 0.0
        stops = [i for i, e in enumerate(events) if isinstance(e, StopOutput)]
        allows = [i for i, e in enumerate(events) if isinstance(e, OutputAllowed)]
        if stops and not (allows and allows[-1] > stops[-1]):
            assert not status.output_allowed
        for e in events:
            if isinstance(e, SessionStopped):  # attributed, with the GB/T codes, for the audit log
                assert e.reason.code and e.reason.detail and e.reason.gbt_codes, e.reason
            if isinstance(e, InsulationCheckRequested):
                self.pending.append(("insulation", e.at))
            elif isinstance(e, PrechargeRequested):
                self.pending.append(("precharge", e.battery_voltage_v))

    def feed(self, frames: list[Frame]) -> None:
        for f in frames:
            self.now += 0.002
            self.check(self.s.receive(f, self.now))
            self.check(self.s.poll(self.now)[1])

    def answer_hooks(self) -> None:
        for kind, value in self.pending:
            if kind == "insulation":
                self.check(self.s.insulation_done(True, self.now))
            else:
                self.check(self.s.precharge_done(value, self.now))
        self.pending.clear()


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(VALID_STEPS)), st.lists(ops, max_size=40))
def test_session_survives_anything_and_never_leaves_output_on_after_an_error(prefix: int, script: list) -> None:
    h = Harness()
    h.check(h.s.start(h.now))
    h.s.set_current_limit(200.0)
    for step in VALID_STEPS[:prefix]:
        h.feed(step)
        h.answer_hooks()
    for op, arg in script:
        if op == "frames":
            h.feed(arg)
        elif op == "wait":
            h.now += arg
            h.check(h.s.poll(h.now)[1])
        elif op == "limit":
            h.s.set_current_limit(arg)
            h.check([])
        elif op == "stop":
            h.check(h.s.stop(h.now, arg))
        elif op == "insulation":
            h.check(h.s.insulation_done(arg, h.now))
        elif op == "precharge":
            h.check(h.s.precharge_done(arg, h.now))
        elif op == "measure":
            h.check(h.s.set_measurements(arg, h.s.setpoint_current_a(), h.now))
    # whatever happened, time alone brings every session to an end with a reason
    for _ in range(1000):  # >= 250 simulated seconds: longer than any chain of timeouts short of a pause
        if h.s.ended:
            break
        h.answer_hooks()
        deadline = h.s.next_deadline()
        h.now = max(h.now + 0.25, deadline if deadline is not None else h.now)
        h.check(h.s.poll(h.now)[1])
    assert h.s.phase in (Phase.ENDED, Phase.CHARGING, Phase.PAUSED) or h.s.ended
    if h.s.ended:
        assert h.s.status().stop is not None and not h.s.output_allowed
    assert all(r.gbt_codes for r in h.s.history), h.s.history
