"""Every rejection reason of dispatch/set through a real Mosquitto: the operator publishes, the station's
link hands the bytes to its dispatch manager, the ack with exactly that reason (and the setpoint's id and
seq where they could be read) comes back on dispatch/ack, and the active lease is the same afterwards.

The cases are the sans-IO ones of test_mqtt_dispatch_validation.py, replayed over the broker with the
station's wall clock frozen at their instant; a final check fails if a reason exists that no broker
test sends."""

from __future__ import annotations

import json
from typing import Any

from drivers.mqtt.signing import JwsVerifier, sign
from station.dispatch import Reason
from tests.mqtt.conftest import WAIT_S, Broker
from tests.mqtt.setpoints import NOW, encode, setpoint
from tests.mqtt.test_mqtt_dispatch_validation import BAD_MESSAGES, BAD_SETPOINTS
from tests.mqtt.test_mqtt_flood import EXPECTED as FLOOD_REASONS

HMAC_KEY = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
SET, ACK = "stations/{}/dispatch/set", "stations/{}/dispatch/ack"

SCHEDULES: list[tuple[str, list[dict[str, Any]], list[Reason]]] = [
    ("schedule with a bad element", [setpoint(11, valid_from=NOW + 60, valid_until=NOW + 120),
                                     setpoint(12, valid_from=NOW + 120, valid_until=NOW + 180, import_limit_kw=-5)],
     [Reason.SCHEDULE_REJECTED, Reason.NEGATIVE_LIMIT]),
    ("overlapping schedule", [setpoint(11, valid_from=NOW + 60, valid_until=NOW + 120),
                              setpoint(12, valid_from=NOW + 100, valid_until=NOW + 180)],
     [Reason.SCHEDULE_REJECTED, Reason.SCHEDULE_OVERLAP]),
]


class Operator:
    """Publishes one message at a time and returns the acks it caused (in order)."""

    def __init__(self, probe: Any, station_id: str) -> None:
        self.probe, self.station_id = probe, station_id
        probe.subscribe(ACK.format(station_id))

    def send(self, payload: bytes, acks: int = 1) -> list[dict[str, Any]]:
        seen = len(self.probe.on(ACK.format(self.station_id)))
        self.probe.publish(SET.format(self.station_id), payload)
        assert self.probe.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("/dispatch/ack")])
                                   >= seen + acks, WAIT_S), payload[:80]
        return [m.json() for m in self.probe.on(ACK.format(self.station_id))[seen:]]


