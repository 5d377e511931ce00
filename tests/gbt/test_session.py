"""The charger session against the BMS simulator on an in-memory link with a simulated clock (sans-IO):
full sessions, every timeout, every fault knob, retries, attribution, and the stop-output instant."""

from __future__ import annotations

import dataclasses
import json

import pytest

from drivers.gbt27930.attribution import Attribution, ChargerStop
from drivers.gbt27930.events import (
    FrameRejected,
    InsulationCheckRequested,
    OutputAllowed,
    PhaseChanged,
    Retrying,
    SessionEnded,
    SessionStopped,
    StopOutput,
    StopOverdue,
    VehicleAnomaly,
)
from drivers.gbt27930.frame import Frame
from drivers.gbt27930.messages import (
    BCL, BCP, BRO, BSD, BSM, BST, CCS, CEM, CML, CRM, CRO, CSD, CST, CTS, Permission, State2,
)
from drivers.gbt27930.session import ChargerSession, SessionConfig, SessionUsageError, Timeouts
from drivers.gbt27930.transitions import Phase, Trigger
from drivers.gbt27930.transport import TP_CM_PGN
from hil.bms.pair import IdealPowerStage, InMemoryLink
from hil.bms.simulator import BST_REASONS, BmsSimulator, BmsTimeouts, FaultKnobs
from hil.bms.simulator import Phase as BmsPhase
from hil.plant.vehicle import Vehicle, car

CONFIG = SessionConfig(max_voltage_v=1000.0, min_voltage_v=150.0, max_current_a=250.0)


def make(knobs: FaultKnobs | None = None, *, soc: float = 0.5, target: float = 0.9,
         stage: IdealPowerStage | None = None, config: SessionConfig = CONFIG,
         bms_timeouts: BmsTimeouts | None = None) -> InMemoryLink:
    vehicle = Vehicle(car("LTESTVIN", capacity_kwh=20.0, initial_soc=soc, target_soc=target))
    return InMemoryLink(ChargerSession(config), BmsSimulator(vehicle, knobs, timeouts=bms_timeouts), stage)


def of(link: InMemoryLink, cls: type) -> list:
    return [e for e in link.events if isinstance(e, cls)]


def entered(link: InMemoryLink, phase: Phase) -> list[float]:
    return [e.at for e in of(link, PhaseChanged) if e.new is phase]


def tp_rts_of(pgn: int):
    """A drop filter for the RTS of one TP message (the transfer then never happens)."""
    return lambda f: f.pgn == TP_CM_PGN and f.data[0] == 0x10 and int.from_bytes(f.data[5:8], "little") == pgn


def ended(link: InMemoryLink) -> SessionEnded:
    assert link.session.ended, link.session.phase
    (end,) = of(link, SessionEnded)
    return end


def assert_no_output_after_stops(link: InMemoryLink) -> None:
    """After every StopOutput, nothing allowed output again except an explicit OutputAllowed."""
    allowed = False
    for ev in link.events:
        if isinstance(ev, OutputAllowed):
            allowed = True
        elif isinstance(ev, StopOutput):
            allowed = False
        elif isinstance(ev, SessionEnded):
            assert not allowed


# ------------------------------------------------------------------------------------------ full sessions


def test_full_session_to_the_soc_target() -> None:
    link = make(soc=0.8995, target=0.9)
    limits_seen: list[tuple[float, float]] = []
    link.monitor = lambda lk: limits_seen.append((lk.session.setpoint_current_a(), lk.session._vehicle_current_cap()))
    link.run(max_s=60)
    end = ended(link)
    assert end.reason.attribution is Attribution.VEHICLE_DONE and end.reason.code == "bst:soc_reached"
    assert end.retries == 0 and end.final_soc_percent == 90
    assert [e.new for e in of(link, PhaseChanged)] == [
        Phase.HANDSHAKE, Phase.INSULATION, Phase.IDENTIFY, Phase.AWAIT_BCP, Phase.AWAIT_BRO, Phase.PRECHARGE,
        Phase.OUTPUT_READY, Phase.CHARGING, Phase.STOPPING, Phase.STATISTICS, Phase.ENDED]
    status = link.session.status()
    assert status.identity.vin == "LTESTVIN000000000" and status.identity.protocol == "2015"
    assert status.limits.max_current_a == 250.0 and status.limits.max_voltage_v == 460.0
    assert link.bms.phase is BmsPhase.DONE and link.bms.vehicle.soc >= 0.9
    assert link.bms.csd is not None
    assert link.bms.csd.energy_kwh == pytest.approx(link.bms.vehicle.energy_in_kwh, abs=0.06)
    assert all(sp <= cap + 1e-9 for sp, cap in limits_seen)
    ccs_times = [t for t, _ in link.sent("charger", CCS.PGN)]
    gaps = {round(b - a, 6) for a, b in zip(ccs_times, ccs_times[1:])}
    assert gaps == {0.05}  # CCS every 50 ms
    cst = link.sent("charger", CST.PGN)
    assert cst[0][1].data == bytes.fromhex("40 00 F0 F0".replace(" ", ""))  # "BMS stopped actively"
    assert {round(b[0] - a[0], 6) for a, b in zip(cst, cst[1:])} == {0.01}  # CST every 10 ms
    assert_no_output_after_stops(link)


