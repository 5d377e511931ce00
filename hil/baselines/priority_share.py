"""OpenEMS (``OpenEMS/openems``): the EV-charger cluster for peak shaving (``io.openems.edge.evcs.cluster``,
``EvcsClusterPeakShavingImpl``) plus the separate battery peak-shaving controller
(``io.openems.edge.controller.symmetric.peakshaving``), as their sources describe them. One core cycle
every 1000 ms; both read the *measured* grid power at the start of the cycle, so both act one cycle late.

Battery peak shaving (a controller of its own, knowing nothing of the chargers):

* net load = measured grid + measured battery power;
* net load >= peak-shaving power: discharge ``net - peak``; net load <= recharge power: charge
  ``recharge - net``; in between the battery is idle. The battery's own limits clip the setpoint;
* the setpoint goes through the battery's PID filter (``setActivePowerEqualsWithPid``, OpenEMS's
  ``PidFilter`` with its defaults P 0.3, I 0.3, D 0.1 on the battery's measured power).

EV cluster (runs after the controllers, in the same cycle):

* power to distribute = measured charger power + battery discharge still available (its maximum now minus
  what it delivers now) + grid headroom (limit - measured grid); if the grid is already over its limit,
  the last total is cut by the excess instead;
* chargers in configured order (here: the gun's ``priority``, then station order). Every charging station
  first reserves a minimum guarantee (4.5 kW in the peak-shaving cluster) if that still fits, else it gets
  0; a just-plugged station gets only the guarantee as its initial charge. Then, in order, each station
  takes its guarantee plus what is left, reserving only the power its vehicle can take now (its
  "maximum power"), and its limit is set to the charger's full rating while power is left over;
* a rising limit goes through OpenEMS's ramp filter: at most 5 % of the charger's maximum power above
  what it draws now (``RampFilter.DEFAULT_INCREASE_RATE``);
* a charger takes a new limit in ``getMinimumTimeTillChargingLimitTaken`` (10 s in OpenEMS's DC charger
  driver); while any charger is inside that pause the cluster waits and changes nothing, unless the grid
  is over its limit. During an increase pause a further increase is allowed, a decrease at once; during a
  decrease pause an increase is refused (the last limit stays).

No V2G (OpenEMS has no EV discharge) and no dispatch-target tracking; the import cap in force is the
peak-shaving power and the cluster's grid limit (as an operator would set them through OpenEMS's API).
Values OpenEMS needs that the observation lacks: the battery's measured power is taken as the setpoint
sent last cycle (the PCS follows it within a fraction of a second).
"""

from __future__ import annotations

import enum
import math

import numpy as np

from hil.baselines.common import StationArrays
from station.config import StationConfig
from station.control.observation import Decision, Observation


class ChargeState(enum.IntEnum):
    CHARGING = 0
    INCREASING = 1
    DECREASING = 2


class PidFilter:
    """OpenEMS's ``io.openems.edge.common.filter.PidFilter``: the next setpoint from the measured value and
    the target, with the output (and the integral term) clipped to the device's limits."""

    def __init__(self, p: float = 0.3, i: float = 0.3, d: float = 0.1) -> None:
        self.p, self.i, self.d = p, i, d
        self.error_sum = 0.0
        self.last_input: float | None = None

    def apply(self, measured: float, target: float, low: float, high: float) -> float:
        target = min(max(target, low), high)
        error = target - measured
        if error == 0.0:
            return target
        if self.last_input is None:
            self.last_input = measured
        out_i = min(max(self.i * self.error_sum, low), high)
        out_d = -self.d * (measured - self.last_input)
        self.last_input = measured
        self.error_sum += error
        return min(max(self.p * error + out_i + out_d, low), high)


