"""The peers' power-sharing policies, implemented as their projects describe them
(``../shared/reference/peers.md``, docs/baselines.md), for ``station-hil sim --policy`` and
``station-hil compare``.

Each is a class ``(cfg: StationConfig)`` implementing ``station.control.observation.Policy``: it decides
gun and BESS power only (``Decision.module_gun`` is None) and the simulator switches the modules for it
with the same module layer ours uses, so every policy is bounded by the same hardware.
"""

from __future__ import annotations

from hil.baselines.equal_share import EqualShare
from hil.baselines.llf import LeastLaxityFirst
from hil.baselines.priority_share import PriorityShare
from hil.baselines.uncontrolled import Uncontrolled

POLICIES: dict[str, type] = {
    EqualShare.name: EqualShare,
    PriorityShare.name: PriorityShare,
    LeastLaxityFirst.name: LeastLaxityFirst,
    Uncontrolled.name: Uncontrolled,
}

__all__ = ["POLICIES", "EqualShare", "LeastLaxityFirst", "PriorityShare", "Uncontrolled"]
