"""The MQTT link against a real Mosquitto: every topic round trip (validated against its JSON Schema),
last will, clean shutdown, reconnect, replay marking after lost PUBACKs, MQTT 3.1.1, shared subscriptions."""

from __future__ import annotations

import json
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import paho.mqtt.client as mqtt
from drivers.mqtt.link import MqttLink
from drivers.mqtt.outbox import Outbox
from station import telemetry as payloads
from tests.conftest import REPO
from tests.mqtt.conftest import WAIT_S, Broker, Controller, Station, link_config
from tests.mqtt.setpoints import encode, setpoint

SCHEMAS = {name: json.loads((REPO / "docs/schemas/mqtt" / f"{name}.json").read_text())
           for name in ("status", "telemetry", "events", "dispatch-set", "dispatch-ack", "dispatch-report")}


def check(schema: str, doc: Any) -> Any:
    jsonschema.Draft202012Validator(SCHEMAS[schema]).validate(doc)
    return doc


def topic_schema(topic: str) -> str:
    leaf = topic.split("/", 2)[2]
    return {"status": "status", "telemetry": "telemetry", "events": "events", "dispatch/set": "dispatch-set",
            "dispatch/ack": "dispatch-ack", "dispatch/report": "dispatch-report"}[leaf]


def sample_telemetry(st: Station) -> dict[str, Any]:
    now = st.clock()
    return payloads.telemetry(
        now, grid_kw=180.5, limits=st.manager.limits_at(now), dispatch=st.manager.status(now),
        guns=[payloads.GunSample("A1", True, "charging", 150.0, 300.0, 500.0, 0.55),
              payloads.GunSample("B2", False, "fault")],
        health={"grid": "ok", "C1": "degraded", "B": "ok"}, bess_kw=25.0, bess_soc=0.61,
        outbox=st.link.outbox.stats())


def test_every_topic_round_trips_and_matches_its_schema(broker: Broker, stations, probes) -> None:  # noqa: ANN001
    st = stations(broker.port, "st-1")
    op = probes(broker.port, "operator").connect()
    op.subscribe("stations/st-1/#")
    st.link.start()
    assert st.link.wait_ready(WAIT_S)
    now = st.clock()
    # telemetry and events go through the outbox
    st.link.publish_telemetry(sample_telemetry(st))
    st.link.publish_event(payloads.session_started(now, gun="A1", session_id="s-1", vehicle_id="LVIN0001"))
    st.link.publish_event(payloads.fault(now, code="BMS_TIMEOUT", device="A1", attribution="vehicle",
                                         reaction="stop_gun", detail="BCL missing 1 s"))
    st.link.publish_event(payloads.session_stopped(now, gun="A1", session_id="s-1", energy_kwh=41.2,
                                                   duration_s=900.0, reason="vehicle_full"))
    # a setpoint (MQTT 5 request/response: the ack carries the correlation data back)
    props = Properties(PacketTypes.PUBLISH)
    props.CorrelationData = b"req-17"
    op.publish("stations/st-1/dispatch/set", encode(setpoint(1, now=now, target_kw=-20.0, valid_until=now + 30)),
               properties=props)
    op.publish("stations/st-1/dispatch/set", b"not json")
    assert op.wait_for(lambda ms: len([m for m in ms if m.topic.endswith("dispatch/ack")]) == 2)
    ok, bad = (m for m in op.on("stations/st-1/dispatch/ack"))
    assert ok.json()["accepted"] and ok.properties.CorrelationData == b"req-17"
    assert (bad.json()["accepted"], bad.json()["reason"]) == (False, "malformed_json")
    assert st.manager.limits_at(st.clock()).source == "lease:sp-1"
    # the lease ends (clock moved, no waiting): events and the evidence report follow
    st.manager.observe_grid_power(st.clock(), 40.0)
    st.clock.offset = 31.0
    st.cycle()
    assert op.wait_for(lambda ms: any(m.topic.endswith("dispatch/report") for m in ms))
    assert op.wait_for(lambda ms: any(b"dispatch_fallback" in m.payload for m in ms))
    # a consumer arriving late gets the retained birth
    late = probes(broker.port, "late-consumer").connect()
    late.subscribe("stations/+/status")
    assert late.wait_for(lambda ms: len(ms) == 1)
    birth = check("status", late.messages[0].json())
    assert late.messages[0].retain and birth["state"] == "online"
    assert (birth["firmware"], birth["config_sha256"], birth["protocol"]) == ("test-1.0", "0" * 64, "5")

    seen = set()
    for m in op.messages:
        if m.payload != b"not json":  # the operator's own garbage, echoed by the wildcard subscription
            check(topic_schema(m.topic), m.json())
            seen.add(m.topic.split("/", 2)[2])
    assert seen == {"status", "telemetry", "events", "dispatch/set", "dispatch/ack", "dispatch/report"}
    kinds = [m.json()["kind"] for m in op.on("stations/st-1/events")]
    assert kinds == ["session_started", "fault", "session_stopped", "dispatch_started", "dispatch_ended",
                     "dispatch_fallback"]
    stream = [m.json()["seq"] for m in op.messages if m.topic.split("/", 2)[2] in ("telemetry", "events",
                                                                                  "dispatch/report")]
    assert stream == list(range(1, len(stream) + 1))  # one ordered stream per station
    # QoS 1 everywhere: what the station publishes (the probe subscribed at QoS 1, so a QoS 0 publish
    # would arrive as QoS 0) and its dispatch subscription (the broker logs "<client> <qos> <filter>")
    assert {m.qos for m in op.messages} == {1}
    assert broker.wait_log("station-st-1 1 stations/st-1/dispatch/set", WAIT_S)


