"""TLS with client certificates and the shipped ACL (config/mosquitto/), on the shipped broker config.

Certificates are generated per test run (tests/mqtt/pki.py). Refusals are checked at the broker: a
message that must not arrive is followed by one that must, on the same connection; when the second has
arrived, the first would have arrived before it (the broker forwards in order), so "never" needs no sleep.
"""

from __future__ import annotations

import json
import shutil
import ssl
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from drivers.mqtt.link import MqttLink
from drivers.mqtt.outbox import Outbox
from station import telemetry as payloads
from station.dispatch import DispatchManager
from tests.conftest import REPO
from tests.mqtt.conftest import WAIT_S, Broker, Probe, link_config
from tests.mqtt.pki import Authority, Issued
from tests.mqtt.setpoints import DEMO, encode, setpoint

OPERATOR = "operator.grid"


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Any]:
    ca = Authority(tmp_path / "certs", "ca")
    rogue = Authority(tmp_path / "rogue", "rogue-ca")
    return {"ca": ca, "broker": ca.issue("broker", server=True), "st-1": ca.issue("st-1"),
            "st-2": ca.issue("st-2"), OPERATOR: ca.issue(OPERATOR), "rogue st-1": rogue.issue("st-1")}


@pytest.fixture
def tls_broker(tmp_path: Path, pki: dict[str, Any], broker_factory) -> Broker:  # noqa: ANN001
    """config/mosquitto/mosquitto.conf and acl as shipped; only paths and the port are rewritten."""
    etc = tmp_path / "etc"
    (etc / "certs").mkdir(parents=True)
    shutil.copy(pki["ca"].ca_file, etc / "certs" / "ca.crt")
    shutil.copy(pki["broker"].cert, etc / "certs" / "broker.crt")
    shutil.copy(pki["broker"].key, etc / "certs" / "broker.key")
    shutil.copy(REPO / "config" / "mosquitto" / "acl", etc / "acl")
    (tmp_path / "persist").mkdir()
    broker: Broker = broker_factory(full_config=True)
    conf = (REPO / "config" / "mosquitto" / "mosquitto.conf").read_text()
    conf = conf.replace("/etc/mosquitto/", f"{etc}/").replace("/var/lib/mosquitto/", f"{tmp_path}/persist/")
    assert "listener 8883\n" in conf
    broker.extra = conf.replace("listener 8883\n", f"listener {broker.port} 127.0.0.1\n")
    return broker.start()


