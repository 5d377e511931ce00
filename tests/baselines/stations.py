"""Small station files for the baseline and bound tests, built as data (validated like any station file)."""

from __future__ import annotations

from typing import Any

from station.config import StationConfig, validate_config


def gun(gid: str, *, kw: float = 300.0, amps: float = 500.0, priority: int = 2, v2g_kw: float = 0.0) -> dict[str, Any]:
    g: dict[str, Any] = {"id": gid, "max_current_a": amps, "max_voltage_v": 1000, "max_power_kw": kw,
                         "priority": priority}
    if v2g_kw > 0:
        g.update(bidirectional=True, max_discharge_kw=v2g_kw)
    return g


def station(guns: list[dict[str, Any]], *, cap_kw: float = 300.0, aux_kw: float = 0.0, export_kw: float = 0.0,
            modules: int = 30, efficiency: float = 1.0, matrix: list[dict[str, Any]] | None = None,
            bess: dict[str, Any] | None = None, margin: float = 0.0, ramp_kw_per_s: float = 200.0) -> StationConfig:
    """One cabinet of ``modules`` 40 kW modules (a full crossbar unless ``matrix`` says otherwise)."""
    data: dict[str, Any] = {
        "station": {"id": "test-01"},
        "grid": {"transformer_kva": 100_000, "import_limit_kw": cap_kw, "export_limit_kw": export_kw,
                 "aux_load_kw": aux_kw, "ramp_limit_kw_per_s": ramp_kw_per_s},
        "cabinets": [{"id": "C1", "modules": {"count": modules, "rated_kw": 40, "max_current_a": 134,
                                              "efficiency": efficiency}}],
        "switch_matrix": matrix or [{"cabinet": "C1", "modules": f"1-{modules}", "guns": [g["id"] for g in guns]}],
        "dispensers": [{"id": "D1", "guns": guns}],
        "dispatch": {"fallback_export_limit_kw": export_kw},
        "control": {"cap_margin_fraction": margin},
    }
    if bess is not None:
        data["bess"] = bess
    cfg, issues = validate_config(data)
    assert cfg is not None, issues
    errors = [i for i in issues if i.severity == "error"]
    assert not errors, errors
    return cfg
