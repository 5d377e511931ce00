"""Station configuration: one YAML file describes one station.

Validation happens in two stages, as a commissioning engineer expects:

1. per field (pydantic): types, ranges, units, unknown keys;
2. site cross-checks (:func:`cross_check`): references between sections, unique bus addresses,
   gun ratings that the module matrix can actually deliver, ...

Every problem is reported as a :class:`ConfigIssue` naming the key path and the rule, for example
``dispensers[2].guns[0].max_current_a: must be > 0``.  All problems are collected, not just the first,
so one ``station check-config`` run lists everything that must be fixed.

Units live in the key names (``_kw``, ``_kwh``, ``_a``, ``_v``, ``_s``); SoC values are fractions 0..1.
"""

from __future__ import annotations

import copy

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

try:  # the C loader is ~8x faster; fall back silently where libyaml is missing
    from yaml import CSafeLoader as _YamlLoader
except ImportError:  # pragma: no cover - depends on the platform build
    from yaml import SafeLoader as _YamlLoader  # type: ignore[assignment]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
STATION_ID_PATTERN = r"^[a-z0-9][a-z0-9-]{0,63}$"  # used verbatim in MQTT topics

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Efficiency = Annotated[float, Field(gt=0.5, le=1.0)]
PositiveKw = Annotated[float, Field(gt=0)]
NonNegKw = Annotated[float, Field(ge=0)]


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, strings are not coerced to numbers
    (``"800"`` is a typo, not 800), and a loaded config is immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


# --------------------------------------------------------------------------- endpoints


class ModbusTcp(Section):
    """A Modbus TCP device (or gateway) endpoint."""

    transport: Literal["tcp"] = "tcp"
    host: str = Field(min_length=1)
    port: int = Field(default=502, ge=1, le=65535)
    unit_id: int = Field(default=1, ge=0, le=247)
    timeout_s: float = Field(default=0.2, gt=0, le=5.0)
    retries: int = Field(default=0, ge=0, le=5)

    def bus_key(self) -> str:
        return f"tcp://{self.host}:{self.port}"


class ModbusRtu(Section):
    """A Modbus RTU device on an RS-485 line."""

    transport: Literal["rtu"]
    serial_port: str = Field(min_length=1)
    baudrate: int = Field(default=19200, ge=1200, le=921600)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    unit_id: int = Field(default=1, ge=1, le=247)
    timeout_s: float = Field(default=0.2, gt=0, le=5.0)
    retries: int = Field(default=0, ge=0, le=5)

    def bus_key(self) -> str:
        return f"rtu://{self.serial_port}"


ModbusEndpoint = Annotated[Union[ModbusTcp, ModbusRtu], Field(discriminator="transport")]


class CanLink(Section):
    """The CAN bus of one gun, as python-can opens it (``can.Bus(interface=..., channel=..., **options)``)."""

    interface: str = Field(default="socketcan", min_length=1)
    channel: str = Field(min_length=1)
    bitrate: int = Field(default=250_000, gt=0)
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)

    def bus_key(self) -> str:
        host = self.options.get("host", "")
        port = self.options.get("port", "")
        return f"{self.interface}:{host}:{port}:{self.channel}"


# --------------------------------------------------------------------------- sections


class StationInfo(Section):
    id: str = Field(pattern=STATION_ID_PATTERN)
    name: str = Field(default="", max_length=200)
    site: str = Field(default="", max_length=200)
    timezone: str = "Asia/Shanghai"


class GridConnection(Section):
    """The point of connection. The import cap that counts is min(import_limit_kw, transformer kW, dispatch)."""

    transformer_kva: PositiveKw
    power_factor: float = Field(default=1.0, gt=0.5, le=1.0)
    import_limit_kw: PositiveKw
    export_limit_kw: NonNegKw = 0.0
    ramp_limit_kw_per_s: PositiveKw = 200.0
    aux_load_kw: NonNegKw = 0.0
    meter: str | None = None

    @property
    def transformer_kw(self) -> float:
        return self.transformer_kva * self.power_factor

    @property
    def import_cap_kw(self) -> float:
        return min(self.import_limit_kw, self.transformer_kw)