def context(ca: Path, client: Issued | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if client is not None:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


def raw_attempt(port: int, ctx: ssl.SSLContext) -> str:
    """Connect once with paho and report how it ended: 'accepted' or the refusal."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="attempt", protocol=mqtt.MQTTv5)
    client.tls_set_context(ctx)
    result: list[str] = []
    client.on_connect = lambda c, u, f, reason, p: result.append("accepted" if not reason.is_failure else str(reason))
    try:
        client.connect("127.0.0.1", port, 30)
        for _ in range(200):  # each loop() waits <= 0.1 s for the broker's answer
            if result or client.loop(0.1) != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
    except (ssl.SSLError, OSError) as exc:
        return f"refused: {exc}"
    finally:
        client.disconnect()
    return result[0] if result else "refused: connection closed"


def probe(probes, port: int, ca: Path, who: Issued, name: str) -> Probe:  # noqa: ANN001
    return probes(port, name, tls=context(ca, who)).connect()


def station_link(broker: Broker, pki: dict[str, Any], tmp_path: Path, who: str = "st-1",
                 cert: Issued | None = None) -> tuple[MqttLink, DispatchManager]:
    cert = cert if cert is not None else pki[who]
    tls = {"ca_file": str(pki["ca"].ca_file), "cert_file": str(cert.cert), "key_file": str(cert.key)}
    cfg = link_config(broker.port, tmp_path / f"{who}.sqlite", tls=tls)
    manager = DispatchManager.from_config(DEMO)
    link = MqttLink(cfg, who, Outbox.from_config(cfg.outbox),
                    on_dispatch=lambda p: [a.to_payload() for a in manager.submit(p, time.time())])
    return link, manager


def test_station_with_its_certificate_works_end_to_end(tls_broker: Broker, pki, probes, tmp_path: Path) -> None:  # noqa: ANN001
    op = probe(probes, tls_broker.port, pki["ca"].ca_file, pki[OPERATOR], "operator")
    op.subscribe("stations/#")
    link, manager = station_link(tls_broker, pki, tmp_path)
    link.start()
    try:
        assert link.wait_ready(WAIT_S), link.stats.last_error
        link.publish_event(payloads.event(1.0, "fault_cleared"))
        op.publish("stations/st-1/dispatch/set", encode(setpoint(1, now=time.time())))
        assert op.wait_for(lambda ms: {m.topic for m in ms} >= {"stations/st-1/status", "stations/st-1/events",
                                                                  "stations/st-1/dispatch/ack"})
        assert op.on("stations/st-1/dispatch/ack")[0].json()["accepted"]
        assert manager.limits_at(time.time()).source == "lease:sp-1"
    finally:
        link.stop()


def test_no_certificate_or_foreign_ca_is_refused(tls_broker: Broker, pki, tmp_path: Path) -> None:  # noqa: ANN001
    ca = pki["ca"].ca_file
    assert raw_attempt(tls_broker.port, context(ca, pki["st-1"])) == "accepted"
    assert raw_attempt(tls_broker.port, context(ca, None)).startswith("refused")
    assert raw_attempt(tls_broker.port, context(ca, pki["rogue st-1"])).startswith("refused")
    # and the station's link, configured without a certificate, never gets in
    cfg = link_config(tls_broker.port, tmp_path / "nocert.sqlite", tls={"ca_file": str(ca)})
    link = MqttLink(cfg, "st-1", Outbox.from_config(cfg.outbox))
    link.start()
    try:
        assert not link.wait_ready(3.0)
        assert link.stats.connect_failures >= 1 and link.stats.connects == 0, link.stats
        print(link.stats.last_error)
    finally:
        link.stop()


def test_station_cannot_write_other_topics_or_dispatch(tls_broker: Broker, pki, probes) -> None:  # noqa: ANN001
    ca = pki["ca"].ca_file
    op = probe(probes, tls_broker.port, ca, pki[OPERATOR], "operator")
    op.subscribe("stations/#")
    rogue = probe(probes, tls_broker.port, ca, pki["st-1"], "st-1-rogue")
    forbidden = ["stations/st-2/telemetry", "stations/st-2/status", "stations/st-1/dispatch/set",
                 "stations/st-2/dispatch/set", "stations/st-1/other", "elsewhere/x"]
    codes = {t: rogue.publish(t, b'{"forged":true}') for t in forbidden}
    assert all(c.value == 0x87 for c in codes.values()), codes  # MQTT 5: PUBACK "Not authorized"
    assert rogue.publish("stations/st-1/telemetry", b'{"barrier":true}').value == 0
    assert op.wait_for(lambda ms: any(m.topic == "stations/st-1/telemetry" for m in ms))
    assert [m.topic for m in op.messages] == ["stations/st-1/telemetry"]  # nothing forged got through


def test_station_reads_only_its_own_dispatch(tls_broker: Broker, pki, probes) -> None:  # noqa: ANN001
    ca = pki["ca"].ca_file
    op = probe(probes, tls_broker.port, ca, pki[OPERATOR], "operator")
    st1 = probe(probes, tls_broker.port, ca, pki["st-1"], "st-1-spy")
    granted = st1.subscribe("stations/+/dispatch/set")
    assert not granted[0].is_failure  # a wildcard is granted, but only what st-1 may read is delivered
    st1.subscribe("stations/st-2/telemetry")
    op.publish("stations/st-2/dispatch/set", b'{"for":"st-2"}')
    op.publish("stations/st-1/dispatch/set", b'{"for":"st-1"}')
    assert st1.wait_for(lambda ms: len(ms) >= 1)
    assert [json.loads(m.payload)["for"] for m in st1.messages] == ["st-1"]


def test_only_the_operator_identity_may_set_dispatch(tls_broker: Broker, pki, probes) -> None:  # noqa: ANN001
    ca = pki["ca"].ca_file
    st1 = probe(probes, tls_broker.port, ca, pki["st-1"], "st-1-listener")
    st1.subscribe("stations/st-1/dispatch/set")
    st2 = probe(probes, tls_broker.port, ca, pki["st-2"], "st-2-rogue")
    assert st2.publish("stations/st-1/dispatch/set", b'{"from":"st-2"}').value == 0x87
    op = probe(probes, tls_broker.port, ca, pki[OPERATOR], "operator")
    assert op.publish("stations/st-1/dispatch/set", b'{"from":"operator"}').value == 0
    assert st1.wait_for(lambda ms: len(ms) >= 1)
    assert [json.loads(m.payload)["from"] for m in st1.messages] == ["operator"]
