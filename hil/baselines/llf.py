"""acnportal's least-laxity-first (``acnportal/algorithms/sorted_algorithms.py``: ``SortedSchedulingAlgo``
with ``least_laxity_first``), as the Caltech ACN simulator runs it, with the grid import cap as the only
infrastructure constraint:

* every period (here every call) the active sessions are sorted by laxity
  ``(departure - now) - energy still wanted / max rate``, where the max rate is the station's (gun's)
  maximum, as acnportal divides by ``max_pilot_signal``;
* in that order each session gets its maximum feasible rate: at most its upper bound ``min(session max
  rate, energy still wanted over one period)`` and at most what the cap leaves after the sessions before it;
* the session max rate is the gun's and the vehicle's maximum (acnportal's ``enforce_pilot_limit``); the
  optional max-rate estimator (``estimate_max_rate``, off by default) is not used, so the algorithm does
  not see the CC-CV taper, and power a tapering vehicle does not draw is not given to the next one.

acnportal has no battery storage and rejects negative rates (no V2G): the BESS stays idle. A session
whose departure is unknown sorts last (infinite laxity); one whose wanted energy is unknown is taken as
needing nothing more than its time to departure.
"""

from __future__ import annotations

import numpy as np

from hil.baselines.common import StationArrays
from station.config import StationConfig
from station.control.observation import Decision, Observation


class LeastLaxityFirst:
    name = "llf"

    def __init__(self, cfg: StationConfig) -> None:
        self.st = StationArrays.of(cfg)

    def laxity_s(self, obs: Observation) -> np.ndarray:
        wanted = np.nan_to_num(obs.energy_wanted_kwh, nan=0.0)
        to_go = np.where(np.isnan(obs.departure_s), np.inf, obs.departure_s - obs.t_s)
        return to_go - wanted * 3600.0 / self.st.gun_max_kw

    def decide(self, obs: Observation) -> Decision:
        eff = self.st.efficiency
        wanted = np.nan_to_num(obs.energy_wanted_kwh, nan=np.inf)
        upper = np.minimum(self.st.session_max_kw(obs), np.maximum(wanted, 0.0) * 3600.0 / obs.dt_s)
        left = self.st.budget_kw(obs)
        rate = np.zeros(obs.n_guns)
        lax = self.laxity_s(obs)
        for g in np.lexsort((np.arange(obs.n_guns), lax)):
            if not obs.connected[g]:
                continue
            rate[g] = min(upper[g], left * eff[g])
            left -= rate[g] / eff[g]
        return self.st.decision(obs, self.st.deliverable_kw(obs, rate))
