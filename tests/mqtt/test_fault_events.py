"""Fault events: the diff of device faults into ``fault`` / ``fault_cleared`` (sans-IO), one attribution
vocabulary across register maps, events and GB/T stops, and the whole chain over real sockets: a fault bit
in our Modbus module simulator, read by our driver, turned into events and published through a real
Mosquitto, then cleared by the driver's ``fault_reset`` write."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from drivers.gbt27930.attribution import Attribution
from drivers.modbus.device import DeviceConfig, ModbusDevice
from drivers.modbus.health import HealthPolicy
from drivers.modbus.link import TcpEndpoint
from drivers.modbus.regmap import load_map
from hil.devices.cabinet import ModuleCabinetSim
from hil.plant.modules import ModuleFault
from station.attribution import PARTIES, party_of_stop
from station.faults import FaultTracker
from tests.conftest import ManualClock as Clock
from tests.mqtt.conftest import WAIT_S, Broker
from tests.mqtt.test_mqtt_link import SCHEMAS, check
from tests.mqtt.test_mqtt_payloads import on_wire

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class F:
    device: str
    code: str
    meaning: str = "something hot"
    party: str = "charger_hardware"
    reaction: str = "derate"
    since: float = 0.0


def kinds(events: list[dict]) -> list[tuple[str, str]]:
    return [(e["kind"], e["data"]["code"]) for e in events]


def test_a_fault_is_reported_once_when_it_appears_and_once_when_it_clears() -> None:
    t = FaultTracker()
    hot = F("dc-03", "over_temperature", since=100.0)
    (ev,) = t.update(100.0, "dc-03", [hot])
    assert kinds([ev]) == [("fault", "over_temperature")]
    assert ev["data"] == {"code": "over_temperature", "device": "dc-03", "attribution": "charger_hardware",
                          "reaction": "derate", "detail": "something hot"}
    assert t.update(101.0, "dc-03", [hot]) == []  # still active: nothing new
    fan = F("dc-03", "fan_failure", since=102.0)
    assert kinds(t.update(102.0, "dc-03", [hot, fan])) == [("fault", "fan_failure")]
    (gone,) = t.update(130.0, "dc-03", [fan])
    assert kinds([gone]) == [("fault_cleared", "over_temperature")]
    assert gone["data"]["detail"] == "something hot: cleared after 30.0 s" and gone["ts"] == 130.0
    assert [f.code for f in t.active()] == ["fan_failure"]
    for e in (ev, gone):
        check("events", on_wire(e))


def test_a_device_we_cannot_hear_keeps_its_faults() -> None:
    t = FaultTracker()
    t.update(0.0, "bess", [F("bess", "cell_over_voltage", party="bess", reaction="stop_station")])
    assert t.update(5.0, "bess", None) == []  # link lost: unknown is not "cleared"
    assert [f.code for f in t.active("bess")] == ["cell_over_voltage"]
    assert kinds(t.update(6.0, "bess", [])) == [("fault_cleared", "cell_over_voltage")]
    assert t.active() == []


def test_devices_are_tracked_separately() -> None:
    t = FaultTracker()
    t.update(0.0, "m1", [F("m1", "fan_failure")])
    assert kinds(t.update(0.0, "m2", [F("m2", "fan_failure")])) == [("fault", "fan_failure")]
    assert t.update(1.0, "m1", [F("m1", "fan_failure")]) == []
    assert [e["data"]["device"] for e in t.update(2.0, "m1", [])] == ["m1"]
    assert [f.device for f in t.active()] == ["m2"]


def test_a_fault_with_a_party_outside_the_vocabulary_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown party 'charger'"):
        FaultTracker().update(0.0, "m1", [F("m1", "x", party="charger")])


def test_one_attribution_vocabulary_everywhere() -> None:
    """The register maps, the events schema and GB/T stops name the same five parties."""
    (fault_rule,) = [r for r in SCHEMAS["events"]["allOf"]
                     if r["if"]["properties"]["kind"].get("enum") == ["fault", "fault_cleared"]]
    assert fault_rule["then"]["properties"]["data"]["properties"]["attribution"]["enum"] == list(PARTIES)
    schema = json.loads((ROOT / "docs" / "schemas" / "mqtt" / "events.json").read_text())
    assert "charger_hardware" in json.dumps(schema)
    for path in (ROOT / "config" / "devices").glob("*.yaml"):
        regmap = load_map(path)
        for p in regmap.points.values():
            for b in p.fault_bits().values():
                assert b.attributed_to in PARTIES, (path.name, p.name, b.name)
    # every GB/T stop cause maps onto a party, or says nobody failed
    assert {a: party_of_stop(a.value) for a in Attribution} == {
        Attribution.VEHICLE_PROTOCOL: "vehicle", Attribution.VEHICLE_TIMEOUT: "vehicle",
        Attribution.VEHICLE_FAULT: "vehicle", Attribution.INCOMPATIBLE: "vehicle",
        Attribution.CHARGER_FAULT: "charger_hardware", Attribution.VEHICLE_DONE: None, Attribution.OPERATOR: None}
    with pytest.raises(ValueError, match="unknown session stop attribution"):
        party_of_stop("charger")


async def test_a_module_fault_travels_from_the_modbus_simulator_to_the_operator_and_clears(
        broker: Broker, stations, probes) -> None:  # noqa: ANN001
    regmap = load_map(ROOT / "config" / "devices" / "dc-module-40kw.yaml")
    sim = ModuleCabinetSim(regmap, count=1, first_unit=4, load_voltage_v=600.0)
    sim.start(port=0)
    clock = Clock()
    dev = ModbusDevice(DeviceConfig("dc-03", TcpEndpoint("127.0.0.1", sim.port), device_id=4, timeout_s=0.2,
                                    health=HealthPolicy(degraded_after=1, lost_after_s=1.0)), regmap, clock=clock)
    st = stations(broker.port, "st-1")
    op = probes(broker.port, "operator").connect()
    op.subscribe("stations/st-1/events")
    st.link.start()
    assert st.link.wait_ready(WAIT_S)
    tracker = FaultTracker()

    async def cycle() -> None:
        clock.t += 0.1
        assert (await dev.poll("fast")).error is None
        for e in tracker.update(clock.t, dev.name, dev.snapshot().faults):
            st.link.publish_event(e)

    try:
        await cycle()  # healthy: no event
        sim.inject_fault(4, ModuleFault.FAN_FAILURE)
        await cycle()
        await cycle()  # still set: no second event
        await dev.write("fault_reset", 1)
        await cycle()
        assert op.wait_for(lambda ms: len(ms) >= 2, WAIT_S)
        got = [check("events", m.json()) for m in op.on("stations/st-1/events")]
        assert [(e["kind"], e["data"]["code"], e["data"]["attribution"], e["data"]["reaction"]) for e in got] == [
            ("fault", "fan_failure", "charger_hardware", "derate"),
            ("fault_cleared", "fan_failure", "charger_hardware", "derate")]
        assert got[1]["data"]["detail"].endswith("cleared after 0.2 s")
        assert tracker.active() == []
    finally:
        await dev.close()
        sim.stop()

