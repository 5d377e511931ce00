"""The vehicle side of GB/T 27930-2015 (reference §3.5), sans-IO, driven by the vehicle plant model.

``receive(frame, now)`` and ``poll(now) -> frames`` like the charger session, so the same runner and the
same in-memory pairing drive both. The battery is :class:`hil.plant.vehicle.Vehicle`: BCL asks for what it
accepts, BCS reports its terminal voltage and SoC, and the current the charger reports in CCS charges it.

:class:`FaultKnobs` makes it misbehave the ways real vehicles do (reference §3.5 and the product fault
lists): silence, a BRM of the wrong length, DTs without waiting for CTS, demand above its own limits, long
BSM pauses, BRO 0xAA then 0x00, an abrupt BST with any fault reason, garbage frames, a cell above its limit,
and a 2011-edition vehicle that never sends BHM.
"""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass, field
from typing import Any

from drivers.gbt27930.frame import BMS_ADDRESS, CHARGER_ADDRESS, Frame, make_id
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
    BST_FAULTS,
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
    MalformedMessage,
    Message,
    Permission,
    Ready,
    Sender,
    SoftwareVersion,
    State2,
)
from drivers.gbt27930.transport import TP_CM_PGN, TP_DT_PGN, TpTimers, Transport
from hil.plant.vehicle import Vehicle

GBT_MAX_CURRENT_A = 400.0  # the most GB/T 27930-2015 can express
BST_REASONS = ("soc_reached", *BST_FAULTS, "current_too_high", "voltage_abnormal")


@dataclass(frozen=True)
class FaultKnobs:
    """Each knob off by default. Times are seconds; "after charging" counts from CRO(0xAA)."""

    silence_after_s: float | None = None  # from the first CHM (or CRM for 2011): send and hear nothing ...
    silence_for_s: float | None = None  # ... for this long (None: for good)
    brm_length: int = 49  # 49 (2015), 41 (2011 form), anything else is malformed
    tp_without_cts: bool = False  # blast DTs on a 10 ms tick after RTS (P1)
    bcl_over_bcp: bool = False  # ask 50 A / 20 V above the BCP limits
    pause_after_s: float | None = None  # BSM "not allowed" this long after charging starts ...
    pause_for_s: float = 0.0  # ... for this long
    bro_withdraw_s: float | None = None  # after BRO(0xAA), send BRO(0x00) this long (inf: for good)
    bst_reason: str | None = None  # abrupt BST with this reason (a BST field name) ...
    bst_after_s: float = 1.0  # ... this long after charging starts
    garbage_per_s: float = 0.0  # invalid frames per second (wrong lengths, foreign PGNs, charger PGNs)
    cell_over_voltage_after_s: float | None = None  # BCS reports a cell above BCP's maximum
    legacy_2011: bool = False  # no BHM: wait for CRM directly, 41-byte BRM
    bro_delay_s: float = 0.5  # BRO(0x00) before BRO(0xAA), as real vehicles do (T1: 1.25 s)
    never_send: str = ""  # comma-separated messages the vehicle never sends (e.g. "BCP", "BRO", "BSD"):
    #                       the charger's timeout for each can then be provoked from another process
    seed: int = 0

    def __post_init__(self) -> None:
        if self.bst_reason is not None and self.bst_reason not in BST_REASONS:
            raise ValueError(f"bst_reason: must be one of {', '.join(BST_REASONS)}")
        if self.garbage_per_s < 0 or self.bro_delay_s < 0 or self.pause_for_s < 0:
            raise ValueError("garbage_per_s, bro_delay_s and pause_for_s must be >= 0")
        unknown = set(self.never_sent) - set(_PERIOD)
        if unknown:
            raise ValueError(f"never_send: {', '.join(sorted(unknown))} not among {', '.join(sorted(_PERIOD))}")

    @property
    def never_sent(self) -> frozenset[str]:
        return frozenset(n.strip().upper() for n in self.never_send.split(",") if n.strip())

    @classmethod
    def parse(cls, items: list[str]) -> FaultKnobs:
        """``["silence_after_s=3", "tp_without_cts=true"]`` -> knobs (for the command line)."""
        kwargs: dict[str, Any] = {}
        fields = cls.__dataclass_fields__
        for item in items:
            name, sep, text = item.partition("=")
            if not sep or name not in fields:
                raise ValueError(f"knob '{item}': expected NAME=VALUE with NAME one of {', '.join(fields)}")
            kind = str(fields[name].type)
            if "bool" in kind:
                if text.lower() not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
                    raise ValueError(f"knob '{item}': {name} must be true or false")
                kwargs[name] = text.lower() in ("1", "true", "yes", "on")
            elif name == "bst_reason":
                kwargs[name] = text or None
            elif name == "never_send":
                kwargs[name] = text
            else:
                integer = "int" in kind and "float" not in kind
                try:
                    kwargs[name] = int(text) if integer else None if text.lower() == "none" else float(text)
                except ValueError:
                    raise ValueError(f"knob '{item}': {name} must be {'an integer' if integer else 'a number'}") \
                        from None
        return cls(**kwargs)