def test_operator_stop_fires_stop_output_at_the_instant_of_cst() -> None:
    link = make()
    link.run(until=lambda: link.session.phase is Phase.CHARGING)
    link.run(max_s=2.0, until=lambda: False)
    assert link.session.setpoint_current_a() > 0
    t_stop = link.now
    events = link.session.stop(t_stop, ChargerStop.OPERATOR)
    stop = [e for e in events if isinstance(e, StopOutput)]
    assert len(stop) == 1 and stop[0].at == t_stop and stop[0].current_deadline == pytest.approx(t_stop + 0.1)
    assert not stop[0].pause and stop[0].reason.attribution is Attribution.OPERATOR
    assert link.session.setpoint_current_a() == 0.0 and not link.session.status().output_allowed
    frames, _ = link.session.poll(t_stop)
    assert [f.data for f in frames if f.pgn == CST.PGN] == [bytes.fromhex("0400F0F0")]  # CST leaves now
    link._note(events)
    link.run(max_s=30)
    end = ended(link)
    assert end.reason.code == "manual" and end.reason.gbt_codes == ("CST SPN3521 manual",)
    assert json.loads(json.dumps(end.reason.as_dict())) == {  # what the audit log stores
        "attribution": "operator", "code": "manual", "detail": "manual", "at": t_stop, "phase": "charging",
        "gbt_codes": ["CST SPN3521 manual"], "retryable": False}
    assert link.bms.record.log[-1]["new"] == "done"
    assert link.bms.cst is not None and link.bms.cst.manual_stop is State2.ON


def test_current_still_flowing_after_the_stop_deadline_is_reported_once() -> None:
    link = make()
    link.run(until=lambda: link.session.phase is Phase.CHARGING)
    s, t = link.session, link.now
    s.stop(t, ChargerStop.EMERGENCY_STOP)
    assert s.set_measurements(400.0, 120.0, t + 0.09) == []  # still inside the 100 ms
    (late,) = s.set_measurements(400.0, 80.0, t + 0.11)
    assert isinstance(late, StopOverdue) and late.deadline == pytest.approx(t + 0.1) and late.current_a == 80.0
    assert s.set_measurements(400.0, 60.0, t + 0.2) == []  # once per stop
    s2 = make()
    s2.run(until=lambda: s2.session.phase is Phase.CHARGING)
    s2.session.stop(s2.now)
    assert s2.session.set_measurements(400.0, 4.0, s2.now + 0.5) == []  # <= 5 A in time: nothing to report


@pytest.mark.parametrize("cause", [ChargerStop.EMERGENCY_STOP, ChargerStop.OVER_TEMPERATURE,
                                   ChargerStop.CONDITIONS_REACHED, ChargerStop.CURRENT_MISMATCH])
def test_charger_side_stops_carry_their_cst_bits_and_attribution(cause: ChargerStop) -> None:
    link = make()
    link.run(until=lambda: link.session.phase is Phase.CHARGING)
    link.inject(link.now + 0.5, lambda: link.session.stop(link.now, cause))
    link.run(max_s=30)
    end = ended(link)
    assert end.reason.attribution is cause.attribution
    assert link.bms.cst == cause.cst()
    expected = Attribution.OPERATOR if cause is ChargerStop.CONDITIONS_REACHED else Attribution.CHARGER_FAULT
    assert end.reason.attribution is expected