class ModuleSpec(Section):
    """One DC power module type. Power at voltage V is min(rated_kw, max_current_a * V)."""

    count: int = Field(ge=1, le=512)
    rated_kw: PositiveKw
    min_voltage_v: float = Field(default=150.0, gt=0)
    max_voltage_v: float = Field(default=1000.0, gt=0)
    max_current_a: float = Field(gt=0)
    efficiency: Efficiency = 0.96
    ramp_kw_per_s: PositiveKw = 400.0


class Cabinet(Section):
    id: Id
    modules: ModuleSpec
    modbus: ModbusEndpoint | None = None
    map: str | None = None  # register map file, relative to the config file


class MatrixBlock(Section):
    """A crossbar block of the module switch matrix: each listed module can be switched to each listed gun."""

    cabinet: Id
    modules: str = Field(description='1-based module numbers in the cabinet, e.g. "1-6,9,11-12"')
    guns: list[Id] = Field(min_length=1)

    @field_validator("modules")
    @classmethod
    def _range_syntax(cls, v: str) -> str:
        parse_module_ranges(v)  # raises ValueError with the reason
        return v


class Gun(Section):
    id: Id
    max_current_a: PositiveKw
    max_voltage_v: PositiveKw
    min_voltage_v: float = Field(default=150.0, gt=0)
    max_power_kw: PositiveKw
    cooling: Literal["natural", "liquid"] = "natural"
    bidirectional: bool = False
    max_discharge_kw: NonNegKw = 0.0
    priority: int = Field(default=2, ge=1, le=9, description="1 is served first")
    can: CanLink | None = None


class Dispenser(Section):
    id: Id
    guns: list[Gun] = Field(min_length=1, max_length=8)


class Bess(Section):
    """Battery storage behind a PCS. ``max_*_kw`` are at the AC connection point."""

    id: Id = "bess"
    capacity_kwh: PositiveKw
    max_charge_kw: PositiveKw
    max_discharge_kw: PositiveKw
    soc_min: Fraction = 0.05
    soc_max: Fraction = 0.95
    reserve_soc: Fraction = 0.2
    charge_efficiency: Efficiency = 0.96
    discharge_efficiency: Efficiency = 0.96
    initial_soc: Fraction = 0.5
    modbus: ModbusEndpoint | None = None
    map: str | None = None


class Meter(Section):
    id: Id
    role: Literal["grid", "aux", "gun", "bess"] = "grid"
    modbus: ModbusEndpoint | None = None
    map: str | None = None


class TlsConfig(Section):
    """TLS to the broker. ``cert_file``/``key_file``: the station's client certificate (its CN is the
    station id the broker's ACL checks). The broker's certificate must name ``mqtt.host``."""

    ca_file: str
    cert_file: str | None = None
    key_file: str | None = Field(default=None, validate_default=True)

    @field_validator("key_file")
    @classmethod
    def _pair(cls, v: str | None, info: Any) -> str | None:
        if (v is None) != (info.data.get("cert_file") is None):
            raise ValueError("cert_file and key_file go together")
        return v


class OutboxConfig(Section):
    """Store-and-forward of telemetry, events and reports (docs/mqtt.md, "Outbox")."""

    path: str = "/var/lib/station/outbox.sqlite"
    max_age_s: PositiveKw = 7 * 24 * 3600.0
    max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    fsync_each_commit: bool = True  # false: survives a process crash but not a power cut
    max_queued_messages: int = Field(default=10_000, ge=1)  # in memory, waiting for the next commit


class SigningConfig(Section):
    """Signed dispatch messages (JWS, docs/mqtt.md). ``key_file``: the HMAC secret, or the operator's
    Ed25519 public key (PEM). ``max_clock_skew_s`` also bounds how old ``issued_at`` may be (replay window)."""

    mode: Literal["none", "hmac-sha256", "ed25519"] = "none"
    key_file: str | None = None
    key_id: str | None = Field(default=None, min_length=1, max_length=128)  # JWS "kid" that must match
    max_clock_skew_s: PositiveKw = 30.0


