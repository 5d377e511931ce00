"""Uncontrolled charging (acnportal's ``UncontrolledCharging``): every vehicle gets what it asks for,
within its gun's rating and its own BCP maximum, ignoring the grid cap - what a site without power
sharing would draw, i.e. what the cap prevents. The BESS stays idle, no V2G."""

from __future__ import annotations

import math

import numpy as np

from hil.baselines.common import StationArrays
from station.config import StationConfig
from station.control.observation import Decision, Observation


class Uncontrolled:
    name = "uncontrolled"

    def __init__(self, cfg: StationConfig) -> None:
        self.st = StationArrays.of(cfg)

    def decide(self, obs: Observation) -> Decision:
        return self.st.decision(obs, self.st.deliverable_kw(obs, np.full(obs.n_guns, math.inf)))
