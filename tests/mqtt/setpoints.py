"""Building dispatch messages in tests, the way an operator's platform would."""

from __future__ import annotations

import json
from typing import Any

from station.config import load_config
from tests.conftest import REPO

NOW = 1_800_000_000.0  # a fixed wall-clock instant (2027-01-15) for the sans-IO tests
DEMO = load_config(REPO / "config" / "station.yaml")  # import cap 400 kW, export cap 100 kW, ramp 100 kW/s


def setpoint(n: int = 1, *, now: float = NOW, **fields: Any) -> dict[str, Any]:
    """Setpoint number ``n`` (id ``sp-n``, seq ``n``) issued at ``now``, valid for 60 s, with 200 kW import
    and 50 kW export limits, unless ``fields`` say otherwise (``OMIT`` removes a field)."""
    sp: dict[str, Any] = {
        "id": f"sp-{n}",
        "seq": n,
        "issued_at": now,
        "valid_until": now + 60.0,
        "import_limit_kw": 200.0,
        "export_limit_kw": 50.0,
    }
    sp.update(fields)
    return {k: v for k, v in sp.items() if v is not _OMIT}


def encode(doc: Any) -> bytes:
    return json.dumps(doc).encode()


class _Omit:
    def __repr__(self) -> str:
        return "OMIT"


OMIT: Any = _Omit()
_OMIT = OMIT