@dataclass(frozen=True)
class BmsTimeouts:
    """The vehicle's timeouts (reference §3.2)."""

    crm_s: float = 30.0  # CRM at all, after the first CHM
    crm_aa_s: float = 5.0  # CRM(0xAA) after the first BRM
    cml_s: float = 5.0  # CTS/CML after CRM(0xAA)
    cro_s: float = 5.0  # any CRO after BRO(0xAA)
    cro_aa_s: float = 60.0  # CRO(0xAA) after BRO(0xAA)
    ccs_s: float = 1.0
    cst_s: float = 5.0  # after our BST
    csd_s: float = 10.0  # after our BST / the charger's CST
    restart_wait_s: float = 30.0  # after a BEM or CEM, wait this long for a fresh CRM


class Phase(enum.Enum):
    WAIT_CHM = "wait-chm"
    HANDSHAKE = "handshake"
    IDENTIFY = "identify"
    CONFIG = "config"
    READY = "ready"
    CHARGING = "charging"
    STOPPING = "stopping"
    STATISTICS = "statistics"
    ERROR = "error"
    DONE = "done"


_PERIOD = {"BHM": 0.25, "BRM": 0.25, "BCP": 0.5, "BRO": 0.25, "BCL": 0.05, "BCS": 0.25, "BSM": 0.25,
           "BST": 0.01, "BSD": 0.25, "BEM": 0.25}


@dataclass
class _Record:
    """What the simulator observed, for tests and the command's JSON lines."""

    log: list[dict[str, Any]] = field(default_factory=list)
    charger_messages: dict[str, int] = field(default_factory=dict)
    restarts: int = 0


