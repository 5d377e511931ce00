"""Who caused a failure: the one vocabulary of the audit trail.

The grid operator's first question after a failure is whose it was. Register maps (``attributed_to`` of a
fault bit), the ``fault`` / ``fault_cleared`` events on MQTT and the audit log all use these five names, so
an operator can count failures per party across a fleet without translating between layers. GB/T 27930
session stops carry their own finer causes (``drivers.gbt27930.attribution``); :func:`party_of_stop` maps
them onto this vocabulary.
"""

from __future__ import annotations

from typing import Literal, get_args

Party = Literal["vehicle", "charger_hardware", "bess", "grid_link", "controller"]
PARTIES: tuple[str, ...] = get_args(Party)

# GB/T session stop attributions (drivers.gbt27930.attribution.Attribution values) -> party; ``None`` for
# ends that are nobody's failure (the vehicle is full, an operator stopped it).
_STOP_PARTY: dict[str, Party | None] = {
    "vehicle_protocol": "vehicle",
    "vehicle_timeout": "vehicle",
    "vehicle_fault": "vehicle",
    "incompatible": "vehicle",  # the vehicle cannot be charged by this charger: not ours to fix
    "charger_fault": "charger_hardware",
    "vehicle_done": None,
    "operator": None,
}


def party_of_stop(attribution: str) -> Party | None:
    """The party a GB/T stop attribution (its string value) is blamed on; None when nobody failed."""
    try:
        return _STOP_PARTY[attribution]
    except KeyError:
        raise ValueError(f"unknown session stop attribution {attribution!r}") from None