class MqttConfig(Section):
    """The grid-operator link (docs/mqtt.md). Reconnects back off exponentially from ``reconnect_min_s``
    to ``reconnect_max_s`` with jitter, so a fleet does not reconnect in lockstep after a broker restart."""

    host: str = "localhost"
    port: int = Field(default=1883, ge=1, le=65535)
    client_id: str | None = None
    topic_prefix: str = Field(default="stations", pattern=r"^[A-Za-z0-9_/-]+$")
    protocol: Literal["3.1.1", "5"] = "5"
    keepalive_s: int = Field(default=30, ge=5, le=3600)
    telemetry_period_s: float = Field(default=1.0, gt=0, le=3600)
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    reconnect_min_s: float = Field(default=0.5, gt=0, le=3600)
    reconnect_max_s: float = Field(default=30.0, gt=0, le=3600)
    max_inflight_messages: int = Field(default=20, ge=1, le=65535)
    username: str | None = None
    password_file: str | None = None
    tls: TlsConfig | None = None
    signing: SigningConfig = SigningConfig()
    outbox: OutboxConfig = OutboxConfig()

    @field_validator("reconnect_max_s")
    @classmethod
    def _backoff_order(cls, v: float, info: Any) -> float:
        low = info.data.get("reconnect_min_s")
        if low is not None and v < low:
            raise ValueError(f"must be >= reconnect_min_s ({low:g})")
        return v


class DispatchConfig(Section):
    """Dispatch setpoints from the grid operator: the safe profile when no lease is active (fallback),
    what the station accepts, and how the response evidence is measured. See docs/mqtt.md."""

    fallback_import_limit_kw: NonNegKw | None = None  # default: the grid import cap
    fallback_export_limit_kw: NonNegKw = 0.0
    fallback_ramp_kw_per_s: PositiveKw | None = None  # default: the grid ramp limit
    settle_tolerance_kw: PositiveKw = 20.0
    change_threshold_kw: PositiveKw = 5.0  # evidence: the grid power "moved" once it changed this much
    evidence_max_gap_s: float = Field(default=5.0, gt=0, le=3600)  # longer meter gaps are not integrated
    max_message_bytes: int = Field(default=65536, ge=1024, le=16 * 1024 * 1024)
    max_schedule_length: int = Field(default=96, ge=1, le=10_000)
    max_pending_setpoints: int = Field(default=256, ge=1, le=100_000)
    max_lease_s: float = Field(default=2 * 86400.0, gt=0)
    max_schedule_ahead_s: float = Field(default=2 * 86400.0, ge=0)


class ClosedLoopConfig(Section):
    """Give power a vehicle does not draw to others: after ``settle_s`` below its allocation, a gun is capped
    at its measured power plus ``margin_kw`` (it can still grow by the margin every cycle)."""

    settle_s: float = Field(default=2.0, ge=0, le=60)
    margin_kw: NonNegKw = 5.0
    tolerance_kw: NonNegKw = 2.0


class ModuleSwitchingConfig(Section):
    """Contactor hysteresis: a module leaves a gun only after it has been surplus for ``release_hold_s``
    (or another gun needs it), and only once its current is below ``idle_current_a``."""

    release_hold_s: float = Field(default=5.0, ge=0, le=600)
    release_margin_kw: NonNegKw = 5.0
    idle_current_a: float = Field(default=1.0, gt=0, le=50)


class PlannerConfig(Section):
    """The BESS horizon planner (``station.plan``, docs/planner.md): every ``period_s`` it plans the battery
    over the next ``horizon_s`` in steps of ``step_s``, from the sessions in progress, the known dispatch
    windows and ``arrival_profile_kw``, and sets the allocation kernel's BESS targets."""

    enabled: bool = True
    step_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    horizon_s: float = Field(default=7200.0, gt=0, le=48 * 3600.0)
    period_s: float = Field(default=60.0, gt=0, le=3600.0,
                            description="re-plan this often; keep it at or below step_s (a forced charge lasts"
                                        " until the next re-plan)")
    arrival_profile_kw: list[NonNegKw] = Field(
        default_factory=lambda: [0.0] * 24, min_length=24, max_length=24,
        description="expected vehicle demand at the grid side (kW, aux load excluded) for each local hour 0..23,"
                    " e.g. the typical day from last month's meter data")
    unknown_session_s: float = Field(
        default=1800.0, ge=0, le=24 * 3600.0,
        description="a session whose energy and departure are both unknown is assumed to draw for this long")
    soc_levels: int = Field(default=101, ge=11, le=2001, description="SoC grid points of the dynamic programme")
    leveling: float = Field(
        default=0.0, ge=0.0, le=10.0,
        description="0: the battery serves deficits as they come (most energy delivered); > 0: it is saved for"
                    " deeper forecast deficits, curtailing more evenly over time (docs/planner.md)")

    @field_validator("horizon_s")
    @classmethod
    def _whole_steps(cls, v: float, info: Any) -> float:
        step = info.data.get("step_s")
        if step is not None and v < 2 * step:
            raise ValueError("must be at least two planner steps (2 x step_s)")
        if step is not None and v / step > 10_000:
            raise ValueError("must be at most 10000 planner steps (horizon_s / step_s)")
        return v