def test_last_will_on_crash_and_shutdown_status_on_clean_stop(broker: Broker, stations, probes,  # noqa: ANN001
                                                               tmp_path: Path) -> None:
    watcher = probes(broker.port, "watcher").connect()
    watcher.subscribe("stations/+/status")
    crashing = Controller(link_config(broker.port, tmp_path / "crash.sqlite").model_dump_json(), "st-crash")
    try:
        assert watcher.wait_for(lambda ms: any(m.json()["state"] == "online" for m in ms))
        crashing.sigkill()
        assert watcher.wait_for(lambda ms: any(m.json()["state"] == "offline" for m in ms))
    finally:
        crashing.stop()
    will = [m.json() for m in watcher.messages if m.json()["state"] == "offline"][0]
    assert (will["reason"], will["station"], will["ts"]) == ("connection_lost", "st-crash", None)
    check("status", will)

    st = stations(broker.port, "st-clean")
    st.link.start()
    assert st.link.wait_ready(WAIT_S)
    st.link.stop()
    assert watcher.wait_for(lambda ms: any(m.topic == "stations/st-clean/status" and m.json()["state"] == "offline"
                                           for m in ms))
    late = probes(broker.port, "late").connect()
    late.subscribe("stations/st-clean/status")
    assert late.wait_for(lambda ms: len(ms) == 1)
    assert late.messages[0].retain and late.messages[0].json()["reason"] == "shutdown"


def test_reconnect_restores_subscription_birth_and_flow(broker_factory, stations, probes) -> None:  # noqa: ANN001
    broker: Broker = broker_factory(users=("operator", "st-1")).start()
    st = stations(broker.port, "st-1", user="st-1")
    st.link.start()
    assert st.link.wait_ready(WAIT_S)
    broker.kill()
    st.link.publish_telemetry(sample_telemetry(st))  # produced while the broker is down
    broker.admit("operator")  # the station stays out until the operator listens again
    broker.start()
    op = probes(broker.port, "operator", user="operator").connect()
    op.subscribe("stations/st-1/#")
    broker.admit("operator", "st-1")
    assert st.link.wait_ready(WAIT_S), st.link.stats
    op.publish("stations/st-1/dispatch/set", encode(setpoint(3, now=st.clock())))
    assert op.wait_for(lambda ms: any(m.topic.endswith("dispatch/ack") for m in ms))
    assert op.on("stations/st-1/dispatch/ack")[0].json()["accepted"]  # the subscription is back
    assert st.link.stats.connects == 2 and st.link.stats.disconnects == 1
    assert op.wait_for(lambda ms: any(m.topic.endswith("telemetry") for m in ms))
    status = [m.json() for m in op.on("stations/st-1/status")]
    assert status[-1]["state"] == "online" and status[-1]["connection"] == 2
    assert op.on("stations/st-1/telemetry")[0].json()["historical"] is True