# ------------------------------------------------------------------------------------------ every timeout


def test_brm_timeout_then_three_retries_then_the_end() -> None:
    link = make(FaultKnobs(silence_after_s=0.2))  # dies during the insulation check
    link.run(max_s=120)
    end = ended(link)
    assert end.reason.attribution is Attribution.VEHICLE_TIMEOUT and end.reason.code == "brm_timeout"
    assert end.retries == 3 and [r.attempt for r in of(link, Retrying)] == [1, 2, 3]
    identify = entered(link, Phase.IDENTIFY)
    errors = entered(link, Phase.ERROR)
    assert len(identify) == 4 and len(errors) == 4
    assert all(e - i == pytest.approx(5.0) for i, e in zip(identify, errors))  # 5 s after the first CRM(0x00)
    cems = [(t, f.data) for t, f in link.sent("charger", CEM.PGN)]
    assert cems[0] == (errors[0], bytes.fromhex("FDF0C0FC"))  # SPN3921, undefined bits 1
    assert [round(t - errors[0], 6) for t, _ in cems[:3]] == [0.0, 0.25, 0.5]  # CEM at 0, 250, 500 ms
    assert identify[1] == pytest.approx(errors[0] + 0.5)  # then CRM(0x00) again
    crm = [f for _, f in link.sent("charger", CRM.PGN)]
    assert crm[-1].data[0] == 0x00


def test_bcp_timeout() -> None:
    link = make()
    link.drop_to_charger = tp_rts_of(BCP.PGN)
    link.run(until=lambda: bool(entered(link, Phase.ERROR)))
    (stopped,) = of(link, SessionStopped)
    assert stopped.reason.code == "bcp_timeout"
    assert stopped.reason.at == pytest.approx(entered(link, Phase.AWAIT_BCP)[0] + 5.0)
    assert stopped.reason.gbt_codes == ("CEM SPN3922 bcp_timeout",)


def test_bro_timeout_without_any_bro() -> None:
    link = make()
    link.drop_to_charger = lambda f: f.pgn == BRO.PGN
    link.run(until=lambda: bool(entered(link, Phase.ERROR)))
    (stopped,) = of(link, SessionStopped)
    assert stopped.reason.code == "bro_timeout"
    assert stopped.reason.at == pytest.approx(entered(link, Phase.AWAIT_BRO)[0] + 5.0)


def test_bro_aa_then_00_for_good_times_out_after_60_s() -> None:
    link = make(FaultKnobs(bro_withdraw_s=float("inf")))
    link.run(until=lambda: bool(entered(link, Phase.ERROR)))
    assert Phase.PRECHARGE in [e.new for e in of(link, PhaseChanged)]
    assert any(a.kind == "bro-withdrawn" for a in of(link, VehicleAnomaly))
    (stopped,) = of(link, SessionStopped)
    assert stopped.reason.code == "bro_ready_timeout"
    assert stopped.reason.at == pytest.approx(entered(link, Phase.AWAIT_BRO)[0] + 60.0)
    assert of(link, OutputAllowed) == []


def test_bcl_timeout_stops_output_at_the_instant() -> None:
    link = make()
    link.run(until=lambda: link.session.phase is Phase.CHARGING)
    cut = link.now + 1.0
    link.drop_to_charger = lambda f: f.pgn == BCL.PGN and link.now >= cut
    link.run(until=lambda: bool(entered(link, Phase.ERROR)))
    last_bcl = max(t for t, f in link.sent("bms", BCL.PGN) if t + link.latency_s < cut)
    (stop,) = of(link, StopOutput)
    assert stop.at == pytest.approx(last_bcl + link.latency_s + 1.0)
    assert stop.reason.code == "bcl_timeout" and stop.reason.retryable
    assert stop.reason.attribution is Attribution.VEHICLE_TIMEOUT
    assert link.session.setpoint_current_a() == 0.0


def test_bcs_timeout() -> None:
    link = make()
    link.run(until=lambda: link.session.phase is Phase.CHARGING)
    cut = link.now
    link.drop_to_charger = tp_rts_of(0x1100)
    link.run(until=lambda: bool(entered(link, Phase.ERROR)))
    (stop,) = of(link, StopOutput)
    assert stop.reason.code == "bcs_timeout" and cut + 4.7 < stop.at <= cut + 5.0


