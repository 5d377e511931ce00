"""The charger side of a GB/T 27930-2015 session, sans-IO (the h11 model).

* ``receive(frame, now)`` -> events. Frames not from the BMS to us are counted and ignored; TP frames go to
  the transport; malformed messages become :class:`FrameRejected` events (never exceptions).
* ``poll(now)`` -> (frames to send now, events): periodic messages, transport replies, timeouts.
  ``next_deadline()`` says when to call it next; call it right after every ``receive`` too, so replies
  (CTS, CST) go out at once.
* Controller inputs: :meth:`start`, :meth:`insulation_done`, :meth:`precharge_done`,
  :meth:`precharge_failed`, :meth:`set_current_limit`, :meth:`set_measurements`, :meth:`stop`.
* Controller outputs: the events (``StopOutput`` is "bring current <= 5 A now") and :meth:`status`.

Where the session goes is decided only by :mod:`drivers.gbt27930.transitions`; this module turns inputs,
messages and timers into triggers and performs each phase's entry actions (periodic messages, timers).
Timers run separately per message (reference §3.2). Time is whatever the caller passes as ``now``
(seconds, monotonic); nothing here reads a clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from drivers.gbt27930 import transitions as tr
from drivers.gbt27930.attribution import (
    CST_BMS_STOPPED,
    CST_ENERGY_UNAVAILABLE,
    CST_VEHICLE_FAULT,
    CST_VOLTAGE_ABNORMAL,
    Attribution,
    ChargerStop,
    StopReason,
    bem_codes,
    cem_for,
    classify_bst,
)
from drivers.gbt27930.events import (
    BatteryStatus,
    Demand,
    Event,
    FrameRejected,
    InsulationCheckRequested,
    LimitsReceived,
    OutputAllowed,
    PhaseChanged,
    PrechargeRequested,
    Retrying,
    SessionEnded,
    SessionStatus,
    SessionStopped,
    StopOutput,
    StopOverdue,
    VehicleAnomaly,
    VehicleIdentified,
    VehicleIdentity,
    VehicleLimits,
)
from drivers.gbt27930.frame import BMS_ADDRESS, CHARGER_ADDRESS, Frame
from drivers.gbt27930.messages import (
    BCL,
    BCP,
    BCS,
    BEM,
    BHM,
    BRM,
    BRO,
    BSD,
    BSM,
    BST,
    BY_NAME,
    BY_PGN,
    CCS,
    CEM,
    CHM,
    CML,
    CRM,
    CRO,
    CSD,
    CST,
    CTS,
    Level,
    MalformedMessage,
    Message,
    Permission,
    Ready,
    Sender,
    State2,
)
from drivers.gbt27930.transitions import Phase, Trigger
from drivers.gbt27930.transport import (
    TP_CM_PGN,
    TP_DT_PGN,
    Reassembled,
    TpAnomaly,
    TpTimers,
    TransferAborted,
    Transport,
)

MAX_GBT_CHARGE_CURRENT_A = 400.0  # the -400 A offset: GB/T 27930-2015 cannot express more charging current
STOPPED_CURRENT_A = 5.0  # "output current <= 5 A" after CST (figure A.6)


class SessionUsageError(RuntimeError):
    """The controller used the session wrongly (a bug on our side, like h11's LocalProtocolError)."""


@dataclass(frozen=True)
class Timeouts:
    """Every timeout of reference §3.2 plus the charger's own limits (seconds)."""

    bhm_s: float = 5.0  # no BHM: treat as a 2011 vehicle (UNVERIFIED figure, §7)
    insulation_s: float = 25.0  # our insulation check must finish before the BMS's 30 s CRM wait
    brm_s: float = 5.0  # from the first CRM(0x00)
    bcp_s: float = 5.0  # from CRM(0xAA)
    bro_s: float = 5.0  # no BRO at all, from the start of CTS/CML
    bro_ready_s: float = 60.0  # no BRO(0xAA), from the start of CTS/CML
    precharge_s: float = 30.0  # our precharge must finish before the BMS's 60 s CRO wait
    bcl_s: float = 1.0
    bcs_s: float = 5.0
    pause_s: float = 600.0  # BSM "not allowed" for longer ends the session
    bst_s: float = 5.0  # from our CST
    bsd_s: float = 10.0  # from our CST
    error_hold_s: float = 0.5  # CEM at 0, 250, 500 ms, then retry or end
    statistics_s: float = 0.75  # CSD at 0, 250, 500, 750 ms, then end

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not value > 0:
                raise ValueError(f"timeouts.{name}: must be > 0")


@dataclass(frozen=True)
class SessionConfig:
    """The charger's capability (sent in CML) and behaviour. Build it from the gun's configuration."""

    max_voltage_v: float = 1000.0
    min_voltage_v: float = 150.0
    max_current_a: float = 250.0
    min_current_a: float = 0.0
    charger_number: int = 1
    region: str | None = None  # 3 ASCII characters in CRM, optional
    insulation_test_voltage_v: float | None = None  # 2011 vehicles (no BHM); default max_voltage_v
    precharge_tolerance: float = 0.05  # |gun voltage - BCP battery voltage| / BCP voltage (GB 44263 §8.2.6)
    ccs_length: int = 8  # table 5 says 8; real chargers send 7
    max_retries: int = 3
    stop_current_deadline_s: float = 0.1  # current <= 5 A within 100 ms of CST
    timeouts: Timeouts = field(default_factory=Timeouts)
    tp_timers: TpTimers = field(default_factory=TpTimers)

    def __post_init__(self) -> None:
        if not 0 < self.min_voltage_v < self.max_voltage_v:
            raise ValueError("session: must have 0 < min_voltage_v < max_voltage_v")
        if not 0 < self.max_current_a <= MAX_GBT_CHARGE_CURRENT_A:
            raise ValueError(f"session.max_current_a: must be in (0, {MAX_GBT_CHARGE_CURRENT_A:g}] A "
                             "(GB/T 27930-2015 cannot express more)")
        if not 0 <= self.min_current_a < self.max_current_a:
            raise ValueError("session.min_current_a: must be >= 0 and below max_current_a")
        if self.ccs_length not in (7, 8):
            raise ValueError("session.ccs_length: must be 7 or 8")
        if self.max_retries < 0:
            raise ValueError("session.max_retries: must be >= 0")
        if not 0 < self.precharge_tolerance < 1:
            raise ValueError("session.precharge_tolerance: must be in (0, 1)")


# timers: name -> the message the charger waits for (the CEM field it reports)
_TIMER_CEM = {
    "brm": "brm_timeout", "bcp": "bcp_timeout", "bro": "bro_timeout", "bro_ready": "bro_timeout",
    "bcl": "bcl_timeout", "bcs": "bcs_timeout", "bst": "bst_timeout", "bsd": "bsd_timeout",
}
_TIMER_AWAITS = {"brm": "BRM", "bcp": "BCP", "bro": "BRO", "bro_ready": "BRO", "bcl": "BCL", "bcs": "BCS",
                 "bst": "BST", "bsd": "BSD"}
_PERIODS = {"CHM": CHM.PERIOD_S, "CRM": CRM.PERIOD_S, "CTS": CTS.PERIOD_S, "CML": CML.PERIOD_S,
            "CRO": CRO.PERIOD_S, "CCS": CCS.PERIOD_S, "CST": CST.PERIOD_S, "CSD": CSD.PERIOD_S,
            "CEM": CEM.PERIOD_S}


class ChargerSession:
    """One plug-in of one gun, from CHM to CSD (with up to ``max_retries`` restarts from identification)."""

    def __init__(self, config: SessionConfig | None = None, *,
                 wall_clock: Callable[[], datetime] | None = None) -> None:
        self.config = config or SessionConfig()
        self._wall_clock = wall_clock  # CTS content; None sends CTS with the optional time omitted
        self._phase = Phase.IDLE
        self._transport = Transport(CHARGER_ADDRESS, BMS_ADDRESS, timers=self.config.tp_timers)
        self._events: list[Event] = []
        self._timers: dict[str, float] = {}
        self._periodic: dict[str, float] = {}  # message name -> next due time
        self._limit_a = 0.0  # what the controller allows
        self._meas_v = 0.0
        self._meas_i = 0.0
        self._meas_at: float | None = None
        self._energy_kwh = 0.0
        self._now = 0.0  # the latest time any input carried (for status())
        self._stop_deadline: float | None = None  # current must be <= 5 A after this (last StopOutput)
        self._charging_started: float | None = None
        self._retries = 0
        self._reason: StopReason | None = None
        self.history: list[StopReason] = []  # every stop reason of every attempt, in order
        self.frames_rejected = 0
        self.frames_foreign = 0
        self._bhm: BHM | None = None
        self._reset_attempt()

    def _reset_attempt(self) -> None:
        """Forget what the vehicle told us in this attempt (identification starts again on a retry)."""
        self._brm: BRM | None = None
        self._bcp: BCP | None = None
        self._bcl: BCL | None = None
        self._bcl_at = 0.0
        self._bcs: BCS | None = None
        self._bsm: BSM | None = None
        self._bst: BST | None = None
        self._bsd: BSD | None = None
        self._bro_seen = False
        self._bro_window_start: float | None = None
        self._cst: CST | None = None
        self._cem: CEM | None = None
        self._crm_result = Ready.NOT_READY
        self._cro_ready = Ready.NOT_READY
        self._malformed: dict[str, str] = {}  # message name -> last reason
        self._tp_failure: dict[int, str] = {}  # PGN -> last transfer failure
        self._warned_clamp = False

    # ================================================================ queries

    @property
    def phase(self) -> Phase:
        return self._phase

    @property
    def output_allowed(self) -> bool:
        return self._phase is Phase.CHARGING

    @property
    def ended(self) -> bool:
        return self._phase is Phase.ENDED

    def setpoint_current_a(self) -> float:
        if self._phase is not Phase.CHARGING or self._bcl is None:
            return 0.0
        return max(0.0, min(self._limit_a, self._vehicle_current_cap()))

    def _vehicle_current_cap(self) -> float:
        """The most the vehicle asked for and allows: BCL, BCP, and the charger's own maximum."""
        cap = self.config.max_current_a
        if self._bcl is not None:
            cap = min(cap, self._bcl.current_a)
        if self._bcp is not None:
            cap = min(cap, self._bcp.max_current_a)
        return max(0.0, cap)

    def _voltage_cap(self) -> float:
        cap = self.config.max_voltage_v
        if self._bcl is not None:
            cap = min(cap, self._bcl.voltage_v)
        if self._bcp is not None:
            cap = min(cap, self._bcp.max_voltage_v)
        return max(0.0, cap)

    def next_deadline(self) -> float | None:
        """The earliest time ``poll`` has something to do (None: nothing until the next input)."""
        times = list(self._timers.values()) + list(self._periodic.values())
        tp = self._transport.next_deadline()
        if tp is not None:
            times.append(tp)
        return min(times) if times else None

    def status(self) -> SessionStatus:
        return SessionStatus(
            phase=self._phase,
            output_allowed=self.output_allowed,
            setpoint_current_a=self.setpoint_current_a(),
            setpoint_voltage_v=self._voltage_cap() if self.output_allowed else 0.0,
            identity=self._identity(),
            limits=self._limits(),
            demand=self._demand(),
            battery=self._battery(),
            stop=self._reason,
            retries=self._retries,
            energy_kwh=self._energy_kwh,
            charging_minutes=self._charging_minutes(self._now),
            frames_rejected=self.frames_rejected,
            frames_foreign=self.frames_foreign,
        )

    def _identity(self) -> VehicleIdentity | None:
        brm = self._brm
        if brm is None:
            return None
        return VehicleIdentity(
            vin=brm.vin, battery_type=brm.battery_type, battery_type_name=brm.battery_type_name,
            capacity_ah=brm.capacity_ah, rated_voltage_v=brm.rated_voltage_v,
            protocol="2015" if self._bhm is not None else "2011",
            bms_version=f"{brm.version_major}.{brm.version_minor}",
        )

    def _limits(self) -> VehicleLimits | None:
        bcp = self._bcp
        if bcp is None:
            return None
        return VehicleLimits(
            max_voltage_v=bcp.max_voltage_v, max_current_a=bcp.max_current_a,
            max_power_kw=bcp.max_voltage_v * max(0.0, bcp.max_current_a) / 1000.0,
            max_cell_voltage_v=bcp.max_cell_voltage_v, max_temperature_c=bcp.max_temperature_c,
            nominal_energy_kwh=bcp.nominal_energy_kwh, soc_percent=bcp.soc_percent,
            battery_voltage_v=bcp.battery_voltage_v,
        )

    def _demand(self) -> Demand | None:
        bcl = self._bcl
        if bcl is None:
            return None
        current = self._vehicle_current_cap()
        if self._meas_v > 0:
            volts = self._meas_v
        elif self._bcs is not None and self._bcs.measured_voltage_v > 0:
            volts = self._bcs.measured_voltage_v
        else:
            volts = self._voltage_cap()
        return Demand(
            voltage_v=self._voltage_cap(), current_a=current, mode=bcl.mode_name,
            power_kw=volts * current / 1000.0, raw_voltage_v=bcl.voltage_v, raw_current_a=bcl.current_a,
            at=self._bcl_at,
        )

    def _battery(self) -> BatteryStatus:
        bcs, bsm = self._bcs, self._bsm
        return BatteryStatus(
            measured_voltage_v=bcs.measured_voltage_v if bcs else None,
            measured_current_a=bcs.measured_current_a if bcs else None,
            soc_percent=bcs.soc_percent if bcs else None,
            remaining_min=bcs.remaining_min if bcs else None,
            max_cell_voltage_v=bcs.max_cell_voltage_v if bcs else None,
            max_temperature_c=bsm.max_temperature_c if bsm else None,
            min_temperature_c=bsm.min_temperature_c if bsm else None,
            charging_allowed=(bsm.charging is Permission.ALLOWED) if bsm else None,
            alarms=tuple(_bsm_alarms(bsm)) if bsm else (),
        )

    def _charging_minutes(self, now: float) -> int:
        if self._charging_started is None:
            return 0
        return min(600, int(max(0.0, now - self._charging_started) // 60))

    # ================================================================ controller inputs

    def start(self, now: float) -> list[Event]:
        """The plug is connected and the session authorised: begin the handshake."""
        self._now = max(self._now, now)
        if self._phase is not Phase.IDLE:
            raise SessionUsageError(f"start() in phase {self._phase.value}: a session starts once")
        self._fire(Trigger.START, now)
        return self._take_events()

    def insulation_done(self, ok: bool, now: float, detail: str = "") -> list[Event]:
        """Result of the insulation check requested by ``InsulationCheckRequested``. Ignored if it comes
        after the session left the insulation phase (a late result of a stopped session)."""
        self._now = max(self._now, now)
        if self._phase is Phase.INSULATION:
            if ok:
                self._fire(Trigger.INSULATION_OK, now)
            else:
                self._stop(Trigger.CHARGER_FAULT, now, Attribution.CHARGER_FAULT, "insulation_fault",
                           f"insulation check failed{': ' + detail if detail else ''}",
                           CST(fault_stop=State2.ON, other_fault=State2.ON), ("CST SPN3522 other_fault",))
        return self._take_events()

    def precharge_done(self, gun_voltage_v: float, now: float) -> list[Event]:
        """The output matches the battery and K1/K2 are closed; ``gun_voltage_v`` is the voltage measured at
        the gun. The session checks it against BCP (±5 %) and the CML range before it sends CRO(0xAA)."""
        self._now = max(self._now, now)
        if self._phase is not Phase.PRECHARGE or self._bcp is None:
            return self._take_events()
        if not math.isfinite(gun_voltage_v):
            raise SessionUsageError("precharge_done: gun voltage must be a finite number")
        expected = self._bcp.battery_voltage_v
        lo, hi = self.config.min_voltage_v, self.config.max_voltage_v
        if not lo <= expected <= hi:
            self._stop(Trigger.INCOMPATIBLE, now, Attribution.INCOMPATIBLE, "battery_voltage_out_of_range",
                       f"battery voltage {expected:g} V (BCP) is outside the charger's {lo:g}..{hi:g} V",
                       CST_ENERGY_UNAVAILABLE, ("CST SPN3522 energy_unavailable",))
        elif abs(gun_voltage_v - expected) > self.config.precharge_tolerance * max(expected, 1.0):
            self._stop(Trigger.VEHICLE_FAULT, now, Attribution.VEHICLE_FAULT, "precharge_voltage_mismatch",
                       f"gun voltage {gun_voltage_v:g} V differs from the BCP battery voltage {expected:g} V "
                       f"by more than {self.config.precharge_tolerance:.0%}",
                       CST_VOLTAGE_ABNORMAL, ("CST SPN3523 voltage_abnormal",))
        else:
            self._fire(Trigger.PRECHARGE_OK, now)
        return self._take_events()

    def precharge_failed(self, detail: str, now: float) -> list[Event]:
        """The power stage could not precharge (a charger-side fault)."""
        self._now = max(self._now, now)
        if self._phase is Phase.PRECHARGE:
            self._stop(Trigger.CHARGER_FAULT, now, Attribution.CHARGER_FAULT, "precharge_failed",
                       f"precharge failed: {detail}", CST(fault_stop=State2.ON, other_fault=State2.ON),
                       ("CST SPN3522 other_fault",))
        return self._take_events()

    def set_current_limit(self, amps: float) -> None:
        """The charging current the controller allows this gun now (>= 0)."""
        if not (math.isfinite(amps) and amps >= 0):
            raise SessionUsageError(f"set_current_limit: {amps!r} is not a current >= 0")
        self._limit_a = amps

    def set_measurements(self, voltage_v: float, current_a: float, now: float) -> list[Event]:
        """Measured output voltage and current: reported in CCS, integrated into the CSD energy, and checked
        against the last ``StopOutput`` deadline (<= 5 A within 100 ms of CST)."""
        self._now = max(self._now, now)
        if not (math.isfinite(voltage_v) and math.isfinite(current_a)):
            raise SessionUsageError("set_measurements: values must be finite")
        if self._meas_at is not None and self._phase in tr.ENERGIZED and now > self._meas_at:
            self._energy_kwh += self._meas_v * self._meas_i * (now - self._meas_at) / 3.6e6
        self._meas_v, self._meas_i, self._meas_at = voltage_v, current_a, now
        deadline = self._stop_deadline
        if deadline is not None and now > deadline and abs(current_a) > STOPPED_CURRENT_A:
            self._stop_deadline = None  # once per stop
            self._events.append(StopOverdue(current_a, deadline, now))
        return self._take_events()

    def stop(self, now: float, cause: ChargerStop = ChargerStop.OPERATOR, detail: str = "") -> list[Event]:
        """Stop from the charger side: operator, the service's own conditions, or a charger fault."""
        self._now = max(self._now, now)
        if self._phase in tr.RUNNING or self._phase is Phase.ERROR:
            trigger = Trigger.OPERATOR_STOP if cause.attribution is Attribution.OPERATOR else Trigger.CHARGER_FAULT
            text = detail or cause.value.replace("_", " ")
            self._stop(trigger, now, cause.attribution, cause.value, text, cause.cst(), (cause.gbt_code(),))
        return self._take_events()

    # ================================================================ frames in

    def receive(self, frame: Frame, now: float) -> list[Event]:
        self._now = max(self._now, now)
        if frame.source != BMS_ADDRESS or frame.destination != CHARGER_ADDRESS:
            self.frames_foreign += 1
            return []
        pgn = frame.pgn
        if pgn in (TP_CM_PGN, TP_DT_PGN):
            for ev in self._transport.receive(frame, now):
                self._on_tp_event(ev, now)
            return self._take_events()
        cls = BY_PGN.get(pgn)
        if cls is None:
            self._reject(frame, f"PGN 0x{pgn:04X} is not a GB/T 27930 message", now)
        elif cls.SENDER is not Sender.BMS:
            self._reject(frame, f"{cls.NAME} is a charger message, the BMS must not send it", now)
        elif cls.LENGTHS[0] > 8:
            self._malformed[cls.NAME] = "sent as a single frame, must use the transport protocol"
            self._reject(frame, f"{cls.NAME}: {self._malformed[cls.NAME]}", now)
        else:
            self._decode_and_handle(cls.NAME, pgn, frame.data, now, frame)
        return self._take_events()

    def _decode_and_handle(self, name: str, pgn: int, data: bytes, now: float, frame: Frame | None) -> None:
        try:
            msg = BY_PGN[pgn].decode(data)
        except MalformedMessage as exc:
            self._malformed[name] = exc.reason
            self._reject(frame or Frame(0, b""), str(exc), now)
            return
        self._malformed.pop(name, None)
        self._on_message(msg, now)

    def _reject(self, frame: Frame, reason: str, now: float) -> None:
        self.frames_rejected += 1
        self._events.append(FrameRejected(frame, reason, now))

    def _on_tp_event(self, ev: object, now: float) -> None:
        if isinstance(ev, Reassembled):
            cls = BY_PGN.get(ev.pgn)
            if cls is None or cls.SENDER is not Sender.BMS:
                self._anomaly("tp-unknown-pgn", f"transfer of PGN 0x{ev.pgn:04X} is not a BMS message", now)
                return
            self._tp_failure.pop(ev.pgn, None)
            self._decode_and_handle(cls.NAME, ev.pgn, ev.data, now, None)
        elif isinstance(ev, TransferAborted):
            self._tp_failure[ev.pgn] = f"{ev.detail} (reason {ev.reason})"
            self._anomaly("tp-aborted", f"PGN 0x{ev.pgn:04X}: {ev.detail} (reason {ev.reason})", now)
        elif isinstance(ev, TpAnomaly):
            self._anomaly(f"tp-{ev.kind}", ev.detail, now)

    def _anomaly(self, kind: str, detail: str, now: float) -> None:
        self._events.append(VehicleAnomaly(kind, detail, now))

    # ---- messages by phase

    def _on_message(self, msg: Message, now: float) -> None:
        phase = self._phase
        if isinstance(msg, BHM):
            self._bhm = msg
            if phase is Phase.HANDSHAKE:
                self._fire(Trigger.BHM, now)
        elif isinstance(msg, BRM):
            if phase is Phase.IDENTIFY:
                self._brm = msg
                self._events.append(VehicleIdentified(self._identity(), now))  # type: ignore[arg-type]
                self._fire(Trigger.BRM, now)
        elif isinstance(msg, BCP):
            if phase is Phase.AWAIT_BCP:
                self._on_bcp(msg, now)
        elif isinstance(msg, BRO):
            self._on_bro(msg, now)
        elif isinstance(msg, BCL):
            if phase in (Phase.OUTPUT_READY, Phase.CHARGING, Phase.PAUSED):
                self._on_bcl(msg, now)
        elif isinstance(msg, BCS):
            if phase in (Phase.OUTPUT_READY, Phase.CHARGING, Phase.PAUSED):
                self._on_bcs(msg, now)
        elif isinstance(msg, BSM):
            if phase in (Phase.OUTPUT_READY, Phase.CHARGING, Phase.PAUSED):
                self._on_bsm(msg, now)
        elif isinstance(msg, BST):
            self._on_bst(msg, now)
        elif isinstance(msg, BSD):
            if phase in (Phase.STOPPING, Phase.STATISTICS):
                self._bsd = msg
                self._fire(Trigger.BSD, now)
        elif isinstance(msg, BEM):
            self._on_bem(msg, now)
        # BMV, BMT, BSP: optional, no timeout, nothing to decide (clause 9.3)

    def _on_bcp(self, bcp: BCP, now: float) -> None:
        if not (bcp.max_voltage_v > 0 and bcp.max_current_a > 0 and bcp.max_cell_voltage_v > 0):
            self._bcp = bcp
            self._stop(Trigger.PROTOCOL_ERROR, now, Attribution.VEHICLE_PROTOCOL, "bcp_invalid",
                       f"BCP limits are not usable: max {bcp.max_voltage_v:g} V, {bcp.max_current_a:g} A, "
                       f"cell {bcp.max_cell_voltage_v:g} V", CST_VEHICLE_FAULT, ("BCP SPN2816-2819",))
            return
        if bcp.max_voltage_v < self.config.min_voltage_v:
            self._bcp = bcp
            self._stop(Trigger.INCOMPATIBLE, now, Attribution.INCOMPATIBLE, "vehicle_voltage_below_charger",
                       f"vehicle maximum {bcp.max_voltage_v:g} V is below the charger minimum "
                       f"{self.config.min_voltage_v:g} V", CST_ENERGY_UNAVAILABLE, ("CST SPN3522 energy_unavailable",))
            return
        self._bcp = bcp
        self._events.append(LimitsReceived(self._limits(), now))  # type: ignore[arg-type]
        self._fire(Trigger.BCP, now)

    def _on_bro(self, bro: BRO, now: float) -> None:
        if self._phase is Phase.AWAIT_BRO:
            self._bro_seen = True
            self._timers.pop("bro", None)
            if bro.ready == Ready.READY:
                self._fire(Trigger.BRO_READY, now)
        elif self._phase in (Phase.PRECHARGE, Phase.OUTPUT_READY) and bro.ready == Ready.NOT_READY:
            # the vehicle is not ready after all (before its first BCL): drop the output and wait again; the
            # 60 s BRO(0xAA) limit still counts from the first CTS/CML
            self._anomaly("bro-withdrawn", f"BRO 0x00 after 0xAA in {self._phase.value}: output stopped, "
                          "waiting again", now)
            self._fire(Trigger.BRO_WITHDRAWN, now)

    def _on_bcl(self, bcl: BCL, now: float) -> None:
        self._bcl, self._bcl_at = bcl, now
        self._timers["bcl"] = now + self.config.timeouts.bcl_s
        bcp = self._bcp
        if bcp is not None and not self._warned_clamp and (
            bcl.current_a > bcp.max_current_a or bcl.voltage_v > bcp.max_voltage_v
        ):
            self._warned_clamp = True
            self._anomaly("bcl-above-bcp",
                          f"BCL asks {bcl.voltage_v:g} V / {bcl.current_a:g} A, above BCP "
                          f"{bcp.max_voltage_v:g} V / {bcp.max_current_a:g} A: clamped to BCP", now)
        self._maybe_charging(now)

    def _on_bcs(self, bcs: BCS, now: float) -> None:
        self._bcs = bcs
        self._timers["bcs"] = now + self.config.timeouts.bcs_s
        bcp = self._bcp
        if bcp is not None and bcs.max_cell_voltage_v > bcp.max_cell_voltage_v:
            self._stop(Trigger.VEHICLE_FAULT, now, Attribution.VEHICLE_FAULT, "cell_over_voltage",
                       f"highest cell {bcs.max_cell_voltage_v:.2f} V (BCS) is above the vehicle's own limit "
                       f"{bcp.max_cell_voltage_v:.2f} V (BCP)", CST_VEHICLE_FAULT, ("BCS SPN3077", "BCP SPN2816"))
            return
        self._maybe_charging(now)

    def _maybe_charging(self, now: float) -> None:
        if self._phase is Phase.OUTPUT_READY and self._bcl is not None and self._bcs is not None:
            self._fire(Trigger.BCL_AND_BCS, now)
            if self._bsm is not None and self._bsm.charging is Permission.FORBIDDEN:
                self._fire(Trigger.BSM_PAUSE, now)  # the vehicle already said "not allowed"

    def _on_bsm(self, bsm: BSM, now: float) -> None:
        """The BSM rules (table note, reference §2.2): untrustworthy -> keep the previous state; any alarm
        -> stop; all normal -> pause on "forbidden", resume on "allowed"."""
        levels = (bsm.cell_voltage, bsm.soc)
        flags = (bsm.over_current, bsm.over_temperature, bsm.insulation, bsm.connector)
        if (any(lv is Level.NOT_AVAILABLE for lv in levels)
                or any(f in (State2.UNTRUSTWORTHY, State2.NOT_AVAILABLE) for f in flags)
                or bsm.charging in (Permission.INVALID, Permission.NOT_AVAILABLE)):
            self._anomaly("bsm-untrustworthy", "BSM carries untrustworthy or unavailable states: ignored", now)
            return
        self._bsm = bsm
        alarms = _bsm_alarms(bsm)
        if alarms:
            self._stop(Trigger.VEHICLE_FAULT, now, Attribution.VEHICLE_FAULT, "bsm:" + "+".join(alarms),
                       f"BSM reports {', '.join(alarms)}", CST_VEHICLE_FAULT,
                       tuple(f"BSM {_BSM_SPN[a.split('=')[0]]} {a}" for a in alarms))
        elif bsm.charging is Permission.FORBIDDEN:
            self._fire(Trigger.BSM_PAUSE, now)
        else:
            self._fire(Trigger.BSM_RESUME, now)

    def _on_bst(self, bst: BST, now: float) -> None:
        self._bst = bst
        if self._phase is Phase.STOPPING:
            self._timers.pop("bst", None)
            return
        if self._phase not in tr.RUNNING:
            return
        attribution, code, codes = classify_bst(bst, cst_sent=False)
        self._stop(Trigger.BST, now, attribution, code, f"vehicle sent BST ({code[4:].replace('+', ', ')})",
                   CST_BMS_STOPPED, codes + ("CST SPN3521 bms_stopped",))

    def _on_bem(self, bem: BEM, now: float) -> None:
        """A BEM ends the attempt only if one of its timeouts concerns a message we send in this phase;
        a stale one (the vehicle still reporting what made us restart) is recorded and ignored."""
        codes = bem_codes(bem)
        names = [n for n in bem.set_fields() if self._phase in _BEM_RELEVANT.get(n, ())]
        if names and self._phase in (Phase.STOPPING, Phase.STATISTICS):
            self._on_bem_after_stop(names, codes, now)
            return
        if not names or tr.target(self._phase, Trigger.BEM) is None:
            self._anomaly("bem", f"BEM in phase {self._phase.value} ignored: {', '.join(codes) or 'no bits set'}",
                          now)
            return
        missing = [m for m, got in (("BCL", self._bcl), ("BCS", self._bcs)) if got is None]
        if names == ["ccs_timeout"] and self._phase is Phase.OUTPUT_READY and missing:
            # CCS starts only once BCL and BCS have arrived (start/stop table, §3.4): the vehicle asked for
            # a message it had not made due yet
            self._fail(Trigger.BEM, now, Attribution.VEHICLE_PROTOCOL, "bem:ccs_timeout",
                       f"vehicle timed out waiting for CCS before sending {' and '.join(missing)} "
                       "(CCS starts once BCL and BCS arrived)", None, codes, retryable=True)
            return
        self._fail(Trigger.BEM, now, Attribution.CHARGER_FAULT, "bem:" + "+".join(names),
                   f"vehicle timed out waiting for the charger ({', '.join(names)})", None, codes, retryable=True)

    def _on_bem_after_stop(self, names: list[str], codes: tuple[str, ...], now: float) -> None:
        """The vehicle timed out on our CST or CSD: our frames are not reaching it (charger side). The stop
        reason already given stands; this one goes to ``history`` so the audit shows whose link failed, and
        in STOPPING the attempt ends here (the vehicle has given up on the exchange, so waiting for its BSD
        would only add a timeout wrongly blamed on the vehicle)."""
        detail = f"vehicle timed out waiting for the charger after the stop ({', '.join(names)})"
        code = "bem:" + "+".join(names)
        if self._phase is Phase.STOPPING:
            self._fail(Trigger.BEM, now, Attribution.CHARGER_FAULT, code, detail, None, codes, retryable=False)
        elif all(r.code != code for r in self.history):  # the BEM repeats every 250 ms: record it once
            self._record(StopReason(Attribution.CHARGER_FAULT, code, detail, now, self._phase.value, codes,
                                    retryable=False))

    # ================================================================ stopping and failing

    def _stop(self, trigger: Trigger, now: float, attribution: Attribution, code: str, detail: str,
              cst: CST, codes: tuple[str, ...]) -> None:
        if tr.target(self._phase, trigger) is None:
            return
        reason = StopReason(attribution, code, detail, now, self._phase.value, codes, retryable=False)
        if self._phase is Phase.ERROR:  # stopping during an error hold: just do not retry
            self._record(reason)
            self._fire(trigger, now)
            return
        self._record(reason)
        self._cst = cst
        self._fire(trigger, now)

    def _fail(self, trigger: Trigger, now: float, attribution: Attribution, code: str, detail: str,
              cem: CEM | None, codes: tuple[str, ...], retryable: bool) -> None:
        reason = StopReason(attribution, code, detail, now, self._phase.value, codes, retryable=retryable)
        self._record(reason)
        self._cem = cem
        self._fire(trigger, now)

    def _record(self, reason: StopReason) -> None:
        """The first reason of an attempt is *the* reason; later ones (e.g. no BSD after our CST) are kept
        in ``history`` only."""
        self.history.append(reason)
        if self._reason is None:
            self._reason = reason
            self._events.append(SessionStopped(reason))

    def _on_timer(self, name: str, now: float) -> None:
        t = self.config.timeouts
        if name == "bhm":
            self._fire(Trigger.BHM_TIMEOUT, now)
        elif name == "insulation":
            self._stop(Trigger.CHARGER_FAULT, now, Attribution.CHARGER_FAULT, "insulation_timeout",
                       f"insulation check gave no result within {t.insulation_s:g} s",
                       CST(fault_stop=State2.ON, other_fault=State2.ON), ("CST SPN3522 other_fault",))
        elif name == "precharge":
            self._stop(Trigger.CHARGER_FAULT, now, Attribution.CHARGER_FAULT, "precharge_timeout",
                       f"precharge not done within {t.precharge_s:g} s",
                       CST(fault_stop=State2.ON, other_fault=State2.ON), ("CST SPN3522 other_fault",))
        elif name == "pause":
            self._stop(Trigger.PAUSE_TIMEOUT, now, Attribution.VEHICLE_TIMEOUT, "pause_timeout",
                       f"vehicle paused charging (BSM) for more than {t.pause_s:g} s",
                       CST(conditions_reached=State2.ON), ("BSM SPN3096 forbidden", "CST SPN3521 conditions_reached"))
        elif name == "error_hold":
            if self._reason is not None and self._reason.retryable and self._retries < self.config.max_retries:
                self._retries += 1
                self._events.append(Retrying(self._retries, self._reason, now))
                self._fire(Trigger.RETRY, now)
            else:
                self._fire(Trigger.GIVE_UP, now)
        elif name == "statistics":
            self._fire(Trigger.STATISTICS_DONE, now)
        else:
            self._vehicle_timeout(name, now)

    def _vehicle_timeout(self, name: str, now: float) -> None:
        awaited = _TIMER_AWAITS[name]
        cem, cem_code = cem_for(_TIMER_CEM[name])
        in_stop = self._phase is Phase.STOPPING
        waited = {"bro_ready": f"BRO(0xAA) within {self.config.timeouts.bro_ready_s:g} s"}.get(
            name, f"{awaited} within {getattr(self.config.timeouts, name + '_s'):g} s")
        broken = self._malformed.get(awaited) or self._tp_failure.get(BY_NAME[awaited].PGN)
        if broken:
            attribution, detail = Attribution.VEHICLE_PROTOCOL, f"no valid {waited}: last {awaited} {broken}"
        else:
            attribution, detail = Attribution.VEHICLE_TIMEOUT, f"no {waited}"
        self._fail(Trigger.TIMEOUT, now, attribution, f"{name}_timeout", detail, cem, (cem_code,),
                   retryable=not in_stop)

    # ================================================================ time

    def poll(self, now: float) -> tuple[list[Frame], list[Event]]:
        """Frames due now and the events of any timer that expired."""
        self._now = max(self._now, now)
        frames: list[Frame] = []
        tp_frames, tp_events = self._transport.poll(now)
        frames += tp_frames
        for ev in tp_events:
            self._on_tp_event(ev, now)
        self._emit_periodic(now, frames)  # e.g. the last CEM of an error hold goes out before it ends
        for _ in range(32):  # a timer can start a phase whose timers are already due; bounded
            due = [(t, n) for n, t in self._timers.items() if t <= now]
            if not due:
                break
            _, name = min(due)
            del self._timers[name]
            self._on_timer(name, now)
        self._emit_periodic(now, frames)
        tp_frames, tp_events = self._transport.poll(now)
        frames += tp_frames
        for ev in tp_events:
            self._on_tp_event(ev, now)
        return frames, self._take_events()

    def _emit_periodic(self, now: float, out: list[Frame]) -> None:
        for name, due in list(self._periodic.items()):
            if due <= now:
                out.append(self._build(name, now))
                period = _PERIODS[name]
                nxt = due + period
                self._periodic[name] = nxt if nxt > now else now + period

    def _build(self, name: str, now: float) -> Frame:
        c = self.config
        msg: Message
        if name == "CHM":
            msg = CHM()
        elif name == "CRM":
            msg = CRM(result=self._crm_result, charger_number=c.charger_number, region=c.region)
        elif name == "CTS":
            msg = CTS.at(self._wall_clock()) if self._wall_clock else CTS()
        elif name == "CML":
            msg = CML(c.max_voltage_v, c.min_voltage_v, c.max_current_a, c.min_current_a)
        elif name == "CRO":
            msg = CRO(ready=self._cro_ready)
        elif name == "CCS":
            current = min(MAX_GBT_CHARGE_CURRENT_A, max(-6000.0, self._meas_i))
            msg = CCS(voltage_v=min(6553.5, max(0.0, self._meas_v)), current_a=current,
                      charging_minutes=self._charging_minutes(now), permission=Permission.ALLOWED,
                      length=c.ccs_length)
        elif name == "CST":
            msg = self._cst or CST()
        elif name == "CSD":
            msg = CSD(charging_minutes=self._charging_minutes(now), energy_kwh=min(6553.5, self._energy_kwh),
                      charger_number=c.charger_number)
        else:
            msg = self._cem or CEM()
        return msg.frame()

    # ================================================================ transitions

    def _fire(self, trigger: Trigger, now: float) -> bool:
        new = tr.target(self._phase, trigger)
        if new is None:
            return False
        old = self._phase
        self._phase = new
        if (old in tr.ENERGIZED and new not in tr.FLOWING) or (
            old in tr.RUNNING and new in (Phase.STOPPING, Phase.ERROR)
        ):
            pause = new is Phase.PAUSED
            self._stop_deadline = now + self.config.stop_current_deadline_s
            self._events.append(StopOutput(now, self._stop_deadline, pause, None if pause else self._reason))
        self._events.append(PhaseChanged(old, new, trigger, now))
        self._enter(new, old, now)
        return True

    def _schedule(self, *names: str, now: float) -> None:
        self._periodic = {n: now for n in names}

    def _enter(self, phase: Phase, old: Phase, now: float) -> None:
        t = self.config.timeouts
        timers = self._timers
        if phase is Phase.HANDSHAKE:
            self._schedule("CHM", now=now)
            timers["bhm"] = now + t.bhm_s
        elif phase is Phase.INSULATION:
            timers.pop("bhm", None)
            timers["insulation"] = now + t.insulation_s
            volts = self.config.insulation_test_voltage_v or self.config.max_voltage_v
            if self._bhm is not None:
                volts = min(self._bhm.max_voltage_v, self.config.max_voltage_v)
            self._events.append(InsulationCheckRequested(volts, now))
        elif phase is Phase.IDENTIFY:
            timers.clear()
            self._transport.reset()
            self._reset_attempt()
            if old is Phase.ERROR:
                self._reason = None
            self._crm_result = Ready.NOT_READY
            self._schedule("CRM", now=now)
            timers["brm"] = now + t.brm_s
        elif phase is Phase.AWAIT_BCP:
            timers.pop("brm", None)
            self._crm_result = Ready.READY
            self._schedule("CRM", now=now)
            timers["bcp"] = now + t.bcp_s
        elif phase is Phase.AWAIT_BRO:
            for name in ("bcp", "precharge", "bcl", "bcs"):  # back from PRECHARGE or OUTPUT_READY too
                timers.pop(name, None)
            if self._bro_window_start is None:
                self._bro_window_start = now
            if not self._bro_seen:
                timers["bro"] = self._bro_window_start + t.bro_s
            timers["bro_ready"] = self._bro_window_start + t.bro_ready_s
            self._schedule("CTS", "CML", now=now)
        elif phase is Phase.PRECHARGE:
            timers.pop("bro", None)
            timers.pop("bro_ready", None)
            timers["precharge"] = now + t.precharge_s
            self._cro_ready = Ready.NOT_READY
            self._schedule("CRO", now=now)
            bcp = self._bcp
            assert bcp is not None  # AWAIT_BRO is only reached with a BCP
            self._events.append(PrechargeRequested(bcp.battery_voltage_v, self.config.min_voltage_v,
                                                   min(self.config.max_voltage_v, bcp.max_voltage_v), now))
        elif phase is Phase.OUTPUT_READY:
            timers.pop("precharge", None)
            self._bcl = None
            self._bcs = None
            self._cro_ready = Ready.READY
            self._schedule("CRO", now=now)
            timers["bcl"] = now + t.bcl_s
            timers["bcs"] = now + t.bcs_s
        elif phase is Phase.CHARGING:
            timers.pop("pause", None)
            if self._charging_started is None:
                self._charging_started = now
            if old is not Phase.PAUSED:
                self._schedule("CCS", now=now)
            self._stop_deadline = None
            self._events.append(OutputAllowed(now))
        elif phase is Phase.PAUSED:
            timers["pause"] = now + t.pause_s
        elif phase is Phase.STOPPING:
            timers.clear()
            self._transport.reset()
            self._schedule("CST", now=now)
            if self._bst is None:  # unless the vehicle stopped first: its BST is already here
                timers["bst"] = now + t.bst_s
            timers["bsd"] = now + t.bsd_s
        elif phase is Phase.STATISTICS:
            timers.clear()
            self._schedule("CSD", now=now)
            timers["statistics"] = now + t.statistics_s
        elif phase is Phase.ERROR:
            timers.clear()
            self._transport.reset()
            if self._cem is not None:
                self._schedule("CEM", now=now)
            else:
                self._periodic = {}
            timers["error_hold"] = now + t.error_hold_s
        elif phase is Phase.ENDED:
            timers.clear()
            self._periodic = {}
            self._transport.reset()
            self._events.append(SessionEnded(self._reason, now, self._retries, self._energy_kwh,
                                             self._charging_minutes(now),
                                             self._bsd.soc_percent if self._bsd else None))

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events


_BEM_RELEVANT = {
    "crm_00_timeout": (Phase.IDENTIFY, Phase.AWAIT_BCP),
    "crm_aa_timeout": (Phase.IDENTIFY, Phase.AWAIT_BCP),
    "cts_cml_timeout": (Phase.AWAIT_BCP, Phase.AWAIT_BRO),
    "cro_timeout": (Phase.AWAIT_BRO, Phase.PRECHARGE, Phase.OUTPUT_READY),
    "ccs_timeout": (Phase.OUTPUT_READY, Phase.CHARGING, Phase.PAUSED),
    # after the stop: the vehicle did not hear our CST (we send it every 10 ms) or our CSD
    "cst_timeout": (Phase.STOPPING,),
    "csd_timeout": (Phase.STOPPING, Phase.STATISTICS),
}

_BSM_SPN = {"cell_voltage": "SPN3090", "soc": "SPN3091", "over_current": "SPN3092",
            "over_temperature": "SPN3093", "insulation": "SPN3094", "connector": "SPN3095"}


def _bsm_alarms(bsm: BSM) -> list[str]:
    """Alarm states of a BSM as ``field=state`` strings (empty when all normal)."""
    out = []
    for name in BSM.ALARMS:
        value = getattr(bsm, name)
        if value in (Level.HIGH, Level.LOW) or value is State2.ON:
            out.append(f"{name}={value.name.lower()}")
    return out