def test_rows_whose_puback_was_lost_are_resent_marked_replay(broker: Broker, probes, tmp_path: Path) -> None:  # noqa: ANN001
    """The broker freezes (SIGSTOP): rows sent meanwhile never get a PUBACK. The controller dies; the
    broker resumes and delivers what it had buffered; the next controller sends those rows again: the
    consumer sees each twice, the second copy marked replay."""
    sub = probes(broker.port, "ingest").connect()
    sub.subscribe("stations/st-sf/telemetry")
    cfg = link_config(broker.port, tmp_path / "outbox.sqlite").model_dump_json()
    a = Controller(cfg, "st-sf")
    b: Controller | None = None
    try:
        a.wait_committed(5)
        assert broker.proc is not None
        broker.proc.send_signal(signal.SIGSTOP)
        frozen_from = len(a.committed)
        a.wait_committed(frozen_from + 10)
        a.sigkill()
        broker.proc.send_signal(signal.SIGCONT)
        b = Controller(cfg, "st-sf")
        b.wait_committed(10)
        last = b.committed[9]
        assert sub.wait_for(lambda ms: any(json.loads(m.payload)["seq"] >= last for m in ms))
    finally:
        broker.proc.send_signal(signal.SIGCONT)
        a.stop()
        if b is not None:
            b.stop()
    copies: dict[int, list[dict[str, Any]]] = {}
    for m in sub.messages:
        msg = json.loads(m.payload)
        copies.setdefault(msg["seq"], []).append(msg)
    doubled = {s: c for s, c in copies.items() if len(c) > 1}
    assert doubled, "the frozen broker's buffered rows should arrive twice"
    for seq, c in doubled.items():
        assert [x["replay"] for x in c] == [False] + [True] * (len(c) - 1), seq
    assert sorted(copies) == list(range(1, max(copies) + 1))


def test_mqtt_311_link(broker: Broker, stations, probes) -> None:  # noqa: ANN001
    st = stations(broker.port, "st-old", protocol="3.1.1")
    op = probes(broker.port, "op311", protocol=mqtt.MQTTv311).connect()
    op.subscribe("stations/st-old/#")
    st.link.start()
    assert st.link.wait_ready(WAIT_S)
    st.link.publish_telemetry(sample_telemetry(st))
    op.publish("stations/st-old/dispatch/set", encode(setpoint(1, now=st.clock())))
    assert op.wait_for(lambda ms: {m.topic.rsplit("/", 1)[1] for m in ms} >= {"status", "telemetry", "ack"})
    assert op.on("stations/st-old/dispatch/ack")[0].json()["accepted"]
    check("telemetry", op.on("stations/st-old/telemetry")[0].json())


@pytest.mark.parametrize("protocol", [mqtt.MQTTv5, mqtt.MQTTv311])
def test_shared_subscription_splits_the_fleet_stream(broker: Broker, stations, probes, protocol: int) -> None:  # noqa: ANN001
    """Fleet ingestion scales out with $share: each message reaches exactly one worker of the group."""
    cv = threading.Condition()
    workers = [probes(broker.port, f"worker-{i}", protocol=protocol, cv=cv).connect() for i in range(2)]
    for w in workers:
        w.subscribe("$share/ingest/stations/+/telemetry")
    fleet = [stations(broker.port, f"st-{i}") for i in range(3)]
    for st in fleet:
        st.link.start()
        assert st.link.wait_ready(WAIT_S)
        for _ in range(20):
            st.link.publish_telemetry(sample_telemetry(st))
    assert workers[0].wait_for(lambda _: sum(len(w.messages) for w in workers) >= 60)
    got = [(m.topic, json.loads(m.payload)["seq"]) for w in workers for m in w.messages]
    assert len(got) == len(set(got)) == 60  # nobody got a message twice
    assert all(w.messages for w in workers)  # and the load was shared