@pytest.mark.parametrize(("ccs_s", "code", "after", "attribution", "spn"), [
    (1.0, "bem:ccs_timeout", 1.0, Attribution.VEHICLE_PROTOCOL, "BEM SPN3905"),  # the simulator's own 1 s
    (10.0, "bcs_timeout", 5.0, Attribution.VEHICLE_TIMEOUT, "CEM SPN3924"),  # a vehicle that waits longer
])
def test_output_ready_without_bcs_times_out_on_whichever_side_waits_less(
        ccs_s: float, code: str, after: float, attribution: Attribution, spn: str) -> None:
    """After CRO(0xAA) we send CCS only once BCL *and* BCS arrived. A vehicle that never sends BCS but
    times out on CCS broke that rule (its BEM is its own protocol error); otherwise our 5 s BCS timer fires."""
    link = make(bms_timeouts=BmsTimeouts(ccs_s=ccs_s))
    link.drop_to_charger = tp_rts_of(0x1100)
    link.run(until=lambda: bool(entered(link, Phase.ERROR)))
    assert Phase.CHARGING not in [e.new for e in of(link, PhaseChanged)]
    (stop,) = of(link, StopOutput)  # the output was connected (precharge done): it is stopped at once
    assert stop.reason.code == code and stop.reason.attribution is attribution and stop.reason.retryable
    assert stop.at - entered(link, Phase.OUTPUT_READY)[0] == pytest.approx(after, abs=0.01)  # + link latency
    assert stop.reason.gbt_codes == (f"{spn} {code.removeprefix('bem:')}",)


def test_output_ready_bcl_timeout() -> None:
    link = make()
    link.drop_to_charger = lambda f: f.pgn == BCL.PGN
    link.run(until=lambda: bool(entered(link, Phase.ERROR)))
    (stop,) = of(link, StopOutput)
    assert stop.reason.code == "bcl_timeout" and stop.reason.gbt_codes == ("CEM SPN3925 bcl_timeout",)
    assert stop.at == pytest.approx(entered(link, Phase.OUTPUT_READY)[0] + 1.0)


@pytest.mark.parametrize(("dropped", "code", "after"), [
    ((BST.PGN, BSD.PGN), "bst_timeout", 5.0),  # a BSD alone would also end the stopping phase
    ((BSD.PGN,), "bsd_timeout", 10.0),
])
def test_stopping_timeouts_do_not_retry_and_keep_the_first_reason(dropped: tuple[int, ...], code: str,
                                                                   after: float) -> None:
    link = make()
    link.run(until=lambda: link.session.phase is Phase.CHARGING)
    link.drop_to_charger = lambda f: f.pgn in dropped
    t_stop = link.now + 0.5
    link.inject(t_stop, lambda: link.session.stop(link.now))
    link.run(max_s=60)
    end = ended(link)
    assert end.reason.code == "manual" and end.retries == 0
    late = link.session.history[-1]
    assert late.code == code and late.at == pytest.approx(t_stop + after) and not late.retryable


def test_pause_longer_than_ten_minutes_ends_the_session() -> None:
    link = make(FaultKnobs(pause_after_s=1.0, pause_for_s=700.0))
    link.run(max_s=800)
    end = ended(link)
    assert end.reason.code == "pause_timeout" and end.reason.attribution is Attribution.VEHICLE_TIMEOUT
    (paused_at,) = entered(link, Phase.PAUSED)
    assert end.reason.at == pytest.approx(paused_at + 600.0)
    pauses = [e for e in of(link, StopOutput) if e.pause]
    assert len(pauses) == 1 and pauses[0].at == paused_at
    (leave,) = [e for e in of(link, PhaseChanged) if e.old is Phase.PAUSED]
    assert leave.new is Phase.STOPPING and leave.trigger is Trigger.PAUSE_TIMEOUT


@pytest.mark.parametrize(("stage", "code", "after"), [
    (IdealPowerStage(insulation_s=100.0), "insulation_timeout", 25.0),
    (IdealPowerStage(precharge_s=100.0), "precharge_timeout", 30.0),
])
def test_charger_hardware_timeouts_are_charger_faults(stage: IdealPowerStage, code: str, after: float) -> None:
    link = make(stage=stage)
    link.run(max_s=100)
    end = ended(link)
    assert end.reason.code == code and end.reason.attribution is Attribution.CHARGER_FAULT
    start = entered(link, Phase.INSULATION if code.startswith("insulation") else Phase.PRECHARGE)[0]
    assert end.reason.at == pytest.approx(start + after)