class ControlConfig(Section):
    period_s: float = Field(default=0.1, ge=0.005, le=1.0)
    cap_margin_fraction: float = Field(
        default=0.005, ge=0.0, le=0.1,
        description="the controller aims this fraction of the connection's import cap (as kW) inside the import and"
                    " export limits in force: room for load-dependent module losses, actuator lag and meter noise,"
                    " so the limits hold on the true grid power")
    closed_loop: ClosedLoopConfig = ClosedLoopConfig()
    modules: ModuleSwitchingConfig = ModuleSwitchingConfig()
    planner: PlannerConfig = PlannerConfig()


class StationConfig(Section):
    """The whole station. See docs/configuration.md."""

    station: StationInfo
    grid: GridConnection
    cabinets: list[Cabinet] = Field(min_length=1)
    switch_matrix: list[MatrixBlock] = Field(min_length=1)
    dispensers: list[Dispenser] = Field(min_length=1)
    bess: Bess | None = None
    meters: list[Meter] = Field(default_factory=list)
    mqtt: MqttConfig = MqttConfig()
    dispatch: DispatchConfig = DispatchConfig()
    control: ControlConfig = ControlConfig()

    # ---- derived views used everywhere (one place computes them) ----

    def guns(self) -> list[Gun]:
        return [g for d in self.dispensers for g in d.guns]

    def gun_ids(self) -> list[str]:
        return [g.id for g in self.guns()]

    def modules(self) -> list[tuple[Cabinet, int]]:
        """Every module as (cabinet, 1-based number), in a fixed global order (the kernel's module index)."""
        return [(c, n) for c in self.cabinets for n in range(1, c.modules.count + 1)]

    def module_ids(self) -> list[str]:
        return [f"{c.id}.M{n:02d}" for c, n in self.modules()]

    def module_gun_matrix(self) -> list[list[bool]]:
        """allowed[m][g]: module m can be switched to gun g (union of every matrix block)."""
        gun_ids = self.gun_ids()
        modules = self.modules()
        # sized by position, not by id: a duplicate id is reported by cross_check, not a crash here
        gun_index: dict[str, int] = {}
        for i, gid in enumerate(gun_ids):
            gun_index.setdefault(gid, i)
        module_index: dict[tuple[str, int], int] = {}
        for i, (c, n) in enumerate(modules):
            module_index.setdefault((c.id, n), i)
        allowed = [[False] * len(gun_ids) for _ in modules]
        for block in self.switch_matrix:
            for n in parse_module_ranges(block.modules):
                m = module_index.get((block.cabinet, n))
                if m is None:
                    continue
                for gid in block.guns:
                    if gid in gun_index:
                        allowed[m][gun_index[gid]] = True
        return allowed

    @property
    def import_cap_kw(self) -> float:
        return self.grid.import_cap_kw


# --------------------------------------------------------------------------- helpers

_RANGE_ITEM = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")


def parse_module_ranges(text: str) -> list[int]:
    """``"1-6,9,11-12"`` -> [1..6, 9, 11, 12]. Raises ValueError naming what is wrong."""
    out: list[int] = []
    if not text.strip():
        raise ValueError("must list at least one module number")
    for part in text.split(","):
        m = _RANGE_ITEM.match(part)
        if not m:
            raise ValueError(f"'{part.strip()}' is not a module number or range like 1-6")
        lo = int(m.group(1))
        hi = int(m.group(2) or lo)
        if lo < 1 or hi < lo:
            raise ValueError(f"'{part.strip()}' must be an ascending range of numbers >= 1")
        out.extend(range(lo, hi + 1))
    if len(set(out)) != len(out):
        raise ValueError("lists a module number twice")
    return out


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    rule: str
    severity: Literal["error", "warning"] = "error"
    stage: Literal[1, 2] = 2  # 1: per field (pydantic), 2: site cross-check

    def __str__(self) -> str:
        return f"{self.path}: {self.rule}"