class BmsSimulator:
    """One vehicle's BMS. ``vehicle`` is the plant; ``knobs`` the faults to inject."""

    def __init__(self, vehicle: Vehicle, knobs: FaultKnobs | None = None, *,
                 timeouts: BmsTimeouts | None = None, tp_timers: TpTimers | None = None) -> None:
        self.vehicle = vehicle
        self.knobs = knobs or FaultKnobs()
        self.timeouts = timeouts or BmsTimeouts()
        self.transport = Transport(
            BMS_ADDRESS, CHARGER_ADDRESS, timers=tp_timers or TpTimers(),
            dt_interval_s=0.010, send_without_cts=self.knobs.tp_without_cts,
        )
        self.phase = Phase.WAIT_CHM
        self.record = _Record()
        self._rng = random.Random(self.knobs.seed)
        self._periodic: dict[str, float] = {}
        self._timers: dict[str, float] = {}
        self._started: float | None = None  # first CHM (or CRM for 2011)
        self._charging_since: float | None = None
        self._last_step: float | None = None
        self._ccs: CCS | None = None
        self._bro_ready_at = 0.0
        self._bro_ready_sent: float | None = None
        self._bst: BST | None = None
        self._bem: BEM | None = None
        self._next_garbage: float | None = None
        self.csd: CSD | None = None
        self.cst: CST | None = None
        self.cem: CEM | None = None
        self._log_taken = 0

    # ------------------------------------------------------------------ limits the vehicle declares

    @property
    def max_current_a(self) -> float:
        return min(self.vehicle.spec.max_current_a, GBT_MAX_CURRENT_A)

    @property
    def cells(self) -> int:
        return max(1, round(self.vehicle.spec.nominal_voltage_v / 3.65))

    @property
    def max_cell_voltage_v(self) -> float:
        return round(self.vehicle.spec.max_voltage_v / self.cells + 0.02, 2)

    def _brm(self) -> BRM:
        s = self.vehicle.spec
        vin = (s.vehicle_id.upper() + "0" * 17)[:17]
        sw = None if (self.knobs.brm_length == 41 or self.knobs.legacy_2011) else SoftwareVersion(1, 1, 1, 2024)
        return BRM(battery_type=0x06, capacity_ah=round(s.capacity_kwh * 1000 / s.nominal_voltage_v, 1),
                   rated_voltage_v=s.nominal_voltage_v, manufacturer="HILB", vin=vin, software_version=sw)

    def _brm_payload(self) -> bytes:
        data = self._brm().encode()
        n = self.knobs.brm_length
        if n in (41, 49):
            return data
        return (data + b"\xff" * 64)[:n]  # the "wrong BRM length" knob

    def _bcp(self) -> BCP:
        v = self.vehicle
        return BCP(max_cell_voltage_v=self.max_cell_voltage_v, max_current_a=self.max_current_a,
                   nominal_energy_kwh=v.spec.capacity_kwh, max_voltage_v=v.spec.max_voltage_v,
                   max_temperature_c=60, soc_percent=round(v.soc * 100, 1), battery_voltage_v=round(v.ocv_v, 1))

    def _bcl(self) -> BCL:
        v = self.vehicle
        current = min(v.accepted_current_a(), self.max_current_a)
        volts = v.requested_voltage_v()
        if self.knobs.bcl_over_bcp:
            current, volts = min(GBT_MAX_CURRENT_A, self.max_current_a + 50.0), volts + 20.0
        cv = v.terminal_voltage_v(current) >= v.spec.max_voltage_v - 1.0
        return BCL(voltage_v=round(volts, 1), current_a=round(current, 1), mode=0x01 if cv else 0x02)

    def _bcs(self, now: float) -> BCS:
        v = self.vehicle
        current = self._delivered_a()
        cell = min(40.95, v.terminal_voltage_v(current) / self.cells)
        since = self._charging_since
        after = self.knobs.cell_over_voltage_after_s
        if after is not None and since is not None and now - since >= after:
            cell = self.max_cell_voltage_v + 0.1
        accepted = v.accepted_current_a()
        remaining = 0 if accepted <= 0 else min(600, round(v.energy_wanted_kwh() / max(0.1, v.demand_kw()) * 60))
        return BCS(measured_voltage_v=round(v.terminal_voltage_v(current), 1), measured_current_a=round(current, 1),
                   max_cell_voltage_v=round(cell, 2), max_cell_group=1, soc_percent=min(100, int(v.soc * 100)),
                   remaining_min=remaining)

    def _bsm(self, now: float) -> BSM:
        return BSM(max_cell_number=7, max_temperature_c=32, max_temperature_probe=3, min_temperature_c=28,
                   min_temperature_probe=9,
                   charging=Permission.FORBIDDEN if self._paused(now) else Permission.ALLOWED)

    def _bsd(self) -> BSD:
        v = self.vehicle
        cell = v.ocv_v / self.cells
        return BSD(soc_percent=min(100, int(v.soc * 100)), min_cell_voltage_v=round(cell - 0.01, 2),
                   max_cell_voltage_v=round(cell + 0.01, 2), min_temperature_c=28, max_temperature_c=32)

    def _delivered_a(self) -> float:
        """What the charger says it delivers (CCS), which is what the pack receives."""
        return max(0.0, self._ccs.current_a) if self._ccs is not None and self.phase is Phase.CHARGING else 0.0

    def _paused(self, now: float) -> bool:
        k, since = self.knobs, self._charging_since
        if k.pause_after_s is None or since is None:
            return False
        return since + k.pause_after_s <= now < since + k.pause_after_s + k.pause_for_s

    def _silent(self, now: float) -> bool:
        k, start = self.knobs, self._started
        if k.silence_after_s is None or start is None or now < start + k.silence_after_s:
            return False
        return k.silence_for_s is None or now < start + k.silence_after_s + k.silence_for_s

    # ------------------------------------------------------------------ API

    def next_deadline(self) -> float | None:
        times = list(self._periodic.values()) + list(self._timers.values())
        tp = self.transport.next_deadline()
        if tp is not None:
            times.append(tp)
        if self._next_garbage is not None:
            times.append(self._next_garbage)
        return min(times) if times else None

    def receive(self, frame: Frame, now: float) -> list[dict[str, Any]]:
        """Process a frame from the charger; returns the log entries it produced."""
        if self._silent(now) or frame.source != CHARGER_ADDRESS or frame.destination != BMS_ADDRESS:
            return []
        if frame.pgn in (TP_CM_PGN, TP_DT_PGN):
            self.transport.receive(frame, now)
            return []
        cls = BY_PGN.get(frame.pgn)
        if cls is None or cls.SENDER is not Sender.CHARGER:
            return []
        try:
            msg = cls.decode(frame.data)
        except MalformedMessage as exc:
            self._note(now, "rejected", reason=str(exc))
            return self._take_log()
        self.record.charger_messages[msg.NAME] = self.record.charger_messages.get(msg.NAME, 0) + 1
        self._on_message(msg, now)
        return self._take_log()

    def _take_log(self) -> list[dict[str, Any]]:
        new = self.record.log[self._log_taken:]
        self._log_taken = len(self.record.log)
        return new

    def poll(self, now: float) -> tuple[list[Frame], list[dict[str, Any]]]:
        """Frames due now and the log entries produced since the last call."""
        return self._poll_frames(now), self._take_log()

    def _poll_frames(self, now: float) -> list[Frame]:
        self._step_plant(now)
        if self._started is not None and self._next_garbage is None and self.knobs.garbage_per_s > 0:
            self._next_garbage = now
        frames: list[Frame] = []
        self._run_timers(now)
        self._apply_schedule_rules(now)
        tp_frames, _ = self.transport.poll(now)
        frames += tp_frames
        for name, due in list(self._periodic.items()):
            if due <= now:
                if name not in self.knobs.never_sent:
                    frames += self._build(name, now)
                nxt = due + _PERIOD[name]
                self._periodic[name] = nxt if nxt > now else now + _PERIOD[name]
        tp_frames, _ = self.transport.poll(now)
        frames += tp_frames
        if self._next_garbage is not None and now >= self._next_garbage:
            frames.append(self._garbage())
            self._next_garbage = now + self._rng.expovariate(self.knobs.garbage_per_s)
        if self._silent(now):
            return []
        return frames

    # ------------------------------------------------------------------ internals

    def _note(self, now: float, event: str, **data: Any) -> None:
        self.record.log.append({"t": round(now, 4), "event": event, **data})

    def _goto(self, phase: Phase, now: float, **data: Any) -> None:
        if phase is not self.phase:
            self._note(now, "phase", old=self.phase.value, new=phase.value, soc=round(self.vehicle.soc, 4), **data)
        self.phase = phase

    def _step_plant(self, now: float) -> None:
        if self._last_step is not None and now > self._last_step and self.phase is Phase.CHARGING:
            self.vehicle.step(self._delivered_a(), now - self._last_step)
        self._last_step = now

    def _on_message(self, msg: Message, now: float) -> None:
        t = self.timeouts
        if isinstance(msg, CHM):
            if self.phase is Phase.WAIT_CHM and not self.knobs.legacy_2011:
                self._started = now if self._started is None else self._started
                self._goto(Phase.HANDSHAKE, now)
                self._periodic = {"BHM": now}
                self._timers = {"crm": now + t.crm_s}
        elif isinstance(msg, CRM):
            self._on_crm(msg, now)
        elif isinstance(msg, CML | CTS):
            if self.phase is Phase.CONFIG:
                self._goto(Phase.READY, now)
                self._periodic = {"BRO": now}
                self._timers = {}
                self._bro_ready_at = now + self.knobs.bro_delay_s
                self._bro_ready_sent = None
        elif isinstance(msg, CRO):
            if self.phase is Phase.READY:
                self._timers.pop("cro", None)
                if msg.ready == Ready.READY and self._bro_ready_sent is not None and not self._withdrawing(now):
                    self._start_charging(now)
                elif self.knobs.bro_withdraw_s is None:
                    self._periodic.pop("BRO", None)  # P1: after CRO, no more BRO
        elif isinstance(msg, CCS):
            if self.phase is Phase.CHARGING:
                self._ccs = msg
                self._timers["ccs"] = now + t.ccs_s
                self._periodic.setdefault("BSM", now)
        elif isinstance(msg, CST):
            self.cst = msg
            if self.phase in (Phase.CONFIG, Phase.READY, Phase.CHARGING, Phase.IDENTIFY):
                self._bst = BST(charger_stopped=State2.ON)
                self._goto(Phase.STOPPING, now, by="charger")
                self._periodic = {"BST": now}
                self._timers = {"bsd_start": now + 0.1, "csd": now + t.csd_s}
            elif self.phase is Phase.STOPPING and "bsd_start" not in self._timers:
                self._timers.pop("cst", None)
                self._timers["bsd_start"] = now + 0.1
        elif isinstance(msg, CSD):
            self.csd = msg
            if self.phase in (Phase.STATISTICS, Phase.STOPPING):
                self._goto(Phase.DONE, now, energy_kwh=msg.energy_kwh)
                self._periodic = {}
                self._timers = {}
        elif isinstance(msg, CEM):
            self.cem = msg
            if self.phase not in (Phase.DONE, Phase.WAIT_CHM):
                self._note(now, "cem", fields=msg.set_fields())
                self._goto(Phase.ERROR, now, by="charger")
                self._periodic = {}
                self._timers = {"restart": now + t.restart_wait_s}
                self.transport.reset()

    def _on_crm(self, crm: CRM, now: float) -> None:
        t = self.timeouts
        if crm.result == Ready.NOT_READY:
            restart = self.phase in (Phase.ERROR, Phase.CONFIG, Phase.READY, Phase.CHARGING)
            if self.phase in (Phase.HANDSHAKE, Phase.ERROR) or restart or (
                self.phase is Phase.WAIT_CHM and self.knobs.legacy_2011
            ):
                if restart:
                    self.record.restarts += 1
                self._started = now if self._started is None else self._started
                self._goto(Phase.IDENTIFY, now)
                self.transport.reset()
                self._periodic = {"BRM": now}
                self._timers = {"crm_aa": now + t.crm_aa_s}
        elif crm.result == Ready.READY and self.phase is Phase.IDENTIFY:
            self._goto(Phase.CONFIG, now)
            self._periodic = {"BCP": now}
            self._timers = {"cml": now + t.cml_s}

    def _withdrawing(self, now: float) -> bool:
        w = self.knobs.bro_withdraw_s
        sent = self._bro_ready_sent
        return w is not None and sent is not None and sent < now < sent + w + 1e-9

    def _start_charging(self, now: float) -> None:
        self._goto(Phase.CHARGING, now)
        self._charging_since = now
        self._periodic = {"BCL": now, "BCS": now}
        self._timers = {"ccs": now + self.timeouts.ccs_s}
        if self.knobs.bst_reason is not None:
            self._timers["bst_fault"] = now + self.knobs.bst_after_s

    def _stop(self, bst: BST, now: float, why: str) -> None:
        self._bst = bst
        self._goto(Phase.STOPPING, now, by="vehicle", reason=why)
        self._periodic = {"BST": now}
        self._timers = {"cst": now + self.timeouts.cst_s, "csd": now + self.timeouts.csd_s}

    def _fail(self, field_name: str, now: float) -> None:
        self._bem = BEM(**{field_name: State2.ON})
        self._note(now, "bem", field=field_name)
        self._goto(Phase.ERROR, now, by="vehicle")
        self.transport.reset()
        self._periodic = {"BEM": now}
        self._timers = {"restart": now + self.timeouts.restart_wait_s}

    def _run_timers(self, now: float) -> None:
        for name, deadline in sorted(self._timers.items(), key=lambda kv: kv[1]):
            if deadline > now or name not in self._timers:
                continue
            del self._timers[name]
            if name == "crm":
                self._fail("crm_00_timeout", now)
            elif name == "crm_aa":
                self._fail("crm_aa_timeout", now)
            elif name == "cml":
                self._fail("cts_cml_timeout", now)
            elif name in ("cro", "cro_aa"):
                self._fail("cro_timeout", now)
            elif name == "ccs":
                self._fail("ccs_timeout", now)
            elif name == "cst":
                self._fail("cst_timeout", now)
            elif name == "csd":
                self._fail("csd_timeout", now)
            elif name == "bsd_start":
                self._goto(Phase.STATISTICS, now)
                self._periodic = {"BSD": now}
            elif name == "bst_fault":
                reason = self.knobs.bst_reason
                assert reason is not None
                self._stop(BST(**{reason: State2.ON}), now, reason)
            elif name == "restart":
                self._goto(Phase.DONE, now, by="no CRM after error")
                self._periodic = {}
            break  # one per poll keeps the order obvious; the caller polls again at next_deadline()

    def _apply_schedule_rules(self, now: float) -> None:
        """Rules that depend on time rather than a message: BRO readiness, full battery."""
        if self.phase is Phase.READY and now >= self._bro_ready_at and self._bro_ready_sent is None:
            self._bro_ready_sent = now
            self._timers = {"cro": now + self.timeouts.cro_s, "cro_aa": now + self.timeouts.cro_aa_s}
            self._periodic["BRO"] = now
        if self.phase is Phase.CHARGING and self.vehicle.full:
            self._stop(BST(soc_reached=State2.ON), now, "soc_reached")

    def _build(self, name: str, now: float) -> list[Frame]:
        if name == "BHM":
            return [BHM(max_voltage_v=self.vehicle.spec.max_voltage_v).frame()]
        if name == "BRM":
            return self._send_tp(BRM.PGN, self._brm_payload(), now)
        if name == "BCP":
            return self._send_tp(BCP.PGN, self._bcp().encode(), now)
        if name == "BRO":
            ready = Ready.READY if self._bro_ready_sent is not None and not self._withdrawing(now) else Ready.NOT_READY
            return [BRO(ready=ready).frame()]
        if name == "BCL":
            return [self._bcl().frame()]
        if name == "BCS":
            return self._send_tp(BCS.PGN, self._bcs(now).encode(), now)
        if name == "BSM":
            return [self._bsm(now).frame()]
        if name == "BST":
            return [(self._bst or BST()).frame()]
        if name == "BSD":
            return [self._bsd().frame()]
        return [(self._bem or BEM()).frame()]

    def _send_tp(self, pgn: int, data: bytes, now: float) -> list[Frame]:
        if len(data) <= 8:  # a malformed short BRM still has to go out somehow: as one frame
            return [Frame(make_id(7, pgn, CHARGER_ADDRESS, BMS_ADDRESS), data)]
        if not self.transport.send(pgn, data, now):
            self._note(now, "tp-busy", pgn=pgn)
        return []

    def _garbage(self) -> Frame:
        """An invalid frame: a known BMS PGN with a wrong length, a charger PGN from the BMS, an unknown
        PGN, or a frame for another node. None of them can be mistaken for a valid message."""
        rng = self._rng
        kind = rng.randrange(4)
        if kind == 0:
            cls: type[Message] = rng.choice([BHM, BRO, BCL, BSM, BST, BSD, BEM])
            lo = cls.LENGTHS[0]
            n = rng.choice([k for k in range(0, 9) if k != lo])
            return Frame(make_id(cls.PRIORITY, cls.PGN, CHARGER_ADDRESS, BMS_ADDRESS), rng.randbytes(n))
        if kind == 1:
            cls = rng.choice([CHM, CRM, CML, CRO, CCS, CST, CSD, CEM])
            return Frame(make_id(cls.PRIORITY, cls.PGN, CHARGER_ADDRESS, BMS_ADDRESS),
                         rng.randbytes(cls.LENGTHS[1]))
        if kind == 2:
            pf = rng.choice([0x30, 0x42, 0x77, 0x99, 0xA5, 0xD0])
            return Frame(make_id(6, pf << 8, CHARGER_ADDRESS, BMS_ADDRESS), rng.randbytes(rng.randrange(9)))
        return Frame(make_id(6, 0x7000, BMS_ADDRESS, 0xB5), rng.randbytes(3))