def test_every_rejection_reason_comes_back_over_the_broker_and_the_lease_stands(
        broker: Broker, stations, probes) -> None:  # noqa: ANN001
    st = stations(broker.port, "st-1")
    st.clock.frozen_at = NOW
    st.link.start()
    assert st.link.wait_ready(WAIT_S)
    op = Operator(probes(broker.port, "operator").connect(), "st-1")
    (base,) = op.send(encode(setpoint(10, id="base", valid_until=NOW + 600)))
    assert base["accepted"]
    before = (st.manager.limits_at(NOW + 1), st.manager.status(NOW + 1))
    sent: set[Reason] = set()

    for case, payload, reason in BAD_MESSAGES:
        (ack,) = op.send(payload)
        assert (ack["accepted"], ack["reason"], ack.get("id"), ack.get("seq")) == (False, reason.value, None, None), case
        sent.add(reason)
    for case, sp, reason in BAD_SETPOINTS:
        (ack,) = op.send(encode(sp))
        assert (ack["accepted"], ack["reason"]) == (False, reason.value), (case, ack)
        if reason not in (Reason.WRONG_TYPE, Reason.MISSING_FIELD, Reason.INVALID_VALUE):
            assert (ack["id"], ack["seq"]) == (sp["id"], sp["seq"]), case
        sent.add(reason)
    for case, schedule, reasons in SCHEDULES:
        acks = op.send(encode(schedule), acks=len(schedule))
        assert [(a["accepted"], a["reason"]) for a in acks] == [(False, r.value) for r in reasons], case
        sent.update(reasons)
    assert (st.manager.limits_at(NOW + 1), st.manager.status(NOW + 1)) == before  # the lease stands

    # pending setpoints are bounded: fill the queue with future schedules until the bound says no
    limit = st.manager.settings.max_pending_setpoints
    per = st.manager.settings.max_schedule_length
    n = 100
    refused: list[dict[str, Any]] = []
    for k in range(limit // per + 1):
        schedule = [setpoint(n + i, valid_from=NOW + 600 + 60 * (n + i), valid_until=NOW + 660 + 60 * (n + i))
                    for i in range(per)]
        n += per
        refused = [a for a in op.send(encode(schedule), acks=per) if not a["accepted"]]
        if refused:
            break
    assert refused and {a["reason"] for a in refused} <= {Reason.TOO_MANY_PENDING.value,
                                                          Reason.SCHEDULE_REJECTED.value}
    assert any(a["reason"] == Reason.TOO_MANY_PENDING.value for a in refused)
    sent.add(Reason.TOO_MANY_PENDING)
    assert st.manager.limits_at(NOW + 1).source == before[0].source  # still the same active lease

    # signed dispatch: a station that requires signatures
    signed = stations(broker.port, "st-2", verifier=JwsVerifier(HMAC_KEY))
    signed.clock.frozen_at = NOW
    signed.link.start()
    assert signed.link.wait_ready(WAIT_S)
    op2 = Operator(probes(broker.port, "operator-2").connect(), "st-2")
    (ok,) = op2.send(sign(encode(setpoint(20)), HMAC_KEY))
    assert ok["accepted"]
    (missing,) = op2.send(encode(setpoint(21)))
    envelope = json.loads(sign(encode(setpoint(22)), HMAC_KEY))
    envelope["signature"] = envelope["signature"][:-4] + ("AAAA" if not envelope["signature"].endswith("AAAA") else "BBBB")
    (invalid,) = op2.send(json.dumps(envelope).encode())
    (replayed,) = op2.send(sign(encode(setpoint(20)), HMAC_KEY))  # the first message again
    assert (missing["reason"], invalid["reason"]) == (Reason.SIGNATURE_MISSING.value, Reason.SIGNATURE_INVALID.value)
    assert not replayed["accepted"] and replayed["reason"] == Reason.SEQ_REPLAYED.value
    sent.update({Reason.SIGNATURE_MISSING, Reason.SIGNATURE_INVALID})
    assert signed.manager.limits_at(NOW + 1).source == "lease:sp-20"

    assert sent | set(FLOOD_REASONS) | {Reason.OK} == set(Reason), set(Reason) - sent


def test_fault_cleared_and_fallback_reached_events_arrive_over_the_broker(broker: Broker, stations,
                                                                          probes) -> None:  # noqa: ANN001
    """The two events no other broker test carries: a fault's clearing after the fault (through the
    outbox, in order, schema-valid), and the end of the fallback ramp after a lease expired without
    renewal (the clock is moved, nothing waits for it)."""
    from station import telemetry as payloads
    from tests.mqtt.test_mqtt_link import check

    st = stations(broker.port, "st-1")
    st.clock.frozen_at = NOW
    op = probes(broker.port, "operator").connect()
    op.subscribe("stations/st-1/events")
    st.link.start()
    assert st.link.wait_ready(WAIT_S)
    st.link.publish_event(payloads.fault(NOW, code="over_temperature", device="dc-03",
                                         attribution="charger_hardware", reaction="derate"))
    st.link.publish_event(payloads.fault(NOW + 5, code="over_temperature", device="dc-03",
                                         attribution="charger_hardware", reaction="derate", cleared=True))
    assert op.wait_for(lambda ms: len(ms) >= 2)
    first, cleared = (check("events", m.json()) for m in op.on("stations/st-1/events")[:2])
    assert (first["kind"], cleared["kind"]) == ("fault", "fault_cleared")
    assert (cleared["data"]["code"], cleared["data"]["device"], cleared["data"]["attribution"]) == (
        "over_temperature", "dc-03", "charger_hardware")

    (ack,) = Operator(op, "st-1").send(encode(setpoint(1, import_limit_kw=100.0, export_limit_kw=0.0,
                                                       valid_until=NOW + 30)))
    assert ack["accepted"]
    st.cycle()
    s = st.manager.settings
    ramp_s = max(abs(s.fallback_import_kw - 100.0), abs(s.fallback_export_kw - 0.0)) / s.fallback_ramp_kw_per_s
    st.clock.frozen_at = NOW + 31  # expired, not renewed: the fallback ramp starts
    st.cycle()
    st.clock.frozen_at = NOW + 31 + ramp_s + 1  # ramp over
    st.cycle()
    assert op.wait_for(lambda ms: any(b"dispatch_fallback_reached" in m.payload for m in ms))
    events = [check("events", m.json()) for m in op.on("stations/st-1/events")]
    kinds = [e["kind"] for e in events]
    assert kinds.index("dispatch_fallback") < kinds.index("dispatch_fallback_reached")
    reached = events[kinds.index("dispatch_fallback_reached")]
    assert (reached["data"]["import_limit_kw"], reached["data"]["export_limit_kw"]) == (
        s.fallback_import_kw, s.fallback_export_kw)
    assert st.manager.limits_at(st.clock()).import_limit_kw == s.fallback_import_kw
