"""The vehicle side of the real complete session (T1), replayed against our charger session.

The vehicle's frames are fed at their recorded times; our session answers on its own. The operator stop
happens when the real charger sent its CST; the insulation result comes when the real charger finished
its check (its first CRM); precharge takes 20 ms. Our session must reach charging on the real vehicle's
messages, answer its transfers with the real charger's bytes, and end with the same stop reason.
"""

from __future__ import annotations

from pathlib import Path

from drivers.gbt27930.attribution import Attribution, ChargerStop
from drivers.gbt27930.candump import LogFrame
from drivers.gbt27930.events import (
    Event,
    InsulationCheckRequested,
    OutputAllowed,
    PhaseChanged,
    PrechargeRequested,
    SessionEnded,
    StopOutput,
    VehicleAnomaly,
)
from drivers.gbt27930.frame import CHARGER_ADDRESS, Frame
from drivers.gbt27930.messages import decode_message
from drivers.gbt27930.session import ChargerSession, SessionConfig
from drivers.gbt27930.transitions import Phase
from tests.gbt.helpers import T1, load


class Replay:
    """Feeds recorded vehicle frames into a session and plays the controller's part."""

    def __init__(self, session: ChargerSession, vehicle: list[LogFrame], insulation_at: float, stop_at: float,
                 bhm_v: float = 426.1):
        self.s = session
        self.bhm_v = bhm_v  # the vehicle's BHM maximum voltage: our insulation check must test at it
        self.vehicle = vehicle
        self.hooks: list[tuple[float, str]] = [(insulation_at, "insulation"), (stop_at, "stop")]
        self.events: list[Event] = []
        self.sent: list[tuple[float, Frame]] = []

    def _note(self, events: list[Event], now: float) -> None:
        self.events += events
        for ev in events:
            if isinstance(ev, PrechargeRequested):
                self.hooks.append((now + 0.02, "precharge"))
            assert not isinstance(ev, InsulationCheckRequested) or ev.test_voltage_v == self.bhm_v

    def _poll(self, now: float) -> None:
        frames, events = self.s.poll(now)
        self.sent += [(now, f) for f in frames]
        self._note(events, now)

    def _advance(self, until: float) -> None:
        """Run hooks and the session's own deadlines up to ``until``."""
        while True:
            candidates = [t for t, _ in self.hooks]
            deadline = self.s.next_deadline()
            if deadline is not None:
                candidates.append(deadline)
            due = [t for t in candidates if t <= until]
            if not due:
                return
            now = max(min(due), self.sent[-1][0] if self.sent else 0.0)
            for hook in sorted(h for h in self.hooks if h[0] <= now):
                self.hooks.remove(hook)
                if hook[1] == "insulation":
                    self._note(self.s.insulation_done(True, now), now)
                elif hook[1] == "precharge":
                    limits = self.s.status().limits
                    assert limits is not None
                    self._note(self.s.precharge_done(limits.battery_voltage_v, now), now)
                else:
                    self._note(self.s.stop(now, ChargerStop.OPERATOR), now)
            self._poll(now)

    def run(self) -> None:
        self._note(self.s.start(self.vehicle[0].t - 0.015), self.vehicle[0].t - 0.015)
        self._poll(self.vehicle[0].t - 0.015)
        for lf in self.vehicle:
            self._advance(lf.t)
            self._note(self.s.receive(lf.frame, lf.t), lf.t)
            self._poll(lf.t)
        self._advance(self.vehicle[-1].t + 20.0)


