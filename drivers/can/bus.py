"""Opening a gun's CAN bus from its ``can:`` section (``station.config.CanLink``).

``interface``, ``channel`` and ``bitrate`` go to ``can.Bus`` as they are, and every entry of ``options``
is passed through as a keyword (``host``/``port`` for socketcand, ``receive_own_messages``, ...). On a
real box that is ``socketcan`` on ``can0``; on the bench ``socketcand`` pointed at the software hub
(``station-hil can-hub``). The controller uses python-can's stock client either way.
"""

from __future__ import annotations

import logging
from typing import Any

import can

from drivers.gbt27930.frame import BMS_ADDRESS, CHARGER_ADDRESS
from station.config import CanLink


def charger_filters() -> list[dict[str, Any]]:
    """Only frames from the BMS (0xF4) to the charger (0x56): the kernel drops the rest on socketcan."""
    return [{"can_id": (CHARGER_ADDRESS << 8) | BMS_ADDRESS, "can_mask": 0xFFFF, "extended": True}]


def bms_filters() -> list[dict[str, Any]]:
    return [{"can_id": (BMS_ADDRESS << 8) | CHARGER_ADDRESS, "can_mask": 0xFFFF, "extended": True}]


def open_bus(link: CanLink, can_filters: list[dict[str, Any]] | None = None) -> can.BusABC:
    """A python-can bus for one gun. Raises ``can.CanError``/``OSError`` naming the link if it fails."""
    kwargs: dict[str, Any] = dict(link.options)
    if link.interface == "socketcand":
        # python-can 4.6.1's client logs a WARNING each time a TCP read ends inside a frame, which is
        # normal at a few thousand frames/s; keep its real errors
        logging.getLogger("can.interfaces.socketcand.socketcand").setLevel(logging.ERROR)
        # and it applies can_filters in Python, where they also drop error frames (socketcan's kernel
        # filters let them through): take every frame, the endpoint counts and ignores foreign ones
        can_filters = None
    try:
        return can.Bus(interface=link.interface, channel=link.channel, bitrate=link.bitrate,
                       can_filters=can_filters, **kwargs)
    except (can.CanError, OSError, ValueError) as exc:
        raise can.CanInitializationError(
            f"cannot open CAN {link.interface} channel '{link.channel}' ({kwargs}): {exc}"
        ) from exc
