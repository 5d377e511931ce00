"""What the charger session tells its controller: events (things that happened) and the status snapshot
(what is true now). Both are immutable, so the control cycle can keep them without copying."""

from __future__ import annotations

from dataclasses import dataclass

from drivers.gbt27930.attribution import StopReason
from drivers.gbt27930.frame import Frame
from drivers.gbt27930.transitions import Phase, Trigger

# --------------------------------------------------------------------------- data the vehicle gave us


@dataclass(frozen=True)
class VehicleIdentity:
    """From BRM (and whether a BHM was seen: a vehicle without BHM speaks the 2011 edition)."""

    vin: str | None
    battery_type: int
    battery_type_name: str
    capacity_ah: float
    rated_voltage_v: float
    protocol: str  # "2015" (BHM seen) or "2011"
    bms_version: str  # e.g. "1.1"


@dataclass(frozen=True)
class VehicleLimits:
    """From BCP. ``max_power_kw`` is derived (max voltage x max current); BCP carries no power field."""

    max_voltage_v: float
    max_current_a: float
    max_power_kw: float
    max_cell_voltage_v: float
    max_temperature_c: int
    nominal_energy_kwh: float
    soc_percent: float  # at the start of the session
    battery_voltage_v: float  # at the start of the session


@dataclass(frozen=True)
class Demand:
    """The live BCL demand, already clamped to BCP and charger limits (``raw_*`` is what the vehicle sent).

    ``power_kw``: demand current x the best voltage known (charger's measured output, else BCS measured
    voltage, else the BCL voltage demand, which is an upper bound in CC mode)."""

    voltage_v: float
    current_a: float
    mode: str  # "constant-current" / "constant-voltage"
    power_kw: float
    raw_voltage_v: float
    raw_current_a: float
    at: float


@dataclass(frozen=True)
class BatteryStatus:
    """From BCS (measured values, SoC, remaining time, highest cell) and BSM (temperatures, alarms)."""

    measured_voltage_v: float | None = None
    measured_current_a: float | None = None
    soc_percent: int | None = None
    remaining_min: int | None = None
    max_cell_voltage_v: float | None = None
    max_temperature_c: int | None = None
    min_temperature_c: int | None = None
    charging_allowed: bool | None = None
    alarms: tuple[str, ...] = ()


@dataclass(frozen=True)
class SessionStatus:
    """Everything the control cycle needs from one gun's vehicle link, at one instant.

    ``setpoint_current_a`` is what the power modules may deliver now: 0 unless ``output_allowed``, else
    min(controller limit, BCL demand, BCP maximum, charger maximum). It never exceeds what the vehicle asked.
    """

    phase: Phase
    output_allowed: bool
    setpoint_current_a: float
    setpoint_voltage_v: float
    identity: VehicleIdentity | None
    limits: VehicleLimits | None
    demand: Demand | None
    battery: BatteryStatus
    stop: StopReason | None
    retries: int
    energy_kwh: float
    charging_minutes: int
    frames_rejected: int
    frames_foreign: int


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class PhaseChanged:
    old: Phase
    new: Phase
    trigger: Trigger
    at: float


@dataclass(frozen=True)
class InsulationCheckRequested:
    """Run the insulation check at ``test_voltage_v`` and report with ``insulation_done``.

    The voltage is min(BHM maximum, charger maximum); for a 2011 vehicle (no BHM) the configured value."""

    test_voltage_v: float
    at: float


@dataclass(frozen=True)
class PrechargeRequested:
    """Bring the output to ``battery_voltage_v`` (BCP), close K1/K2 and report the gun voltage with
    ``precharge_done``; the session checks it against the window below before it sends CRO(0xAA)."""

    battery_voltage_v: float
    min_voltage_v: float
    max_voltage_v: float
    at: float


@dataclass(frozen=True)
class OutputAllowed:
    """Output may follow ``status().setpoint_current_a`` from now on."""

    at: float


@dataclass(frozen=True)
class StopOutput:
    """Bring the output current to <= 5 A by ``current_deadline`` (100 ms after CST). ``pause``: a BSM pause
    (contactors may stay closed); otherwise the session is stopping or failed (open K1/K2)."""

    at: float
    current_deadline: float
    pause: bool
    reason: StopReason | None


@dataclass(frozen=True)
class VehicleIdentified:
    identity: VehicleIdentity
    at: float


@dataclass(frozen=True)
class LimitsReceived:
    limits: VehicleLimits
    at: float


@dataclass(frozen=True)
class SessionStopped:
    """A stop rule fired (the session now stops, or fails and may retry)."""

    reason: StopReason


@dataclass(frozen=True)
class Retrying:
    attempt: int  # 1 for the first retry
    reason: StopReason
    at: float


@dataclass(frozen=True)
class SessionEnded:
    """Terminal. ``reason`` is the stop reason of the last attempt (None if it never started charging
    and nothing went wrong, which cannot happen: every end has a reason)."""

    reason: StopReason | None
    at: float
    retries: int
    energy_kwh: float
    charging_minutes: int
    final_soc_percent: int | None


@dataclass(frozen=True)
class FrameRejected:
    """A frame from the vehicle that is not a valid GB/T message (counted and ignored)."""

    frame: Frame
    reason: str
    at: float


@dataclass(frozen=True)
class VehicleAnomaly:
    """Tolerated deviation: demand above BCP (clamped), untrustworthy BSM (ignored), TP irregularities,
    a message out of its phase, a BEM while the insulation check runs."""

    kind: str
    detail: str
    at: float


@dataclass(frozen=True)
class StopOverdue:
    """Evidence for the safety supervisor: a measurement after a ``StopOutput`` deadline still shows more
    than 5 A. Reported once per stop; what to do (open contactors, trip) is the supervisor's decision."""

    current_a: float
    deadline: float
    at: float


Event = (
    PhaseChanged | InsulationCheckRequested | PrechargeRequested | OutputAllowed | StopOutput
    | VehicleIdentified | LimitsReceived | SessionStopped | Retrying | SessionEnded | FrameRejected
    | VehicleAnomaly | StopOverdue
)