def test_2011_vehicle_without_bhm_falls_back_after_5_s_and_charges() -> None:
    link = make(FaultKnobs(legacy_2011=True), soc=0.8995)
    link.run(max_s=60)
    end = ended(link)
    assert end.reason.code == "bst:soc_reached"
    (ins,) = of(link, InsulationCheckRequested)
    assert ins.at == pytest.approx(5.0) and ins.test_voltage_v == CONFIG.max_voltage_v
    assert link.session.status().identity.protocol == "2011"


# ------------------------------------------------------------------------------------------ retries


def test_a_short_silence_while_charging_is_recovered_by_a_retry() -> None:
    link = make(FaultKnobs(silence_after_s=3.0, silence_for_s=1.5), soc=0.8995)
    link.run(max_s=120)
    end = ended(link)
    assert end.reason.code == "bst:soc_reached"
    assert 1 <= end.retries <= 3
    assert link.session.history[0].code == "bcl_timeout"
    assert len(entered(link, Phase.CHARGING)) >= 2 and link.bms.record.restarts >= 1
    assert_no_output_after_stops(link)


def test_vehicle_that_never_hears_ccs_is_a_charger_side_failure() -> None:
    link = make()
    link.drop_to_bms = lambda f: f.pgn == CCS.PGN
    link.run(max_s=120)
    end = ended(link)
    assert end.reason.attribution is Attribution.CHARGER_FAULT and end.reason.code == "bem:ccs_timeout"
    assert end.reason.gbt_codes == ("BEM SPN3905 ccs_timeout",) and end.retries == 3
    assert_no_output_after_stops(link)


# ------------------------------------------------------------------------------------------ fault knobs


@pytest.mark.parametrize("knobs", [FaultKnobs(brm_length=41), FaultKnobs(tp_without_cts=True),
                                   FaultKnobs(garbage_per_s=40.0, seed=3)], ids=["brm41", "dt-blast", "garbage"])
def test_tolerated_deviations_still_charge_to_the_end(knobs: FaultKnobs) -> None:
    link = make(knobs, soc=0.8995)
    link.run(max_s=60)
    end = ended(link)
    assert end.reason.code == "bst:soc_reached" and end.retries == 0
    if knobs.garbage_per_s:
        assert len(of(link, FrameRejected)) > 10 and link.session.frames_rejected == len(of(link, FrameRejected))
    if knobs.brm_length == 41:
        assert link.session.status().identity.vin == "LTESTVIN000000000"


def test_wrong_brm_length_is_a_vehicle_protocol_failure() -> None:
    link = make(FaultKnobs(brm_length=45))
    link.run(max_s=120)
    end = ended(link)
    assert end.reason.attribution is Attribution.VEHICLE_PROTOCOL
    assert "45 bytes, expected 41 or 49" in end.reason.detail and end.retries == 3


def test_demand_above_bcp_is_clamped_and_reported() -> None:
    link = make(FaultKnobs(bcl_over_bcp=True))
    seen: list[float] = []
    link.monitor = lambda lk: seen.append(lk.session.setpoint_current_a())
    link.run(until=lambda: link.session.phase is Phase.CHARGING)
    link.run(max_s=2.0, until=lambda: False)
    assert max(seen) == pytest.approx(250.0)  # BCP's maximum, not the 300 A asked for
    demand = link.session.status().demand
    assert demand.raw_current_a == 300.0 and demand.current_a == 250.0 and demand.voltage_v == 460.0
    assert [a.kind for a in of(link, VehicleAnomaly)].count("bcl-above-bcp") == 1


def test_short_bsm_pause_stops_and_resumes_output() -> None:
    link = make(FaultKnobs(pause_after_s=1.0, pause_for_s=2.0), soc=0.8995)
    link.run(max_s=60)
    end = ended(link)
    assert end.reason.code == "bst:soc_reached"
    (paused,) = entered(link, Phase.PAUSED)
    resumed = [t for t in entered(link, Phase.CHARGING) if t > paused]
    assert resumed and 2.0 <= resumed[0] - paused <= 2.3
    assert [e.at for e in of(link, OutputAllowed)][-1] == resumed[0]
    assert_no_output_after_stops(link)


