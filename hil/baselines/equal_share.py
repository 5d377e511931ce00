"""EVerest's energy manager (``EVerest/everest-core``, ``modules/EnergyManager``), as its documentation and
broker describe it:

* it runs every ``update_interval`` = 1 s; between runs the chargers keep the last limits it enforced;
* when the children's requests exceed the parent node's limit, the power is shared **equally**, no node
  above its own limits (its brokers buy equal slices in turn until the root limit or their own limit is
  reached - an equal split where what a capped node cannot take goes to the others);
* the limits a leaf requests are its hardware and session limits, not what the vehicle draws now: "it does
  not redistribute unused power when the actual consumption is below the assigned target value", and it
  "does not account for real-time power meter readings";
* there is no battery (BESS) coordination and no grid-level target tracking: the BESS stays idle, the
  import cap in force is the root limit (an external limit, as OCPP or the API would set it), and the
  ``priority`` of a node is ignored.
"""

from __future__ import annotations

import math

import numpy as np

from hil.baselines.common import StationArrays, water_fill
from station.config import StationConfig
from station.control.observation import Decision, Observation


class EqualShare:
    name = "equal-share"
    update_interval_s = 1.0

    def __init__(self, cfg: StationConfig) -> None:
        self.st = StationArrays.of(cfg)
        self.limit_kw = np.zeros(len(cfg.guns()))  # DC limits enforced at the last update
        self.next_update_s = -math.inf

    def decide(self, obs: Observation) -> Decision:
        if obs.t_s >= self.next_update_s - 1e-9:
            self.next_update_s = obs.t_s + self.update_interval_s
            self.limit_kw = self._share(obs)
        return self.st.decision(obs, self.st.deliverable_kw(obs, self.limit_kw))

    def _share(self, obs: Observation) -> np.ndarray:
        """Equal AC shares of the site budget, each at most the leaf's own limit (gun and vehicle maxima)."""
        eff = self.st.efficiency
        leaf_ac = self.st.session_max_kw(obs) / eff
        return water_fill(self.st.budget_kw(obs), leaf_ac) * eff