class PriorityShare:
    name = "priority-share"
    cycle_s = 1.0
    min_guarantee_kw = 4.5  # EvcsClusterPeakShavingImpl.MINIMUM_CHARGE_POWER_GUARANTEE
    limit_taken_s = 10.0  # getMinimumTimeTillChargingLimitTaken of OpenEMS's DC charger driver
    increase_buffer_kw = 0.05  # WriteHandler.DEFAULT_INCREASE_BUFFER
    ramp_filter_rate = 0.05  # RampFilter.DEFAULT_INCREASE_RATE, of the charger's maximum power per write
    # recharge below this share of the peak-shaving power (a configuration choice: OpenEMS leaves it to the
    # operator; close to the peak keeps the battery full for the next one without fighting the chargers)
    recharge_fraction = 0.9

    def __init__(self, cfg: StationConfig) -> None:
        self.st = StationArrays.of(cfg)
        n = len(cfg.guns())
        self.order = np.lexsort((np.arange(n), self.st.priority))  # configured order: priority, then station
        self.has_bess = cfg.bess is not None
        self.target_ac = np.zeros(n)  # limit last written to each charger (AC kW, OpenEMS works at the meter)
        self.state = np.full(n, ChargeState.CHARGING, dtype=np.int64)
        self.pause_until = np.full(n, -math.inf)
        self.last_total_kw: float | None = None
        self.bess_kw = 0.0  # last setpoint = the battery's power now
        self.bess_pid = PidFilter()
        self.next_cycle_s = -math.inf

    def decide(self, obs: Observation) -> Decision:
        if obs.t_s >= self.next_cycle_s - 1e-9:
            self.next_cycle_s = obs.t_s + self.cycle_s
            self._cycle(obs)
        limit_dc = self.target_ac * self.st.efficiency
        return self.st.decision(obs, self.st.deliverable_kw(obs, limit_dc), self.bess_kw)

    # ---- one OpenEMS cycle ------------------------------------------------------------------------------------

    def _cycle(self, obs: Observation) -> None:
        t = obs.t_s
        unplugged = ~obs.connected  # a charger without a vehicle drops its limit and its pause
        self.target_ac[unplugged] = 0.0
        self.state[unplugged] = ChargeState.CHARGING
        self.pause_until[unplugged] = -math.inf
        grid = obs.grid_measured_kw if not math.isnan(obs.grid_measured_kw) else obs.aux_load_kw
        limit = self.st.aim_kw(obs.import_cap_kw)
        bess_now = self._bess_now(obs)
        max_discharge = obs.bess_max_discharge_kw if self._bess_usable(obs) else 0.0
        self.bess_kw = self._peak_shaving(obs, grid + bess_now, bess_now, limit)
        self._cluster(obs, t, grid, limit, bess_now, max_discharge)
        for g in range(len(self.state)):  # setChargeStatus: back to CHARGING once the pause is over
            if t >= self.pause_until[g]:
                self.state[g] = ChargeState.CHARGING

    def _bess_usable(self, obs: Observation) -> bool:
        return self.has_bess and obs.bess_available and not math.isnan(obs.bess_soc)

    def _bess_now(self, obs: Observation) -> float:
        if not self._bess_usable(obs):
            return 0.0
        return min(max(self.bess_kw, -obs.bess_max_charge_kw), obs.bess_max_discharge_kw)

    def _peak_shaving(self, obs: Observation, net_kw: float, bess_now: float, peak_kw: float) -> float:
        if not self._bess_usable(obs) or not math.isfinite(peak_kw):
            return 0.0
        if net_kw >= peak_kw:
            setpoint = net_kw - peak_kw
        elif net_kw <= self.recharge_fraction * peak_kw:
            setpoint = net_kw - self.recharge_fraction * peak_kw
        else:
            return 0.0  # no setpoint from the controller: the battery idles
        return self.bess_pid.apply(bess_now, setpoint, -obs.bess_max_charge_kw, obs.bess_max_discharge_kw)

    def _cluster(self, obs: Observation, t: float, grid: float, limit: float, bess_now: float,
                 max_discharge: float) -> None:
        eff = self.st.efficiency
        on = obs.connected
        measured_ac = np.where(on, np.nan_to_num(obs.measured_kw) / eff, 0.0)
        headroom = limit - grid
        busy = bool(np.any(self.state[on] != ChargeState.CHARGING))
        if busy and headroom >= 0.0:
            return  # awaitLastChanges: the chargers are still taking their last limits
        total = float(measured_ac.sum()) + (max_discharge - bess_now) + headroom
        if headroom < 0.0 and self.last_total_kw is not None:
            total = self.last_total_kw + headroom
        total = max(total, 0.0)
        self.last_total_kw = total
        rating_ac = self.st.gun_now_kw(obs) / eff
        takes_ac = np.minimum(np.maximum(obs.demand_kw, 0.0), self.st.session_max_kw(obs)) / eff
        g_min = self.min_guarantee_kw
        left = total
        initial = 0.0
        active = []
        new = np.zeros_like(self.target_ac)
        for g in self.order:
            if not on[g]:
                continue
            if self.target_ac[g] <= 0.0:  # READY_FOR_CHARGING: an initial charge at the guarantee, if it fits
                if total - initial - measured_ac.sum() >= g_min:
                    new[g] = g_min
                    initial += g_min
                left -= g_min
            elif left - g_min >= 0.0:  # CHARGING: reserve the guarantee
                left -= g_min
                active.append(g)
        for g in active:
            power_left = left + g_min
            if takes_ac[g] < power_left:
                left -= takes_ac[g] - g_min
                new[g] = rating_ac[g]
            else:
                new[g] = power_left
                left = 0.0
            step = self.ramp_filter_rate * self.st.gun_max_kw[g] / eff[g]
            if new[g] > measured_ac[g]:  # setChargePowerLimitWithFilter
                new[g] = min(new[g], measured_ac[g] + step)
        self._write(new, on, t)

    def _write(self, new: np.ndarray, on: np.ndarray, t: float) -> None:
        """The chargers' write handler: a change starts a pause; a refused change keeps the last limit."""
        for g in np.flatnonzero(on):
            last = self.target_ac[g]
            if new[g] > last + self.increase_buffer_kw:
                accepted = self._request(g, ChargeState.INCREASING, t)
            elif new[g] < last - self.increase_buffer_kw:
                accepted = self._request(g, ChargeState.DECREASING, t)
            else:
                accepted = True
            self.target_ac[g] = new[g] if accepted else last

    def _request(self, g: int, wanted: ChargeState, t: float) -> bool:
        """ChargeStateHandler.applyNewChargeState for an increase or a decrease."""
        if self.state[g] == ChargeState.INCREASING and wanted == ChargeState.DECREASING:
            self.state[g] = wanted
            self.pause_until[g] = t + self.limit_taken_s
            return True
        if t >= self.pause_until[g]:
            self.state[g] = wanted
            self.pause_until[g] = t + self.limit_taken_s
            return True
        return bool(self.state[g] == wanted)
