"""Every transition of the charger-side session lives in this one table (h11's rule 1).

:class:`~drivers.gbt27930.session.ChargerSession` decides *which trigger* an input or a timer produces and
then asks :func:`target` where that trigger leads from the current phase; a trigger the table does not
list for the phase is ignored (recorded, never an exception). ``docs/gbt27930-states.*`` is rendered
from :data:`TRANSITIONS` by ``python -m drivers.gbt27930.diagram``, so the diagram cannot drift.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass


class Phase(enum.Enum):
    IDLE = "idle"  # not started (plug not connected / not authorised)
    HANDSHAKE = "handshake"  # CHM every 250 ms, waiting for BHM
    INSULATION = "insulation"  # caller runs the insulation check; CHM continues
    IDENTIFY = "identify"  # CRM(0x00) every 250 ms, waiting for BRM
    AWAIT_BCP = "await-bcp"  # CRM(0xAA), waiting for BCP
    AWAIT_BRO = "await-bro"  # CTS/CML, waiting for BRO(0xAA)
    PRECHARGE = "precharge"  # CRO(0x00); caller matches the output to the battery voltage
    OUTPUT_READY = "output-ready"  # CRO(0xAA), waiting for BCL and BCS
    CHARGING = "charging"  # CCS every 50 ms, output follows BCL
    PAUSED = "paused"  # BSM "charging not allowed": output held at zero, CCS continues
    STOPPING = "stopping"  # CST every 10 ms, waiting for BST/BSD
    STATISTICS = "statistics"  # CSD every 250 ms
    ERROR = "error"  # CEM every 250 ms, then retry from IDENTIFY or end
    ENDED = "ended"


class Trigger(enum.Enum):
    START = "start"
    BHM = "BHM received"
    BHM_TIMEOUT = "no BHM (2011 vehicle)"
    INSULATION_OK = "insulation OK"
    BRM = "BRM received"
    BCP = "BCP received"
    BRO_READY = "BRO 0xAA"
    BRO_WITHDRAWN = "BRO 0x00 after 0xAA"
    PRECHARGE_OK = "precharge OK"
    BCL_AND_BCS = "BCL and BCS received"
    BSM_PAUSE = "BSM not allowed"
    BSM_RESUME = "BSM allowed"
    PAUSE_TIMEOUT = "paused too long (10 min)"
    TIMEOUT = "vehicle timeout"
    BEM = "BEM received"
    BST = "BST received"
    OPERATOR_STOP = "operator stop"
    CHARGER_FAULT = "charger fault"
    VEHICLE_FAULT = "vehicle fault"
    PROTOCOL_ERROR = "vehicle protocol error"
    INCOMPATIBLE = "incompatible"
    BSD = "BSD received"
    STATISTICS_DONE = "CSD sent"
    RETRY = "retry (at most 3)"
    GIVE_UP = "no retry left / not retryable"


@dataclass(frozen=True)
class Transition:
    sources: frozenset[Phase]
    trigger: Trigger
    target: Phase


P = Phase
T = Trigger

PRE_ENERGY = frozenset({P.HANDSHAKE, P.INSULATION, P.IDENTIFY, P.AWAIT_BCP, P.AWAIT_BRO})
ENERGY = frozenset({P.PRECHARGE, P.OUTPUT_READY, P.CHARGING, P.PAUSED})
RUNNING = PRE_ENERGY | ENERGY
# Phases in which the charger output is connected to the battery: leaving them for a phase not in FLOWING
# emits "stop output now" (so does every move from RUNNING into STOPPING or ERROR).
ENERGIZED = frozenset({P.PRECHARGE, P.OUTPUT_READY, P.CHARGING, P.PAUSED})
FLOWING = frozenset({P.PRECHARGE, P.OUTPUT_READY, P.CHARGING})
# Phases with a vehicle message timer (reference §3.2); handshake falls back to 2011 instead, and the
# insulation check and precharge wait on the charger's own hardware.
WAITING_ON_VEHICLE = frozenset({P.IDENTIFY, P.AWAIT_BCP, P.AWAIT_BRO, P.OUTPUT_READY, P.CHARGING, P.PAUSED})


def _row(sources: Iterable[Phase] | Phase, trigger: Trigger, target: Phase) -> Transition:
    src = frozenset([sources]) if isinstance(sources, Phase) else frozenset(sources)
    return Transition(src, trigger, target)


TRANSITIONS: tuple[Transition, ...] = (
    _row(P.IDLE, T.START, P.HANDSHAKE),
    _row(P.HANDSHAKE, T.BHM, P.INSULATION),
    _row(P.HANDSHAKE, T.BHM_TIMEOUT, P.INSULATION),
    _row(P.INSULATION, T.INSULATION_OK, P.IDENTIFY),
    _row(P.IDENTIFY, T.BRM, P.AWAIT_BCP),
    _row(P.AWAIT_BCP, T.BCP, P.AWAIT_BRO),
    _row(P.AWAIT_BRO, T.BRO_READY, P.PRECHARGE),
    _row({P.PRECHARGE, P.OUTPUT_READY}, T.BRO_WITHDRAWN, P.AWAIT_BRO),  # before the first BCL: not ready after all
    _row(P.PRECHARGE, T.PRECHARGE_OK, P.OUTPUT_READY),
    _row(P.OUTPUT_READY, T.BCL_AND_BCS, P.CHARGING),
    _row(P.CHARGING, T.BSM_PAUSE, P.PAUSED),
    _row(P.PAUSED, T.BSM_RESUME, P.CHARGING),
    _row(P.PAUSED, T.PAUSE_TIMEOUT, P.STOPPING),
    # recoverable communication faults: CEM, then restart from identification (at most 3 times)
    _row(WAITING_ON_VEHICLE, T.TIMEOUT, P.ERROR),
    _row(RUNNING - {P.HANDSHAKE, P.INSULATION}, T.BEM, P.ERROR),
    # every other end goes through CST -> BST -> BSD/CSD
    _row(RUNNING, T.BST, P.STOPPING),
    _row(RUNNING, T.OPERATOR_STOP, P.STOPPING),
    _row(RUNNING, T.CHARGER_FAULT, P.STOPPING),
    _row(RUNNING, T.VEHICLE_FAULT, P.STOPPING),
    _row(RUNNING, T.PROTOCOL_ERROR, P.STOPPING),
    _row(RUNNING, T.INCOMPATIBLE, P.STOPPING),
    _row(P.STOPPING, T.BSD, P.STATISTICS),
    _row(P.STOPPING, T.TIMEOUT, P.ERROR),
    _row(P.STOPPING, T.BEM, P.ERROR),  # the vehicle never heard our CST/CSD: no BSD will come
    _row(P.STATISTICS, T.STATISTICS_DONE, P.ENDED),
    _row(P.ERROR, T.RETRY, P.IDENTIFY),
    _row(P.ERROR, T.GIVE_UP, P.ENDED),
    _row(P.ERROR, T.OPERATOR_STOP, P.ENDED),
    _row(P.ERROR, T.CHARGER_FAULT, P.ENDED),
)


def _index(rows: Iterable[Transition]) -> Mapping[tuple[Phase, Trigger], Phase]:
    table: dict[tuple[Phase, Trigger], Phase] = {}
    for row in rows:
        for src in row.sources:
            key = (src, row.trigger)
            if key in table:
                raise AssertionError(f"two transitions for {src.name} on {row.trigger.name}")
            table[key] = row.target
    return table


TABLE: Mapping[tuple[Phase, Trigger], Phase] = _index(TRANSITIONS)


def target(phase: Phase, trigger: Trigger) -> Phase | None:
    """Where ``trigger`` leads from ``phase``; None if the table has no such transition."""
    return TABLE.get((phase, trigger))
