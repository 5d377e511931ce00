"""Opening a gun's link from the station file: one python-can bus per gun, clear errors when it cannot be."""

from __future__ import annotations

from pathlib import Path

import can
import pytest

from drivers.can.bus import open_bus
from drivers.can.charger import ChargerLink, session_config_for
from station.config import CanLink, Gun, load_config


def test_each_gun_of_the_example_station_has_its_own_bus_and_a_gb_t_capability(repo: Path) -> None:
    cfg = load_config(repo / "config" / "megawatt-hub.yaml")
    links = [g.can for g in cfg.guns() if g.can is not None]
    assert len(links) == len(cfg.guns()) and len({link.bus_key() for link in links}) == len(links)
    truck = next(g for g in cfg.guns() if g.max_current_a > 400)
    cml = session_config_for(truck)
    assert cml.max_current_a == 400.0  # the most GB/T 27930-2015 can carry, not the gun's 1500 A
    assert (cml.max_voltage_v, cml.min_voltage_v) == (truck.max_voltage_v, truck.min_voltage_v)


def test_a_bus_that_cannot_be_opened_names_the_link() -> None:
    with pytest.raises(can.CanInitializationError, match="cannot open CAN nosuchbus channel 'G1'"):
        open_bus(CanLink(interface="nosuchbus", channel="G1"))
    gun = Gun(id="G9", max_current_a=250.0, max_voltage_v=1000.0, max_power_kw=240.0)
    with pytest.raises(ValueError, match="gun G9: has no can section"):
        ChargerLink.for_gun(gun)


def test_in_process_virtual_bus_links_a_charger_and_its_options_pass_through() -> None:
    bus = open_bus(CanLink(interface="virtual", channel="bus-test", options={"receive_own_messages": True}))
    try:
        bus.send(can.Message(arbitration_id=0x1826F456, data=b"\x01\x01\x00", is_extended_id=True))
        echoed = bus.recv(5.0)
        assert echoed is not None and echoed.arbitration_id == 0x1826F456  # the option reached can.Bus
    finally:
        bus.shutdown()