class ConfigError(Exception):
    """Raised by :func:`load_config` with every error found (``.issues``)."""

    def __init__(self, issues: list[ConfigIssue], source: str = "") -> None:
        self.issues = issues
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + f"{len(issues)} error(s)\n" + "\n".join(f"  {i}" for i in issues))


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("tcp", "rtu") and path.endswith("modbus"):
            continue  # discriminated-union tag, not a key the user wrote
        elif isinstance(part, str) and part.startswith("function-"):
            continue
        else:
            path += ("." if path else "") + str(part)
    return path or "(top level)"


def _rule_from_error(err: dict[str, Any]) -> str:
    """Turn a pydantic error into a short rule an engineer reads at a glance."""
    kind = err["type"]
    ctx = err.get("ctx", {}) or {}
    simple = {
        "missing": "is required",
        "extra_forbidden": "unknown key",
        "bool_type": "must be true or false",
        "int_type": "must be an integer",
        "float_type": "must be a number",
        "string_type": "must be a string",
        "list_type": "must be a list",
        "dict_type": "must be a mapping",
        "model_type": "must be a mapping",
        "model_attributes_type": "must be a mapping",
    }
    if kind in simple:
        return simple[kind]
    if kind == "greater_than":
        return f"must be > {ctx['gt']:g}"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']:g}"
    if kind == "less_than":
        return f"must be < {ctx['lt']:g}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']:g}"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} item(s)"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected')}"
    if kind == "union_tag_invalid":
        return f"transport must be one of {ctx.get('expected_tags')}"
    if kind == "union_tag_not_found":
        return f"{ctx.get('discriminator', 'transport').strip(chr(39))} is required (tcp or rtu)"
    if kind == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"][0].lower() + err["msg"][1:]


def issues_from_validation_error(exc: ValidationError) -> list[ConfigIssue]:
    """Every error of a pydantic validation as key path + rule (shared by all YAML/JSON inputs)."""
    return [ConfigIssue(_loc_to_path(e["loc"]), _rule_from_error(e), stage=1) for e in exc.errors()]


def cross_checks_skipped(issues: list[ConfigIssue]) -> bool:
    """True when field errors other than unknown keys kept stage 2 from running (see validate_config)."""
    return any(i.stage == 1 and i.rule != "unknown key" for i in issues)


# --------------------------------------------------------------------------- cross-checks


