"""Whose fault was it: every end of a charger session carries a :class:`StopReason` for the audit log.

The classes mirror h11's local/remote protocol errors, split the way an incident review needs them:

============================  ===================================================================
``vehicle_protocol``          the vehicle broke the protocol (malformed or contradictory messages)
``vehicle_timeout``           the vehicle went silent (CEM sent; retried up to 3 times)
``vehicle_fault``             the vehicle reported or showed a fault (BST fault bits, BSM alarm,
                              cell voltage above its own limit, battery voltage implausible)
``vehicle_done``              the vehicle ended normally (BST: SoC / voltage target reached)
``charger_fault``             our side failed (insulation, precharge, hardware, BEM: the vehicle
                              timed out on *our* messages, BST "current too high")
``operator``                  an operator / the charging service stopped the session
``incompatible``              nobody's fault: the vehicle's range and the charger's do not overlap
============================  ===================================================================

``gbt_codes`` lists the GB/T fields involved ("CEM SPN3925 bcl_timeout", "BST SPN3512 insulation_fault").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from drivers.gbt27930.messages import BEM, BST, BST_ERRORS, BST_FAULTS, BST_TARGETS, CEM, CST, State2


class Attribution(enum.Enum):
    VEHICLE_PROTOCOL = "vehicle_protocol"
    VEHICLE_TIMEOUT = "vehicle_timeout"
    VEHICLE_FAULT = "vehicle_fault"
    VEHICLE_DONE = "vehicle_done"
    CHARGER_FAULT = "charger_fault"
    OPERATOR = "operator"
    INCOMPATIBLE = "incompatible"

    @property
    def is_error(self) -> bool:
        return self not in (Attribution.VEHICLE_DONE, Attribution.OPERATOR)


@dataclass(frozen=True)
class StopReason:
    """Why a session stopped (or restarted), with the GB/T codes sent and received."""

    attribution: Attribution
    code: str  # stable machine-readable cause, e.g. "bcl_timeout", "bst:insulation_fault", "manual"
    detail: str  # one sentence for a human
    at: float
    phase: str  # the phase in which the rule fired
    gbt_codes: tuple[str, ...] = ()
    retryable: bool = False

    def as_dict(self) -> dict[str, object]:
        return {
            "attribution": self.attribution.value,
            "code": self.code,
            "detail": self.detail,
            "at": self.at,
            "phase": self.phase,
            "gbt_codes": list(self.gbt_codes),
            "retryable": self.retryable,
        }


class ChargerStop(enum.Enum):
    """Why the controller stops a session; each maps to the CST bits it sends (SPN3521-3523)."""

    OPERATOR = "manual"  # manual stop / remote stop / payment ended
    CONDITIONS_REACHED = "conditions_reached"  # the charger's own stop conditions (energy, time, cost)
    OVER_TEMPERATURE = "over_temperature"
    CONNECTOR_FAULT = "connector_fault"
    INTERNAL_OVER_TEMPERATURE = "internal_over_temperature"
    ENERGY_UNAVAILABLE = "energy_unavailable"
    EMERGENCY_STOP = "emergency_stop"
    CURRENT_MISMATCH = "current_mismatch"
    VOLTAGE_ABNORMAL = "voltage_abnormal"
    OTHER_FAULT = "other_fault"

    @property
    def attribution(self) -> Attribution:
        if self in (ChargerStop.OPERATOR, ChargerStop.CONDITIONS_REACHED):
            return Attribution.OPERATOR
        return Attribution.CHARGER_FAULT

    def cst(self) -> CST:
        if self is ChargerStop.OPERATOR:
            return CST(manual_stop=State2.ON)
        if self is ChargerStop.CONDITIONS_REACHED:
            return CST(conditions_reached=State2.ON)
        return CST(fault_stop=State2.ON, **{self.value: State2.ON})

    def gbt_code(self) -> str:
        spn = "SPN3521" if self in (ChargerStop.OPERATOR, ChargerStop.CONDITIONS_REACHED) else "SPN3522"
        if self in (ChargerStop.CURRENT_MISMATCH, ChargerStop.VOLTAGE_ABNORMAL):
            spn = "SPN3523"
        return f"CST {spn} {self.value}"


# CST sent for stops the vehicle side caused
CST_BMS_STOPPED = CST(bms_stopped=State2.ON)
CST_VEHICLE_FAULT = CST(fault_stop=State2.ON, other_fault=State2.ON)
CST_VOLTAGE_ABNORMAL = CST(fault_stop=State2.ON, voltage_abnormal=State2.ON)
CST_ENERGY_UNAVAILABLE = CST(fault_stop=State2.ON, energy_unavailable=State2.ON)

_BST_SPN = {name: "SPN3511" for name in (*BST_TARGETS, "charger_stopped")}
_BST_SPN.update({name: "SPN3512" for name in BST_FAULTS})
_BST_SPN.update({name: "SPN3513" for name in BST_ERRORS})


def classify_bst(bst: BST, cst_sent: bool) -> tuple[Attribution, str, tuple[str, ...]]:
    """Attribution, code and GB/T codes of a BST the vehicle sent.

    Fault bits win over target bits (a vehicle that reports both stopped because of the fault). BST error
    bits (SPN3513: current above demand, voltage abnormal) describe what the vehicle saw *our output* do,
    so they are charger faults. "Charger stopped" without our CST is a contradiction.
    """
    set_fields = bst.set_fields()
    codes = tuple(f"BST {_BST_SPN[n]} {n}" for n in set_fields)
    faults = [n for n in set_fields if n in BST_FAULTS]
    errors = [n for n in set_fields if n in BST_ERRORS]
    targets = [n for n in set_fields if n in BST_TARGETS]
    if faults:
        return Attribution.VEHICLE_FAULT, "bst:" + "+".join(faults), codes
    if errors:
        return Attribution.CHARGER_FAULT, "bst:" + "+".join(errors), codes
    if targets:
        return Attribution.VEHICLE_DONE, "bst:" + "+".join(targets), codes
    if "charger_stopped" in set_fields:
        if cst_sent:
            return Attribution.VEHICLE_DONE, "bst:charger_stopped", codes
        return Attribution.VEHICLE_PROTOCOL, "bst:charger_stopped_without_cst", codes
    return Attribution.VEHICLE_PROTOCOL, "bst:no_reason", codes


_BEM_SPN = {
    "crm_00_timeout": "SPN3901", "crm_aa_timeout": "SPN3902", "cts_cml_timeout": "SPN3903",
    "cro_timeout": "SPN3904", "ccs_timeout": "SPN3905", "cst_timeout": "SPN3906", "csd_timeout": "SPN3907",
}


def bem_codes(bem: BEM) -> tuple[str, ...]:
    return tuple(f"BEM {_BEM_SPN[n]} {n}" for n in bem.set_fields())


_CEM_SPN = {
    "brm_timeout": "SPN3921", "bcp_timeout": "SPN3922", "bro_timeout": "SPN3923", "bcs_timeout": "SPN3924",
    "bcl_timeout": "SPN3925", "bst_timeout": "SPN3926", "bsd_timeout": "SPN3927",
}


def cem_for(timeout_field: str) -> tuple[CEM, str]:
    """The CEM to send for a timeout on ``timeout_field`` (e.g. "bcl_timeout") and its GB/T code."""
    return CEM(**{timeout_field: State2.ON}), f"CEM {_CEM_SPN[timeout_field]} {timeout_field}"