def test_bro_withdrawn_briefly_returns_to_waiting_then_charges() -> None:
    link = make(FaultKnobs(bro_withdraw_s=1.0), soc=0.8995)
    link.run(max_s=60)
    assert ended(link).reason.code == "bst:soc_reached"
    assert len(entered(link, Phase.PRECHARGE)) == 2
    assert [e for e in of(link, StopOutput) if e.reason is None and not e.pause]  # precharge abandoned


def test_bro_withdrawn_after_our_cro_aa_stops_the_output_and_waits_again() -> None:
    """A fast power stage has sent CRO(0xAA) before the vehicle's BRO(0x00) arrives: the vehicle is not
    ready after all, so the output stops and the session waits for BRO(0xAA) again (no BCL timeout)."""
    link = make(FaultKnobs(bro_withdraw_s=1.0), soc=0.8995, stage=IdealPowerStage(precharge_s=0.01))
    link.run(max_s=60)
    assert ended(link).reason.code == "bst:soc_reached" and ended(link).retries == 0
    back = [e for e in of(link, PhaseChanged) if e.new is Phase.AWAIT_BRO and e.old is Phase.OUTPUT_READY]
    assert len(back) == 1
    assert any(e.at == back[0].at and e.reason is None and not e.pause for e in of(link, StopOutput))
    assert_no_output_after_stops(link)


@pytest.mark.parametrize("reason", BST_REASONS)
def test_abrupt_bst_with_each_reason_is_attributed(reason: str) -> None:
    link = make(FaultKnobs(bst_reason=reason, bst_after_s=1.0))
    link.run(max_s=30)
    end = ended(link)
    expected = {"soc_reached": Attribution.VEHICLE_DONE, "current_too_high": Attribution.CHARGER_FAULT,
                "voltage_abnormal": Attribution.CHARGER_FAULT}.get(reason, Attribution.VEHICLE_FAULT)
    assert end.reason.attribution is expected and end.reason.code == f"bst:{reason}"
    assert any(reason in code for code in end.reason.gbt_codes)
    cro_aa = entered(link, Phase.OUTPUT_READY)[0]  # the vehicle counts from the CRO(0xAA) it received
    assert end.reason.at == pytest.approx(cro_aa + 1.0 + 2 * link.latency_s, abs=1e-6)
    assert link.bms.cst == CST(bms_stopped=State2.ON)


def test_cell_above_its_own_limit_stops_as_vehicle_fault() -> None:
    link = make(FaultKnobs(cell_over_voltage_after_s=1.0))
    link.run(max_s=30)
    end = ended(link)
    assert end.reason.code == "cell_over_voltage" and end.reason.attribution is Attribution.VEHICLE_FAULT


@pytest.mark.parametrize(("error", "code", "attribution"), [
    (0.10, "precharge_voltage_mismatch", Attribution.VEHICLE_FAULT),
    (0.03, None, None),
])
def test_precharge_plausibility(error: float, code: str | None, attribution: Attribution | None) -> None:
    link = make(stage=IdealPowerStage(precharge_voltage_error=error), soc=0.8995)
    link.run(max_s=60)
    end = ended(link)
    if code is None:
        assert end.reason.code == "bst:soc_reached"
    else:
        assert end.reason.code == code and end.reason.attribution is attribution
        assert link.bms.cst == CST(fault_stop=State2.ON, voltage_abnormal=State2.ON)


# ------------------------------------------------------------------------------------------ direct inputs


def _charging_session() -> tuple[ChargerSession, float]:
    link = make()
    link.run(until=lambda: link.session.phase is Phase.CHARGING)
    return link.session, link.now


def _bms(msg: object) -> Frame:
    return msg.frame()  # type: ignore[attr-defined]


def test_bsm_rules_untrustworthy_keeps_state_alarm_stops() -> None:
    s, now = _charging_session()
    base = dict(max_cell_number=1, max_temperature_c=30, max_temperature_probe=1, min_temperature_c=25,
                min_temperature_probe=1)
    ev = s.receive(_bms(BSM(**base, over_current=State2.UNTRUSTWORTHY, charging=Permission.FORBIDDEN)), now)
    assert [e.kind for e in ev if isinstance(e, VehicleAnomaly)] == ["bsm-untrustworthy"]
    assert s.phase is Phase.CHARGING  # the "forbidden" in an untrustworthy packet is ignored
    ev = s.receive(_bms(BSM(**base, insulation=State2.ON)), now + 0.01)
    (stopped,) = [e for e in ev if isinstance(e, SessionStopped)]
    assert stopped.reason.code == "bsm:insulation=on" and stopped.reason.attribution is Attribution.VEHICLE_FAULT
    assert stopped.reason.gbt_codes == ("BSM SPN3094 insulation=on",)
    assert any(isinstance(e, StopOutput) for e in ev) and s.phase is Phase.STOPPING


