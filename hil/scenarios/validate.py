"""Loading a scenario file: YAML, field rules (stage 1), then the checks that need the station and the run's
timeline (stage 2). Every problem is a :class:`~station.config.ConfigIssue` ``key.path[i].x: rule``,
collected, not just the first, as the station file does it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hil.plant import V2GOffer
from hil.scenarios.arrivals import RANDOM_ID_PREFIX, build_spec, fits, kind_defaults
from hil.scenarios.model import Arrival, MixEntry, Scenario
from hil.scenarios.timing import wall_seconds
from station.config import ConfigError, ConfigIssue, Gun, StationConfig, issues_from_validation_error

try:  # the C loader is ~8x faster (as in station.config)
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - depends on the platform build
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]


class ScenarioError(ConfigError):
    """Raised by :func:`load_scenario` with every error found (``.issues``)."""


class _ScenarioLoader(_BaseLoader):  # type: ignore[misc,valid-type]
    """The safe loader, minus two YAML 1.1 surprises for a file full of times: an unquoted ``18:30`` would be
    the base-60 integer 1110 (while ``08:30`` stays a string), and an unquoted timestamp would become a
    datetime object the JSON Schema cannot describe. Here both stay strings; pydantic parses them."""


def _without_colon_numbers(rx: re.Pattern[str]) -> re.Pattern[str]:
    return re.compile(rx.pattern.replace("^", "^(?!.*:)", 1), rx.flags)


_ScenarioLoader.yaml_implicit_resolvers = {
    first: [
        (tag, _without_colon_numbers(rx) if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float") else rx)
        for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"
    ]
    for first, resolvers in _BaseLoader.yaml_implicit_resolvers.items()
}


def parse_scenario_yaml(text: str, source: str = "") -> Any:
    """Parse scenario YAML (times stay strings); a syntax error names line and column."""
    try:
        return yaml.load(text, Loader=_ScenarioLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown position)"
        raise ScenarioError([ConfigIssue(where, f"YAML syntax: {getattr(exc, 'problem', exc)}")], source) from None


def read_scenario_yaml(path: str | Path) -> Any:
    return parse_scenario_yaml(Path(path).read_text(encoding="utf-8"), str(path))


def validate_scenario(data: Any, base_dir: str | Path = ".") -> tuple[Scenario | None, list[ConfigIssue]]:
    """Both stages on already-parsed data; ``station:`` is resolved against ``base_dir``.
    Returns (scenario or None, every issue found)."""
    if not isinstance(data, dict):
        return None, [ConfigIssue("(top level)", "must be a mapping of sections")]
    try:
        scn = Scenario.model_validate(data)
    except ValidationError as exc:
        return None, issues_from_validation_error(exc)
    scn._base_dir = Path(base_dir)
    try:
        cfg = scn.station_config()
    except FileNotFoundError:
        return None, [ConfigIssue("station", f"no such file: {scn.station_path}")]
    except ConfigError as exc:
        return None, [ConfigIssue("station", f"{scn.station_path}: {i}") for i in exc.issues]
    return scn, cross_check(scn, cfg)


def load_scenario(path: str | Path) -> Scenario:
    """Load and fully validate a scenario file; raise :class:`ScenarioError` listing every error."""
    scn, issues = validate_scenario(read_scenario_yaml(path), Path(path).parent)
    errors = [i for i in issues if i.severity == "error"]
    if scn is None or errors:
        raise ScenarioError(errors, str(path))
    return scn


# --------------------------------------------------------------------------------------------- stage 2


def cross_check(scn: Scenario, cfg: StationConfig) -> list[ConfigIssue]:
    """Stage 2: references to the station, times inside the run, consistency between fields."""
    c = _Checker(scn, cfg)
    c.run()
    return c.issues


class _Checker:
    def __init__(self, scn: Scenario, cfg: StationConfig) -> None:
        self.scn = scn
        self.cfg = cfg
        self.guns = {g.id: g for g in cfg.guns()}
        self.issues: list[ConfigIssue] = []

    def err(self, path: str, rule: str) -> None:
        self.issues.append(ConfigIssue(path, rule))

    def warn(self, path: str, rule: str) -> None:
        self.issues.append(ConfigIssue(path, rule, "warning"))

    def run(self) -> None:
        scn, cfg = self.scn, self.cfg
        if scn.step_s > scn.duration_s:
            self.err("step_s", f"must not exceed duration_s ({scn.duration_s:g} s)")
        if scn.bess_initial_soc is not None:
            b = cfg.bess
            if b is None:
                self.err("bess_initial_soc", "the station has no BESS")
            elif not b.soc_min <= scn.bess_initial_soc <= b.soc_max:
                self.err("bess_initial_soc", f"must lie between the station's bess.soc_min ({b.soc_min:g}) "
                                             f"and bess.soc_max ({b.soc_max:g})")
        seen: dict[str, str] = {}
        for i, a in enumerate(scn.arrivals):
            self.arrival(f"arrivals[{i}]", a, seen)
        if scn.random_arrivals is not None:
            ra = scn.random_arrivals
            self.increasing("random_arrivals.rates", [r.from_ for r in ra.rates])
            if all(r.per_hour == 0 for r in ra.rates):
                self.warn("random_arrivals.rates", "every rate is 0: no vehicle will arrive")
            for i, entry in enumerate(ra.mix):
                self.mix_entry(f"random_arrivals.mix[{i}]", entry)
        for i in range(len(scn.dispatch)):
            self.dispatch_event(f"dispatch[{i}]", i)
        for i, f in enumerate(scn.faults):
            p = f"faults[{i}]"
            self.inside_run(f"{p}.at", f.at)
            self.fault_target(p, f.kind, f.target)
        if scn.tariff is not None:
            self.increasing("tariff.periods", [pd.from_ for pd in scn.tariff.periods])

    # ---- helpers ----------------------------------------------------------------------------------

    def inside_run(self, path: str, at: float | str) -> float:
        t = self.scn.at_s(at)
        if t >= self.scn.duration_s:
            shown = f'"{at}"' if isinstance(at, str) else f"{at:g} s"
            self.err(path, f"{shown} is {t / 3600:.2f} h after the start, outside the run "
                           f"(duration {self.scn.duration_s / 3600:g} h)")
        return t

    def increasing(self, path: str, times: list[str]) -> None:
        for i in range(1, len(times)):
            if wall_seconds(times[i]) <= wall_seconds(times[i - 1]):
                self.err(f"{path}[{i}].from", f"must be later than the previous entry ({times[i - 1]})")

    def gun_prefs(self, path: str, prefs: list[str], probe: Any, v2g_required: bool) -> None:
        for j, gid in enumerate(prefs):
            gun: Gun | None = self.guns.get(gid)
            if gun is None:
                self.err(f"{path}.guns[{j}]", f"refers to unknown gun '{gid}'")
                continue
            if gid in prefs[:j]:
                self.err(f"{path}.guns[{j}]", f"lists gun '{gid}' twice")
            if probe is not None and not fits(gun, probe):
                self.err(f"{path}.guns[{j}]",
                         f"gun '{gid}' ({gun.min_voltage_v:g}-{gun.max_voltage_v:g} V) cannot charge this vehicle "
                         f"(up to {probe.max_voltage_v:g} V, pack {probe.ocv_at(probe.initial_soc):.0f} V at plug-in)")
            if v2g_required and not gun.bidirectional:
                self.err(f"{path}.guns[{j}]", f"gun '{gid}' is not bidirectional: a V2G vehicle needs one")

    def pack(self, path: str, kind: str, overrides: dict[str, float], initial: float, target: float) -> None:
        d = kind_defaults(kind)
        start = overrides.get("taper_start_soc", d.taper_start_soc)
        end = overrides.get("taper_end_soc", d.taper_end_soc)
        if start >= end:
            self.err(f"{path}.taper_start_soc", f"must be below taper_end_soc ({end:g})")
        if initial >= target:
            self.err(f"{path}.initial_soc", f"must be below target_soc ({target:g})")

    # ---- sections ---------------------------------------------------------------------------------

    def arrival(self, p: str, a: Arrival, seen: dict[str, str]) -> None:
        if a.id in seen:
            self.err(f"{p}.id", f"duplicate vehicle id '{a.id}' (also at {seen[a.id]})")
        seen.setdefault(a.id, p)
        if a.id.startswith(RANDOM_ID_PREFIX) and self.scn.random_arrivals is not None:
            self.err(f"{p}.id", f"'{RANDOM_ID_PREFIX}...' names the random arrivals; choose another id")
        arrival = self.inside_run(f"{p}.at", a.at)
        if a.dwell_s is not None and a.departure is not None:
            self.err(p, "give dwell_s or departure, not both")
        elif isinstance(a.departure, (int, float)) and a.departure <= arrival:
            self.err(f"{p}.departure", f"must be after the arrival ({arrival:g} s)")
        d = kind_defaults(a.kind)
        initial = d.initial_soc if a.initial_soc is None else a.initial_soc
        target = d.target_soc if a.target_soc is None else a.target_soc
        self.pack(p, a.kind, a.pack_overrides(), initial, target)
        try:
            probe = build_spec(a.kind, a.id, overrides=a.pack_overrides(), arrival_s=0.0, departure_s=1.0,
                               capacity_kwh=a.capacity_kwh, initial_soc=initial, target_soc=target)
        except ValueError as exc:
            self.err(p, str(exc))
            probe = None
        if a.v2g is not None and a.v2g.min_soc >= target:
            self.warn(f"{p}.v2g.min_soc", f"is not below target_soc ({target:g}): the offer gives nothing back")
        self.gun_prefs(p, list(a.guns), probe, a.v2g is not None)

    def mix_entry(self, p: str, e: MixEntry) -> None:
        d = kind_defaults(e.kind)
        initial = e.initial_soc or (d.initial_soc, d.initial_soc)
        target = e.target_soc or (d.target_soc, d.target_soc)
        self.pack(p, e.kind, e.pack_overrides(), initial[1], target[0])
        # the vehicle of this entry hardest on a gun's voltage range: emptiest pack
        try:
            probe = build_spec(e.kind, "probe", overrides=e.pack_overrides(), arrival_s=0.0, departure_s=1.0,
                               capacity_kwh=None if e.capacity_kwh is None else e.capacity_kwh[0],
                               initial_soc=initial[0], target_soc=max(target[1], 1e-9),
                               v2g=None if e.v2g is None else V2GOffer(e.v2g.max_discharge_kw, e.v2g.min_soc))
        except ValueError as exc:
            self.err(p, str(exc).replace("probe: ", ""))
            probe = None
        self.gun_prefs(p, list(e.guns), probe, False)

    def dispatch_event(self, p: str, i: int) -> None:
        ev = self.scn.dispatch[i]
        g = self.cfg.grid
        start = self.inside_run(f"{p}.at", ev.at)
        if ev.announced is not None and self.scn.at_s(ev.announced) > start:
            self.err(f"{p}.announced", "must not be after at (the controller learns of an event before it starts)")
        if ev.export_limit_kw > g.export_limit_kw + 1e-9:
            self.err(f"{p}.export_limit_kw", f"must not exceed the station's grid.export_limit_kw ({g.export_limit_kw:g} kW)")
        if ev.import_limit_kw > g.import_cap_kw + 1e-9:
            self.warn(f"{p}.import_limit_kw", f"is above the station's import cap ({g.import_cap_kw:g} kW), which applies")
        if ev.target_kw is not None:
            if ev.target_kw < 0 and -ev.target_kw > ev.export_limit_kw + 1e-9:
                self.err(f"{p}.target_kw", f"asks {-ev.target_kw:g} kW export, above export_limit_kw ({ev.export_limit_kw:g} kW)")
            if ev.target_kw > min(ev.import_limit_kw, g.import_cap_kw) + 1e-9:
                self.err(f"{p}.target_kw", f"{ev.target_kw:g} kW import is above the import limit in force "
                                           f"({min(ev.import_limit_kw, g.import_cap_kw):g} kW)")

    def fault_target(self, p: str, kind: str, target: str | None) -> None:
        cfg = self.cfg
        if kind == "bess_unavailable" and cfg.bess is None:
            self.err(f"{p}.kind", "the station has no BESS")
            return
        what, known = {
            "module_fault": ("module", cfg.module_ids()),
            "gun_unavailable": ("gun", list(self.guns)),
            "vehicle_stops_drawing": ("gun", list(self.guns)),
            "bess_unavailable": ("BESS", [cfg.bess.id] if cfg.bess else []),
            "meter_frozen": ("meter", [m.id for m in cfg.meters]),
        }[kind]
        if target is None:
            if what in ("module", "gun"):
                self.err(f"{p}.target", f"is required for {kind} (a {what} id, e.g. '{known[0]}')")
        elif target not in known:
            self.err(f"{p}.target", f"refers to unknown {what} '{target}' (e.g. '{known[0]}')" if known
                     else f"refers to unknown {what} '{target}': the station has none")
