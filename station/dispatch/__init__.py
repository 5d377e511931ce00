"""Grid-operator dispatch, sans-IO: setpoints in (bytes), acks, grid limits, events and evidence out.

The MQTT link (drivers/mqtt) feeds :meth:`DispatchManager.submit`; the control cycle reads
:meth:`DispatchManager.limits_at` every tick and feeds :meth:`DispatchManager.observe_grid_power`.
"""

from station.dispatch.manager import DispatchManager, DispatchSettings, station_range
from station.dispatch.model import Ack, DispatchEvent, GridLimits, Setpoint, StationRange
from station.dispatch.reasons import REASON_TEXT, Reason
from station.dispatch.validate import SignatureError, Verifier, no_signature

__all__ = [
    "Ack",
    "DispatchEvent",
    "DispatchManager",
    "DispatchSettings",
    "GridLimits",
    "REASON_TEXT",
    "Reason",
    "SignatureError",
    "Setpoint",
    "StationRange",
    "Verifier",
    "no_signature",
    "station_range",
]