def test_bst_claiming_the_charger_stopped_is_a_protocol_error() -> None:
    s, now = _charging_session()
    ev = s.receive(_bms(BST(charger_stopped=State2.ON)), now)
    (stopped,) = [e for e in ev if isinstance(e, SessionStopped)]
    assert stopped.reason.attribution is Attribution.VEHICLE_PROTOCOL


def test_frames_the_vehicle_must_not_send_are_rejected_with_a_reason() -> None:
    s, now = _charging_session()
    ev = s.receive(Frame(0x1801F456 & 0x1FFF0000 | 0x56F4, CRM().encode()), now)  # CRM "from" the BMS
    assert isinstance(ev[0], FrameRejected) and "charger message" in ev[0].reason
    ev = s.receive(Frame(0x1C1156F4, bytes(8)), now)  # BCS as a single frame (non-compliant)
    assert "transport protocol" in ev[0].reason
    ev = s.receive(Frame(0x181056F4, bytes(3)), now)
    assert ev[0].reason == "BCL: 3 bytes, expected 5"
    assert s.receive(Frame(0x0070F4B5, b"\x00\x00\xb5"), now) == [] and s.frames_foreign == 1
    assert s.phase is Phase.CHARGING


def test_usage_errors_are_local_errors() -> None:
    s = ChargerSession(CONFIG)
    s.start(0.0)
    with pytest.raises(SessionUsageError, match="starts once"):
        s.start(1.0)
    with pytest.raises(SessionUsageError):
        s.set_current_limit(-1.0)
    with pytest.raises(SessionUsageError):
        s.set_current_limit(float("nan"))
    assert s.precharge_done(400.0, 1.0) == []  # a late hook result is ignored, not an error
    with pytest.raises(ValueError, match="max_current_a"):
        SessionConfig(max_current_a=600.0)  # GB/T 2015 cannot express more than 400 A
    with pytest.raises(ValueError, match="timeouts.bcl_s"):
        Timeouts(bcl_s=0)


def test_incompatible_vehicle_voltage() -> None:
    s = ChargerSession(SessionConfig(min_voltage_v=500.0, max_voltage_v=1000.0))
    link = InMemoryLink(s, BmsSimulator(Vehicle(car("LOWV", initial_soc=0.5))))
    link.run(max_s=30)
    end = ended(link)
    assert end.reason.attribution is Attribution.INCOMPATIBLE
    assert link.bms.cst == CST(fault_stop=State2.ON, energy_unavailable=State2.ON)


def test_cml_reports_the_charger_capability() -> None:
    link = make()
    link.run(until=lambda: link.session.phase is Phase.PRECHARGE)
    (_, cml), *_ = link.sent("charger", CML.PGN)
    assert CML.decode(cml.data) == CML(1000.0, 150.0, 250.0, 0.0)
    assert link.bms.record.charger_messages["CRM"] >= 2


def test_knobs_from_the_command_line_parse_or_name_the_knob_and_the_rule() -> None:
    knobs = FaultKnobs.parse(["silence_after_s=3", "silence_for_s=none", "tp_without_cts=yes", "brm_length=41",
                              "bst_reason=insulation_fault", "bro_withdraw_s=inf"])
    assert knobs == FaultKnobs(silence_after_s=3.0, tp_without_cts=True, brm_length=41,
                               bst_reason="insulation_fault", bro_withdraw_s=float("inf"))
    for bad, message in [("foo=1", "knob 'foo=1': expected NAME=VALUE"), ("brm_length=abc", "must be an integer"),
                         ("garbage_per_s=lots", "must be a number"), ("legacy_2011=maybe", "must be true or false"),
                         ("bst_reason=nope", "bst_reason: must be one of"), ("never_send=BCP,XYZ", "never_send: XYZ not among"),
                         ("pause_for_s=-1", "must be >= 0")]:
        with pytest.raises(ValueError, match=message):
            FaultKnobs.parse([bad])