def cross_check(cfg: StationConfig) -> list[ConfigIssue]:
    """Stage 2: checks that need the whole site. Returns errors and warnings (nothing raised)."""
    issues: list[ConfigIssue] = []

    def err(path: str, rule: str) -> None:
        issues.append(ConfigIssue(path, rule))

    def warn(path: str, rule: str) -> None:
        issues.append(ConfigIssue(path, rule, "warning"))

    # unique ids, each within its own kind and across guns of all dispensers
    def unique(items: list[tuple[str, str]], what: str) -> None:
        seen: dict[str, str] = {}
        for path, ident in items:
            if ident in seen:
                err(path, f"duplicate {what} id '{ident}' (also at {seen[ident]})")
            else:
                seen[ident] = path

    unique([(f"cabinets[{i}].id", c.id) for i, c in enumerate(cfg.cabinets)], "cabinet")
    unique([(f"dispensers[{i}].id", d.id) for i, d in enumerate(cfg.dispensers)], "dispenser")
    unique(
        [
            (f"dispensers[{i}].guns[{j}].id", g.id)
            for i, d in enumerate(cfg.dispensers)
            for j, g in enumerate(d.guns)
        ],
        "gun",
    )
    unique([(f"meters[{i}].id", m.id) for i, m in enumerate(cfg.meters)], "meter")

    # grid
    g = cfg.grid
    if g.import_limit_kw > g.transformer_kw + 1e-9:
        warn(
            "grid.import_limit_kw",
            f"{g.import_limit_kw:g} kW is above the transformer's {g.transformer_kw:g} kW "
            "(transformer_kva x power_factor); the transformer limit is used",
        )
    if g.aux_load_kw >= g.import_cap_kw:
        err("grid.aux_load_kw", f"must be below the import cap ({g.import_cap_kw:g} kW)")
    if g.meter is not None and g.meter not in {m.id for m in cfg.meters}:
        err("grid.meter", f"refers to unknown meter '{g.meter}'")

    # modules and matrix
    cabinets = {c.id: c for c in cfg.cabinets}
    gun_paths = {
        gun.id: f"dispensers[{i}].guns[{j}]"
        for i, d in enumerate(cfg.dispensers)
        for j, gun in enumerate(d.guns)
    }
    for i, c in enumerate(cfg.cabinets):
        ms = c.modules
        if ms.min_voltage_v >= ms.max_voltage_v:
            err(f"cabinets[{i}].modules.min_voltage_v", "must be below max_voltage_v")
    for i, block in enumerate(cfg.switch_matrix):
        cab = cabinets.get(block.cabinet)
        if cab is None:
            err(f"switch_matrix[{i}].cabinet", f"refers to unknown cabinet '{block.cabinet}'")
        else:
            for n in parse_module_ranges(block.modules):
                if n > cab.modules.count:
                    err(
                        f"switch_matrix[{i}].modules",
                        f"module {n} does not exist (cabinet '{cab.id}' has {cab.modules.count})",
                    )
                    break
        for j, gid in enumerate(block.guns):
            if gid not in gun_paths:
                err(f"switch_matrix[{i}].guns[{j}]", f"refers to unknown gun '{gid}'")

    allowed = cfg.module_gun_matrix()
    modules = cfg.modules()
    for m, row in enumerate(allowed):
        if not any(row):
            cab, n = modules[m]
            ci = cfg.cabinets.index(cab)
            warn(f"cabinets[{ci}]", f"module {n} is not connected to any gun by switch_matrix")

    for gi, gun in enumerate(cfg.guns()):
        path = gun_paths.get(gun.id, gun.id)
        reach = [modules[m][0].modules for m in range(len(modules)) if allowed[m][gi]]
        if not reach:
            err(path, "no module can be switched to this gun (switch_matrix)")
            continue
        if gun.min_voltage_v >= gun.max_voltage_v:
            err(f"{path}.min_voltage_v", "must be below max_voltage_v")
        reach_kw = sum(ms.rated_kw for ms in reach)
        reach_a = sum(ms.max_current_a for ms in reach)
        if gun.max_power_kw > reach_kw + 1e-9:
            err(
                f"{path}.max_power_kw",
                f"{gun.max_power_kw:g} kW exceeds what its reachable modules deliver ({reach_kw:g} kW)",
            )
        if gun.max_current_a > reach_a + 1e-9:
            err(
                f"{path}.max_current_a",
                f"{gun.max_current_a:g} A exceeds what its reachable modules deliver ({reach_a:g} A)",
            )
        top_v = max(ms.max_voltage_v for ms in reach)
        if gun.max_voltage_v > top_v + 1e-9:
            err(f"{path}.max_voltage_v", f"{gun.max_voltage_v:g} V exceeds the modules' {top_v:g} V")
        if gun.max_power_kw > gun.max_current_a * gun.max_voltage_v / 1000.0 + 1e-9:
            warn(
                f"{path}.max_power_kw",
                f"unreachable: max_current_a x max_voltage_v is only "
                f"{gun.max_current_a * gun.max_voltage_v / 1000.0:g} kW",
            )
        if gun.bidirectional and gun.max_discharge_kw <= 0:
            err(f"{path}.max_discharge_kw", "must be > 0 for a bidirectional gun")
        if not gun.bidirectional and gun.max_discharge_kw > 0:
            err(f"{path}.max_discharge_kw", "must be 0 unless the gun is bidirectional")
        if gun.max_discharge_kw > gun.max_power_kw + 1e-9:
            err(f"{path}.max_discharge_kw", "must not exceed max_power_kw")

    # BESS
    if cfg.bess is not None:
        b = cfg.bess
        if not b.soc_min < b.soc_max:
            err("bess.soc_min", "must be below soc_max")
        if not b.soc_min <= b.reserve_soc <= b.soc_max:
            err("bess.reserve_soc", "must lie between soc_min and soc_max")
        if not b.soc_min <= b.initial_soc <= b.soc_max:
            err("bess.initial_soc", "must lie between soc_min and soc_max")

    # buses: CAN channels and Modbus unit ids must be unique per bus
    can_seen: dict[str, str] = {}
    for gun in cfg.guns():
        if gun.can is None:
            continue
        key = gun.can.bus_key()
        path = f"{gun_paths[gun.id]}.can.channel"
        if key in can_seen:
            err(path, f"CAN channel '{gun.can.channel}' is already used by {can_seen[key]}")
        else:
            can_seen[key] = gun_paths[gun.id]

    units: dict[tuple[str, int], str] = {}

    def claim(endpoint: ModbusTcp | ModbusRtu | None, first: int, count: int, path: str) -> None:
        if endpoint is None:
            return
        for unit in range(first, first + count):
            key = (endpoint.bus_key(), unit)
            if unit > 247:
                err(f"{path}.unit_id", f"unit ids {first}..{first + count - 1} run past 247")
                return
            if key in units:
                err(f"{path}.unit_id", f"unit id {unit} on {endpoint.bus_key()} is already used by {units[key]}")
                return
            units[key] = path

    for i, c in enumerate(cfg.cabinets):
        # the modules of a cabinet occupy consecutive unit ids starting at modbus.unit_id
        claim(c.modbus, c.modbus.unit_id if c.modbus else 0, c.modules.count, f"cabinets[{i}].modbus")
    if cfg.bess is not None:
        claim(cfg.bess.modbus, cfg.bess.modbus.unit_id if cfg.bess.modbus else 0, 1, "bess.modbus")
    for i, m in enumerate(cfg.meters):
        claim(m.modbus, m.modbus.unit_id if m.modbus else 0, 1, f"meters[{i}].modbus")

    # dispatch fallback must itself be safe
    d = cfg.dispatch
    if d.fallback_import_limit_kw is not None and d.fallback_import_limit_kw > g.import_cap_kw + 1e-9:
        err("dispatch.fallback_import_limit_kw", f"must not exceed the grid import cap ({g.import_cap_kw:g} kW)")
    if d.fallback_export_limit_kw > g.export_limit_kw + 1e-9:
        err("dispatch.fallback_export_limit_kw", f"must not exceed grid.export_limit_kw ({g.export_limit_kw:g} kW)")

    if cfg.mqtt.signing.mode != "none" and not cfg.mqtt.signing.key_file:
        err("mqtt.signing.key_file", f"is required when signing mode is '{cfg.mqtt.signing.mode}'")
    return issues