def test_real_vehicle_side_reaches_charging_and_ends_with_the_same_stop_reason(traces: Path) -> None:
    frames = load(traces / T1)
    vehicle = [lf for lf in frames if lf.frame.source != CHARGER_ADDRESS]  # the BMS, and the foreign node
    real = [lf for lf in frames if lf.frame.source == CHARGER_ADDRESS]
    real_crm = next(lf.t for lf in real if lf.frame.can_id == 0x1801F456)
    real_cst = next(lf for lf in real if lf.frame.can_id == 0x101AF456)
    first_bhm = next(lf.t for lf in vehicle if lf.frame.can_id == 0x182756F4)
    session = ChargerSession(SessionConfig(max_voltage_v=950.0, min_voltage_v=38.0, max_current_a=250.0,
                                           charger_number=0x01010101, region="123", ccs_length=7))
    fed = [lf for lf in vehicle if lf.t >= first_bhm]
    foreign = sum(lf.frame.source != 0xF4 for lf in fed)
    replay = Replay(session, fed, real_crm, real_cst.t)
    session.set_current_limit(250.0)
    replay.run()

    phases = [e.new for e in replay.events if isinstance(e, PhaseChanged)]
    assert phases == [Phase.HANDSHAKE, Phase.INSULATION, Phase.IDENTIFY, Phase.AWAIT_BCP, Phase.AWAIT_BRO,
                      Phase.PRECHARGE, Phase.OUTPUT_READY, Phase.CHARGING, Phase.STOPPING, Phase.STATISTICS,
                      Phase.ENDED]
    assert sum(isinstance(e, OutputAllowed) for e in replay.events) == 1
    (end,) = [e for e in replay.events if isinstance(e, SessionEnded)]
    assert end.reason.attribution is Attribution.OPERATOR and end.reason.code == "manual"
    assert end.final_soc_percent == 77
    assert foreign > 0 and session.frames_foreign == foreign  # the 0070F4B5 node was ignored

    ours = {str(f) for _, f in replay.sent}
    real_set = {str(lf.frame) for lf in real}
    # every transfer answer and the stop are byte-identical to the real charger's
    for expected in ["1CECF456#110701FFFF000200", "1CECF456#13310007FF000200", "1CECF456#110201FFFF000600",
                     "1CECF456#130D0002FF000600", "1CECF456#110201FFFF001100", "1CECF456#13090002FF001100",
                     "101AF456#0400F0F0", "1801F456#0001010101313233", "1801F456#AA01010101313233",
                     "100AF456#00", "100AF456#AA", "1826F456#010100", "1807F456#FFFFFFFFFFFFFF"]:
        assert expected in ours and expected in real_set, expected
    our_cst = [t for t, f in replay.sent if f.can_id == 0x101AF456]
    (stop,) = [e for e in replay.events if isinstance(e, StopOutput)]
    assert stop.at == our_cst[0] == real_cst.t  # "stop output now" fires with the first CST
    bcs_acks = [f for _, f in replay.sent if str(f) == "1CECF456#13090002FF001100"]
    assert len(bcs_acks) >= 100  # every BCS transfer of the charging phase was reassembled
    assert session.status().battery.soc_percent == 77


def test_real_failed_session_against_our_session_gets_its_cts_and_the_same_attribution(traces: Path) -> None:
    """candump2: the real charger never answered the vehicle's BRM RTS, and the vehicle gave up with BEM
    "timeout waiting for CRM(0xAA)". Replayed against our session (the log's timestamps are all equal,
    so frames are fed 10 ms apart), we answer every BRM RTS with a CTS for the vehicle's window; the
    recorded vehicle cannot react to it and aborts as it did, and when its BEM arrives our session ends
    the attempt as the charger side's fault, with the vehicle's SPN, exactly what happened in reality.
    No output is ever allowed."""
    frames = load(traces / "candump2.log")
    spaced = [LogFrame(0.01 * i, lf.channel, lf.frame) for i, lf in enumerate(frames)]
    vehicle = [lf for lf in spaced if lf.frame.source != CHARGER_ADDRESS]
    real = {str(lf.frame) for lf in frames if lf.frame.source == CHARGER_ADDRESS}
    first_bhm = next(lf for lf in vehicle if lf.frame.can_id == 0x182756F4)
    bhm = decode_message(first_bhm.frame.pgn, first_bhm.frame.data)
    session = ChargerSession(SessionConfig(max_voltage_v=950.0, min_voltage_v=38.0, max_current_a=250.0))
    replay = Replay(session, [lf for lf in vehicle if lf.t >= first_bhm.t], first_bhm.t + 0.05, 1e9,
                    bhm_v=bhm.max_voltage_v)
    replay.run()

    brm_rts = "1CEC56F4#1031000707000200"
    our_cts = "1CECF456#110701FFFF000200"  # 7 packets from 1: the vehicle's own window of 7
    assert our_cts not in real  # the real charger's failure
    rts_at = [lf.t for lf in vehicle if str(lf.frame) == brm_rts and lf.t < session.history[0].at]
    cts_at = [t for t, f in replay.sent if str(f) == our_cts]
    assert rts_at and all(any(t == r for t in cts_at) for r in rts_at)  # answered in the same poll
    first = session.history[0]
    assert first.code == "bem:crm_aa_timeout" and first.attribution is Attribution.CHARGER_FAULT
    assert first.gbt_codes == ("BEM SPN3902 crm_aa_timeout",)
    assert not any(isinstance(e, OutputAllowed) for e in replay.events)
    anomalies = [e for e in replay.events if isinstance(e, VehicleAnomaly)]
    assert any(a.kind == "tp-aborted" and "peer aborted its transfer (reason 255)" in a.detail for a in anomalies)