# ------------------------------------------------------------------ the vehicle's own timeouts (BEM)

SLOW_CHARGER = dataclasses.replace(CONFIG, timeouts=Timeouts(brm_s=100, bcl_s=100, bcs_s=100, precharge_s=90))
BST_AT_1S = FaultKnobs(bst_reason="insulation_fault", bst_after_s=1.0)


@pytest.mark.parametrize(("drop", "knobs", "config", "field", "clock_from", "after"), [
    # the charger's own, shorter timers are lengthened where they would fire first (brm, bcl/bcs)
    (lambda f: f.pgn == CRM.PGN, None, SLOW_CHARGER, "crm_00_timeout", BmsPhase.HANDSHAKE, 30.0),
    (lambda f: f.pgn == CRM.PGN and f.data[0] == 0xAA, None, CONFIG, "crm_aa_timeout", BmsPhase.IDENTIFY, 5.0),
    (lambda f: f.pgn in (CTS.PGN, CML.PGN), None, CONFIG, "cts_cml_timeout", BmsPhase.CONFIG, 5.0),
    (lambda f: f.pgn == CRO.PGN, None, SLOW_CHARGER, "cro_timeout", BmsPhase.READY, 0.5 + 5.0),  # from BRO(0xAA)
    (lambda f: f.pgn == CRO.PGN and f.data[0] == 0xAA, None, SLOW_CHARGER, "cro_timeout", BmsPhase.READY, 0.5 + 60.0),
    (lambda f: f.pgn == CCS.PGN, None, CONFIG, "ccs_timeout", BmsPhase.CHARGING, 1.0),
    (lambda f: f.pgn == CST.PGN, BST_AT_1S, CONFIG, "cst_timeout", BmsPhase.STOPPING, 5.0),
    (lambda f: f.pgn == CSD.PGN, BST_AT_1S, dataclasses.replace(CONFIG, timeouts=Timeouts(statistics_s=20.0)),
     "csd_timeout", BmsPhase.STOPPING, 10.0),
], ids=["crm-30s", "crm-aa-5s", "cts-cml-5s", "cro-5s", "cro-aa-60s", "ccs-1s", "cst-5s", "csd-10s"])
def test_vehicle_times_out_on_a_lost_charger_message_and_the_charger_attributes_it(
        drop, knobs: FaultKnobs | None, config: SessionConfig, field: str, clock_from: BmsPhase,
        after: float) -> None:
    """Each charger message the vehicle waits for (reference §3.2) is lost on the way: the simulator sends
    BEM with that timeout after its own figure, and our session, before stopping, ends the attempt as a
    charger-side fault (retryable, the BEM's SPN in the audit codes); once stopping, the first reason (the
    vehicle's BST) stands. Output is never left on."""
    link = make(knobs, config=config)
    link.drop_to_bms = drop
    bems = lambda: [e for e in link.bms.record.log if e["event"] == "bem"]  # noqa: E731
    link.run(until=lambda: bool(bems()), max_s=200)
    assert [e["field"] for e in bems()] == [field]
    start = next(e["t"] for e in link.bms.record.log if e["event"] == "phase" and e["new"] == clock_from.value)
    assert bems()[0]["t"] - start == pytest.approx(after, abs=0.01)
    link.run(max_s=60)
    first = link.session.history[0]
    if clock_from is BmsPhase.STOPPING:
        assert first.code == "bst:insulation_fault" and first.attribution is Attribution.VEHICLE_FAULT
        # the audit still says whose link failed after the stop, once, and blames nothing on the vehicle
        later = link.session.history[1:]
        assert [r.code for r in later] == [f"bem:{field}"], [r.code for r in later]
        assert later[0].attribution is Attribution.CHARGER_FAULT and not later[0].retryable
        assert later[0].at == pytest.approx(bems()[0]["t"], abs=0.01)
        assert ended(link).retries == 0
    else:
        assert first.code == f"bem:{field}" and first.attribution is Attribution.CHARGER_FAULT and first.retryable
        assert first.at == pytest.approx(bems()[0]["t"], abs=0.01)
        assert any(c.startswith("BEM SPN") and c.endswith(field) for c in first.gbt_codes)
    assert_no_output_after_stops(link)
