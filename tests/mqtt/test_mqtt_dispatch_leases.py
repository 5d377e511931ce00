"""Leases on an injected wall clock: activation on time, expiry, the fallback ramp, schedules, renewals.

Demo station: site import cap 400 kW, grid.export_limit_kw 100 kW, grid ramp 100 kW/s; fallback =
400 kW import / 0 kW export at 100 kW/s (dispatch.fallback_* defaults).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.config import StationConfig
from station.dispatch import DispatchManager, GridLimits, Reason
from tests.mqtt.setpoints import DEMO, NOW, encode, setpoint


def kinds(m: DispatchManager) -> list[tuple[str, float]]:
    return [(e.kind, e.at) for e in m.drain_events()]


def test_boot_is_fallback_at_the_site_caps(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    assert m.limits_at(NOW) == GridLimits(400.0, 0.0, None, 100.0, "fallback", None)


def test_lease_expiry_ramps_to_fallback_and_says_so(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    ack = m.submit(encode(setpoint(1, import_limit_kw=150.0, export_limit_kw=80.0, valid_until=NOW + 10)), NOW)[0]
    assert ack.accepted and ack.applied_at == NOW and ack.reason is Reason.OK
    lim = m.limits_at(NOW + 9.99)
    assert (lim.import_limit_kw, lim.export_limit_kw, lim.source, lim.valid_until) == (150.0, 80.0, "lease:sp-1", NOW + 10)
    # expiry at NOW+10: import climbs 150 -> 400, export falls 80 -> 0, both at 100 kW/s
    assert m.limits_at(NOW + 10).import_limit_kw == 150.0
    half = m.limits_at(NOW + 10.5)
    assert (half.import_limit_kw, half.export_limit_kw, half.source, half.target_kw) == (200.0, 30.0, "fallback", None)
    assert m.limits_at(NOW + 11).export_limit_kw == 0.0
    assert m.limits_at(NOW + 12.4).import_limit_kw == pytest.approx(390.0, abs=1e-4)  # epoch floats: ~0.2 us
    assert m.limits_at(NOW + 12.5).import_limit_kw == 400.0
    assert kinds(m) == [("dispatch_started", NOW), ("dispatch_ended", NOW + 10), ("dispatch_fallback", NOW + 10),
                        ("dispatch_fallback_reached", NOW + 12.5)]


def test_target_becomes_caps_that_relax_at_the_fallback_ramp(station_cfg: StationConfig) -> None:
    """Exporting 50 kW on a target: at expiry the cycle gets import 0 / export 50 caps, not a step."""
    m = DispatchManager.from_config(station_cfg)
    m.submit(encode(setpoint(1, import_limit_kw=300.0, export_limit_kw=100.0, target_kw=-50.0,
                             valid_until=NOW + 5)), NOW)
    assert m.limits_at(NOW + 1).target_kw == -50.0
    at_expiry = m.limits_at(NOW + 5)
    assert (at_expiry.import_limit_kw, at_expiry.export_limit_kw, at_expiry.target_kw) == (0.0, 50.0, None)
    later = m.limits_at(NOW + 5.25)
    assert (later.import_limit_kw, later.export_limit_kw) == (25.0, 25.0)
    fallback = [e for e in m.drain_events() if e.kind == "dispatch_fallback"][0]
    assert fallback.data["from_import_limit_kw"] == 0.0 and fallback.data["from_export_limit_kw"] == 50.0


def test_configured_fallback_and_ramp(station_cfg: StationConfig) -> None:
    cfg = station_cfg.model_copy(update={"dispatch": station_cfg.dispatch.model_copy(
        update={"fallback_import_limit_kw": 250.0, "fallback_export_limit_kw": 20.0, "fallback_ramp_kw_per_s": 10.0})})
    m = DispatchManager.from_config(cfg)
    assert m.limits_at(NOW) == GridLimits(250.0, 20.0, None, 10.0, "fallback", None)
    m.submit(encode(setpoint(1, import_limit_kw=200.0, export_limit_kw=0.0, valid_until=NOW + 1)), NOW)
    lim = m.limits_at(NOW + 3)  # 2 s after expiry at 10 kW/s
    assert (lim.import_limit_kw, lim.export_limit_kw) == (220.0, 20.0)


def test_future_setpoint_takes_effect_on_time(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    ack = m.submit(encode(setpoint(1, valid_from=NOW + 30, valid_until=NOW + 90)), NOW)[0]
    assert ack.accepted and ack.applied_at == NOW + 30 and "scheduled" in ack.detail
    assert m.limits_at(NOW + 29.999).source == "fallback"
    assert m.status(NOW + 1)["scheduled"] == [{"id": "sp-1", "seq": 1, "from": NOW + 30, "until": NOW + 90}]
    assert m.limits_at(NOW + 30).source == "lease:sp-1"
    assert kinds(m) == [("dispatch_started", NOW + 30)]


def test_schedule_in_one_message_runs_back_to_back_then_falls_back(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    schedule = [setpoint(i + 1, import_limit_kw=100.0 + 50 * i, valid_from=NOW + 60 * i,
                         valid_until=NOW + 60 * (i + 1)) for i in range(3)]
    schedule[2]["valid_from"] += 30  # a 30 s gap before the last slot
    schedule[2]["valid_until"] += 30
    acks = m.submit(encode(schedule), NOW)
    assert [a.accepted for a in acks] == [True, True, True]
    assert [m.limits_at(NOW + t).import_limit_kw for t in (0, 59.9, 60, 119.9)] == [100.0, 100.0, 150.0, 150.0]
    assert m.limits_at(NOW + 120.5).source == "fallback"  # the gap: ramping from 150 toward 400
    assert m.limits_at(NOW + 120.5).import_limit_kw == 200.0
    assert m.limits_at(NOW + 150).import_limit_kw == 200.0  # lease 3 at once, no ramp into a lease
    assert m.limits_at(NOW + 210).source == "fallback"
    events = kinds(m)
    assert ("dispatch_fallback", NOW + 120) in events and ("dispatch_fallback", NOW + 210) in events
    assert [k for k, _ in events].count("dispatch_started") == 3
    assert len(m.drain_reports()) == 3


def test_renewal_supersedes_and_overlays_from_its_valid_from(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    m.submit(encode(setpoint(1, import_limit_kw=100.0, valid_until=NOW + 60)), NOW)
    # renewal sent 10 s early, starting before the old one ends
    ack = m.submit(encode(setpoint(2, import_limit_kw=120.0, valid_from=NOW + 50, valid_until=NOW + 120,
                                   issued_at=NOW + 40)), NOW + 40)[0]
    assert ack.accepted and ack.supersedes == ("sp-1",)
    assert m.limits_at(NOW + 49.9).import_limit_kw == 100.0
    assert m.limits_at(NOW + 50).import_limit_kw == 120.0  # no fallback between the two
    ended = [e for e in m.drain_events() if e.kind == "dispatch_ended"]
    assert [(e.data["id"], e.data["reason"], e.at) for e in ended] == [("sp-1", "superseded", NOW + 50)]
    report = m.drain_reports()[0]
    assert (report["id"], report["end_reason"], report["ended_at"]) == ("sp-1", "superseded", NOW + 50)


def test_newer_immediate_setpoint_replaces_active_one_at_once(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    m.submit(encode(setpoint(1, import_limit_kw=100.0, valid_until=NOW + 600)), NOW)
    m.submit(encode(setpoint(2, import_limit_kw=50.0, valid_until=NOW + 30, issued_at=NOW + 10)), NOW + 10)
    assert m.limits_at(NOW + 10).import_limit_kw == 50.0
    # the older lease's tail after the newer window is gone: fallback after NOW+30, not back to 100
    assert m.limits_at(NOW + 31).source == "fallback"


def test_pending_later_setpoint_inside_a_newer_window_is_removed(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    m.submit(encode(setpoint(1, valid_from=NOW + 100, valid_until=NOW + 200)), NOW)
    ack = m.submit(encode(setpoint(2, valid_from=NOW + 50, valid_until=NOW + 150)), NOW)[0]
    assert ack.supersedes == ("sp-1",)
    assert m.limits_at(NOW + 160).source == "fallback"


def test_limits_are_clamped_to_site_caps_and_ramp(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    ack = m.submit(encode(setpoint(1, import_limit_kw=5000.0, export_limit_kw=900.0, ramp_kw_per_s=1000.0)), NOW)[0]
    assert ack.accepted and "clamped" in ack.detail
    lim = m.limits_at(NOW + 1)
    assert (lim.import_limit_kw, lim.export_limit_kw, lim.ramp_kw_per_s) == (400.0, 100.0, 100.0)


def test_state_survives_a_restart_and_keeps_replay_protection(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    msg = encode(setpoint(7, import_limit_kw=111.0, valid_until=NOW + 300))
    m.submit(msg, NOW)
    m.submit(encode(setpoint(8, valid_from=NOW + 300, valid_until=NOW + 400)), NOW)
    state = json.loads(json.dumps(m.export_state()))  # it is JSON
    again = DispatchManager.from_config(station_cfg)
    again.restore_state(state, NOW + 20)
    assert again.limits_at(NOW + 20).import_limit_kw == 111.0
    assert again.limits_at(NOW + 300).source == "lease:sp-8"
    assert again.submit(msg, NOW + 21)[0].reason is Reason.SEQ_REPLAYED


def test_slightly_older_readings_from_another_thread_change_nothing(station_cfg: StationConfig) -> None:
    """The MQTT thread accepts a setpoint at t; the cycle, which read the clock just before, asks at t-1 ms:
    the lease (valid from reception) must not flicker off and on."""
    m = DispatchManager.from_config(station_cfg)
    m.submit(encode(setpoint(1)), NOW)
    assert m.limits_at(NOW - 0.001).source == "lease:sp-1"
    assert m.limits_at(NOW - 5).source == "lease:sp-1"
    assert kinds(m) == [("dispatch_started", NOW)]


def test_large_backward_clock_step_drops_leases_and_falls_back(station_cfg: StationConfig) -> None:
    m = DispatchManager.from_config(station_cfg)
    m.submit(encode(setpoint(1, import_limit_kw=100.0, valid_until=NOW + 600)), NOW)
    m.submit(encode(setpoint(2, valid_from=NOW + 600, valid_until=NOW + 900)), NOW)
    assert m.limits_at(NOW + 100).source == "lease:sp-1"
    lim = m.limits_at(NOW + 40)  # stepped back 60 s > max_clock_skew_s (30 s)
    assert (lim.source, lim.import_limit_kw) == ("fallback", 100.0)  # ramping up from the lease's cap
    assert m.limits_at(NOW + 41).import_limit_kw == 200.0
    ended = [(e.data["id"], e.data["reason"]) for e in m.drain_events() if e.kind == "dispatch_ended"]
    assert ended == [("sp-1", "clock_stepped_back"), ("sp-2", "clock_stepped_back")]
    assert m.limits_at(NOW + 700).source == "fallback"  # sp-2 is gone: the operator re-sends
    assert m.drain_reports()[0]["end_reason"] == "clock_stepped_back"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(
    st.floats(0, 50), st.floats(1, 120), st.floats(0, 1000), st.floats(0, 300),
    st.one_of(st.none(), st.floats(-150, 450)), st.one_of(st.none(), st.floats(1, 1000)), st.floats(0, 30)),
    max_size=12))
def test_limits_never_exceed_the_site_caps(ops: list[tuple[float, ...]]) -> None:
    """Whatever the operator sends and whenever the cycle asks, import <= site cap, export <= export cap,
    and a target lies inside the limits handed out."""
    m = DispatchManager.from_config(DEMO)
    t = NOW
    for seq, (start, length, imp, exp, target, ramp, dt) in enumerate(ops, 1):
        sp = setpoint(seq, now=t, valid_from=t + start, valid_until=t + start + length, import_limit_kw=imp,
                      export_limit_kw=exp, target_kw=target, ramp_kw_per_s=ramp)
        m.submit(encode(sp), t)
        for probe in (t, t + dt / 2, t + dt):
            lim = m.limits_at(probe)
            assert 0 <= lim.import_limit_kw <= DEMO.import_cap_kw
            assert 0 <= lim.export_limit_kw <= DEMO.grid.export_limit_kw
            assert lim.ramp_kw_per_s <= DEMO.grid.ramp_limit_kw_per_s
            if lim.target_kw is not None:
                assert -lim.export_limit_kw <= lim.target_kw <= lim.import_limit_kw
        t += dt