# --------------------------------------------------------------------------- loading


def validate_config(data: Any, source: str = "") -> tuple[StationConfig | None, list[ConfigIssue]]:
    """Both stages on already-parsed data. Returns (config or None, every issue found)."""
    if not isinstance(data, dict):
        return None, [ConfigIssue("(top level)", "must be a mapping of sections")]
    try:
        cfg = StationConfig.model_validate(data)
    except ValidationError as exc:
        field_issues = issues_from_validation_error(exc)
        return None, field_issues + _cross_check_without_unknown_keys(data, exc)
    return cfg, cross_check(cfg)


def _cross_check_without_unknown_keys(data: dict[str, Any], exc: ValidationError) -> list[ConfigIssue]:
    """Stage 2 on the file with its unknown keys left out, when they were its only field errors.

    Why: a misspelt key is the most common slip, carries no meaning, and should not hide a duplicate
    CAN channel or a matrix pointing at a missing gun until the next run. Any other field error (a wrong
    type, a value out of range) leaves cross-checks unrun: checking a site with a guessed value in its
    place would report findings that are not in the file.
    """
    errors = exc.errors()
    if not errors or any(e["type"] != "extra_forbidden" for e in errors):
        return []
    pruned = copy.deepcopy(data)
    for e in errors:
        *parents, key = e["loc"]
        node: Any = pruned
        for part in parents:
            if isinstance(node, dict) and part not in node:
                continue  # a union's tag ("tcp") or validator step in the location, not a key of the file
            node = node[part]
        if isinstance(node, dict):
            node.pop(key, None)
    try:
        cfg = StationConfig.model_validate(pruned)
    except ValidationError:
        return []
    return cross_check(cfg)


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file with the fast safe loader; a syntax error names line and column."""
    text = Path(path).read_text(encoding="utf-8")
    try:
        return yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "(unknown position)"
        raise ConfigError([ConfigIssue(where, f"YAML syntax: {getattr(exc, 'problem', exc)}")], str(path)) from None


def load_config(path: str | Path) -> StationConfig:
    """Load and fully validate a station file; raise :class:`ConfigError` listing every error."""
    cfg, issues = validate_config(read_yaml(path), str(path))
    errors = [i for i in issues if i.severity == "error"]
    if cfg is None or errors:
        raise ConfigError(errors, str(path))
    return cfg


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a station file (exported to docs/config.schema.json)."""
    schema = StationConfig.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Station configuration"
    return schema