def test_producer_queue_is_bounded_and_counts_drops(tmp_path: Path) -> None:
    cfg = link_config(1, tmp_path / "o.sqlite", outbox={"max_queued_messages": 2})
    link = MqttLink(cfg, "st-q", Outbox.from_config(cfg.outbox))  # not started: nothing drains the queue
    body = payloads.event(1.0, "fault_cleared")
    assert [link.publish_event(body) for _ in range(3)] == [True, True, False]
    assert link.stats.queue_full_drops == 1


def test_outbox_age_drop_is_published_as_an_event(broker_factory, stations, probes) -> None:  # noqa: ANN001
    """Telemetry older than max_age_s is dropped while offline, and the station says how much."""
    broker: Broker = broker_factory(users=("operator",)).start()  # the station is shut out for now
    committed: list[int] = []
    cv = threading.Condition()

    def on_committed(seqs: list[int]) -> None:
        with cv:
            committed.extend(seqs)
            cv.notify_all()

    st = stations(broker.port, "st-1", user="st-1", on_committed=on_committed, outbox={"max_age_s": 60.0})
    st.link.start()
    for _ in range(3):
        st.link.publish_telemetry(sample_telemetry(st))
    with cv:
        assert cv.wait_for(lambda: len(committed) == 3, WAIT_S)
    st.clock.offset = 120.0  # two minutes later, still offline: the pump's next age check drops them
    with cv:  # ... and stores an outbox_dropped event (seq 4)
        assert cv.wait_for(lambda: len(committed) == 4, WAIT_S)
    st.link.publish_telemetry(sample_telemetry(st))
    op = probes(broker.port, "operator", user="operator").connect()
    op.subscribe("stations/st-1/#")
    broker.admit("operator", "st-1")
    assert op.wait_for(lambda ms: any(m.topic.endswith("telemetry") for m in ms))
    dropped = [m.json() for m in op.on("stations/st-1/events")]
    assert [(d["kind"], d["data"]["reason"], d["data"]["count"], d["seq"]) for d in dropped] == \
        [("outbox_dropped", "age", 3, 4)]
    check("events", dropped[0])
    telemetry = op.on("stations/st-1/telemetry")[0].json()
    assert telemetry["seq"] == 5 and telemetry["historical"] is True


def test_outbox_write_failure_keeps_messages_in_memory_and_recovers(tmp_path: Path) -> None:
    """SQLite 'database or disk is full' (a page cap stands in for a full disk): nothing is lost, the
    failure is logged once, and the backlog is committed in order when space returns."""
    cfg = link_config(1, tmp_path / "full.sqlite")  # port 1: offline, the pump still stores
    committed: list[int] = []
    cv = threading.Condition()

    def on_committed(seqs: list[int]) -> None:
        with cv:
            committed.extend(seqs)
            cv.notify_all()

    link = MqttLink(cfg, "st-full", Outbox.from_config(cfg.outbox), on_committed=on_committed)
    failed = threading.Event()
    logged: list[str] = []

    class Watch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "outbox write failed" in record.getMessage():
                logged.append(record.getMessage())
                failed.set()

    watch = Watch()
    logging.getLogger("drivers.mqtt.link").addHandler(watch)
    db = link.outbox._db  # the cap is an SQLite pragma on the outbox's own connection
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count={pages}")
    try:
        link.start()
        for i in range(30):
            link.publish_event(payloads.event(float(i), "fault_cleared", n=i, pad="x" * 2000))
        assert failed.wait(WAIT_S)
        assert committed == [] and link.stats.outbox_failures >= 1
        with link.outbox._lock:  # the pump uses the same connection
            db.execute("PRAGMA max_page_count=1000000")
        with cv:
            assert cv.wait_for(lambda: len(committed) == 30, WAIT_S)
    finally:
        link.stop()
        logging.getLogger("drivers.mqtt.link").removeHandler(watch)
    with link.outbox.batch() as b:
        rows = b.claim(0, 100)
    assert [json.loads(r.body)["data"]["n"] for r in rows] == list(range(30))
    assert [r.seq for r in rows] == list(range(1, 31))  # failed transactions left no gap in the stream
    assert link.stats.outbox_error == ""
    assert logged and all("disk is full" in m for m in logged), logged  # the log names the cause
