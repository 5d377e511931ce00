"""The scenario file format (pydantic, strict, unknown keys rejected), documented in docs/scenarios.md.

A scenario names a station file and describes what happens to it over one run: vehicles arriving
(an explicit list and/or a seeded random model), grid-operator dispatch events, faults, a time-of-use
tariff, and the thresholds a good controller must meet (``expect:``).

Field rules live here (stage 1); rules that need the station or the run's timeline (gun ids, event
times inside the run, export limits, ...) are checked by :func:`hil.scenarios.validate.cross_check`
(stage 2), exactly as the station file does it. Units live in the key names; SoC values are fractions.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, PlainValidator, PrivateAttr, WithJsonSchema, field_validator

from hil.scenarios.arrivals import Plug, plan_plugs
from hil.scenarios.timing import WALL_TIME, DailySteps, RunClock, check_at, check_wall_time, wall_seconds
from station.config import Fraction, Id, Section, StationConfig, load_config

# ---------------------------------------------------------------------------------------------- value types

At = Annotated[
    float | str,
    PlainValidator(check_at),
    WithJsonSchema({
        "anyOf": [{"type": "number", "minimum": 0}, {"type": "string", "pattern": WALL_TIME.pattern}],
        "description": "seconds from the start, or local wall time HH:MM[:SS] (the first at or after the start)",
    }),
]

WallTime = Annotated[
    str,
    PlainValidator(check_wall_time),
    WithJsonSchema({"type": "string", "pattern": WALL_TIME.pattern, "description": "local wall time HH:MM[:SS]"}),
]

Number = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


def _span(*, gt: float | None = None, ge: float | None = None, le: float | None = None) -> Any:
    """A number or a range ``[low, high]`` drawn uniformly per vehicle, stored as ``(low, high)``."""
    bounds = " and ".join(f"{op} {v:g}" for op, v in ((">", gt), (">=", ge), ("<=", le)) if v is not None)
    shape_rule = "must be a number or a range [low, high] with low <= high"

    def check(value: object) -> tuple[float, float]:
        if isinstance(value, (list, tuple)) and len(value) == 2:
            lo, hi = value
        else:
            lo = hi = value
        if isinstance(lo, bool) or isinstance(hi, bool) or not isinstance(lo, (int, float)) \
                or not isinstance(hi, (int, float)) or not math.isfinite(lo) or not math.isfinite(hi) or lo > hi:
            raise ValueError(shape_rule)
        if (gt is not None and lo <= gt) or (ge is not None and lo < ge) or (le is not None and hi > le):
            raise ValueError(f"must be {bounds}")
        return float(lo), float(hi)

    number: dict[str, Any] = {"type": "number"}
    if gt is not None:
        number["exclusiveMinimum"] = gt
    if ge is not None:
        number["minimum"] = ge
    if le is not None:
        number["maximum"] = le
    return Annotated[
        tuple[float, float],
        PlainValidator(check),
        WithJsonSchema({"anyOf": [number, {"type": "array", "items": number, "minItems": 2, "maxItems": 2}],
                        "description": "a number, or a range [low, high] drawn uniformly per vehicle"}),
    ]


PositiveSpan = _span(gt=0)
FractionSpan = _span(ge=0, le=1)

VehicleKind = Literal["car", "fast_car", "truck"]
FaultKind = Literal["module_fault", "bess_unavailable", "meter_frozen", "vehicle_stops_drawing", "gun_unavailable"]

# ---------------------------------------------------------------------------------------------- sections


class MeterSpec(Section):
    """The grid meter as the controller sees it: late and noisy (the cap is judged on the true power)."""

    delay_s: float = Field(default=0.2, ge=0, le=10, description="measurement delay")
    noise_kw: float = Field(default=0.5, ge=0, le=100, description="standard deviation of the reading noise")
    seed: int = Field(default=0, ge=0, description="seed of the noise")


class V2GOfferSpec(Section):
    """What the driver agrees to give back: at most ``max_discharge_kw``, never below ``min_soc``."""

    max_discharge_kw: Positive
    min_soc: Fraction = 0.5


class V2GShare(Section):
    """A share of the vehicles of a mix entry that offer V2G, and their offer."""

    share: Fraction = Field(description="fraction of this entry's vehicles that offer V2G")
    max_discharge_kw: Positive
    min_soc: Fraction = 0.5


class PackOverrides(Section):
    """The vehicle kind (``hil.plant.car/fast_car/truck``) and optional overrides of its battery and BMS."""

    kind: VehicleKind
    nominal_voltage_v: Positive | None = None
    max_voltage_v: Positive | None = Field(default=None, description="BCP maximum charging voltage")
    max_current_a: Positive | None = Field(default=None, description="BCP maximum charging current")
    max_c_rate: Positive | None = Field(default=None, description="accepted power at low SoC, x capacity per hour")
    taper_start_soc: Fraction | None = None
    taper_end_soc: Fraction | None = None
    taper_min_c: Positive | None = None
    internal_resistance_ohm: Positive | None = None
    guns: list[Id] = Field(default_factory=list, description="preferred guns, in order of preference")

    def pack_overrides(self) -> dict[str, float]:
        """The BMS/battery overrides that were given, as keyword arguments of the kind's builder."""
        keys = ("nominal_voltage_v", "max_voltage_v", "max_current_a", "max_c_rate", "taper_start_soc",
                "taper_end_soc", "taper_min_c", "internal_resistance_ohm")
        return {k: getattr(self, k) for k in keys if getattr(self, k) is not None}


class Arrival(PackOverrides):
    """One vehicle that arrives at ``at`` and stays until ``departure`` (or for ``dwell_s``)."""

    id: Id
    at: At
    dwell_s: Positive | None = Field(default=None, description="stay this long (or give departure)")
    departure: At | None = Field(default=None, description="leave at this time (or give dwell_s)")
    capacity_kwh: Positive | None = None
    initial_soc: Fraction | None = None
    target_soc: Fraction | None = None
    v2g: V2GOfferSpec | None = None


class MixEntry(PackOverrides):
    """One kind of vehicle in the random arrival mix; ranges are drawn uniformly per vehicle."""

    weight: Positive = Field(description="relative share of arrivals")
    capacity_kwh: PositiveSpan | None = None
    initial_soc: FractionSpan | None = None
    target_soc: FractionSpan | None = None
    dwell_s: PositiveSpan
    v2g: V2GShare | None = None


class RatePeriod(Section):
    from_: WallTime = Field(alias="from")
    per_hour: NonNegative = Field(description="expected arrivals per hour from this local time on")


class RandomArrivals(Section):
    """Arrivals as a Poisson process whose rate follows the local time of day, with a weighted mix."""

    seed: int = Field(ge=0)
    rates: list[RatePeriod] = Field(min_length=1, description="daily step function of arrivals per hour")
    mix: list[MixEntry] = Field(min_length=1)

    def rate_steps(self) -> DailySteps:
        return DailySteps([wall_seconds(r.from_) for r in self.rates], [r.per_hour for r in self.rates])


class DispatchEvent(Section):
    """A grid-operator instruction, valid from ``at`` for ``valid_s``. Outside every event the station's own
    limits apply; while events overlap, the one that started last is in force."""

    at: At
    valid_s: Positive
    import_limit_kw: NonNegative
    export_limit_kw: NonNegative = 0.0
    target_kw: Number | None = Field(default=None, description="hold exactly this grid power; negative = export")
    ramp_kw_per_s: Positive | None = None
    announced: At | None = Field(default=None, description="when the controller learns of it (default: at start)")


class FaultEvent(Section):
    at: At
    duration_s: Positive
    kind: FaultKind
    target: str | None = Field(default=None, description="module id (C1.M03), gun id, BESS id or meter id")


class TariffPeriod(Section):
    from_: WallTime = Field(alias="from")
    price_per_kwh: Number


class Tariff(Section):
    """Time-of-use import price (local time, repeats daily) and an optional flat export price."""

    currency: str = Field(default="CNY", min_length=1, max_length=8)
    periods: list[TariffPeriod] = Field(min_length=1)
    export_price_per_kwh: Number | None = None

    def import_steps(self) -> DailySteps:
        return DailySteps([wall_seconds(p.from_) for p in self.periods], [p.price_per_kwh for p in self.periods])


class Expectations(Section):
    """Acceptance thresholds of a run (each optional); ``station-hil sim`` fails when one is missed."""

    min_demand_met: Fraction | None = None
    max_cap_violations: Annotated[int, Field(ge=0)] | None = None
    max_cap_excess_kw: NonNegative | None = None
    max_tracking_rms_kw: NonNegative | None = None
    max_tracking_worst_kw: NonNegative | None = None
    min_v2g_fraction: Fraction | None = None
    max_sessions_short: Annotated[int, Field(ge=0)] | None = None
    max_response_s: NonNegative | None = None
    min_bound_fraction: Fraction | None = None


# ---------------------------------------------------------------------------------------------- scenario


class Scenario(Section):
    """One run of one station. Load files with :func:`hil.scenarios.load_scenario` (both validation stages)."""

    name: Id
    description: str = ""
    station: str = Field(min_length=1, description="station YAML, relative to the scenario file")
    start: Annotated[datetime, Field(strict=False, description="ISO 8601 with UTC offset")]
    duration_s: float = Field(gt=0, le=7 * 86400)
    step_s: float = Field(default=1.0, gt=0, le=60)
    bess_initial_soc: Fraction | None = Field(default=None, description="default: the station's bess.initial_soc")
    meter: MeterSpec = MeterSpec()
    arrivals: list[Arrival] = Field(default_factory=list)
    random_arrivals: RandomArrivals | None = None
    dispatch: list[DispatchEvent] = Field(default_factory=list)
    faults: list[FaultEvent] = Field(default_factory=list)
    tariff: Tariff | None = None
    expect: Expectations = Expectations()

    _clock: RunClock = PrivateAttr()
    _base_dir: Path = PrivateAttr(default=Path("."))
    _station: StationConfig | None = PrivateAttr(default=None)
    _prices: tuple[DailySteps | None, float] | None = PrivateAttr(default=None)

    @field_validator("start")
    @classmethod
    def _fixed_offset(cls, v: datetime) -> datetime:
        offset = v.utcoffset()
        if offset is None:
            raise ValueError("must include a UTC offset, e.g. 2026-07-15T12:00:00+08:00")
        return v.astimezone(timezone(offset))  # local time is this offset for the whole run

    def model_post_init(self, context: Any, /) -> None:
        self._clock = RunClock(self.start)

    # ---- time ----------------------------------------------------------------------------------

    @property
    def clock(self) -> RunClock:
        return self._clock

    def at_s(self, at: float | str) -> float:
        """Run seconds of an instant as written in the file (number or ``"HH:MM[:SS]"``)."""
        return self.clock.at_s(at)

    # ---- station -------------------------------------------------------------------------------

    @property
    def station_path(self) -> Path:
        return self._base_dir / self.station

    def station_config(self) -> StationConfig:
        """The station file, loaded and validated (once; a config is immutable)."""
        if self._station is None:
            self._station = load_config(self.station_path)
        return self._station

    # ---- vehicles ------------------------------------------------------------------------------

    def plugs(self, cfg: StationConfig) -> list[Plug]:
        """Every vehicle of the run with its gun, sorted by arrival. Deterministic (seeded)."""
        return plan_plugs(self, cfg)

    # ---- tariff --------------------------------------------------------------------------------

    def _price_steps(self) -> tuple[DailySteps | None, float]:
        if self._prices is None:
            t = self.tariff
            export = math.nan if t is None or t.export_price_per_kwh is None else t.export_price_per_kwh
            self._prices = (None if t is None else t.import_steps(), export)
        return self._prices

    def price_at(self, t_s: float) -> float:
        """Import price per kWh at run second ``t_s`` (nan without a tariff)."""
        steps = self._price_steps()[0]
        return math.nan if steps is None else steps.at(self.clock.local_sod(t_s))

    def export_price_at(self, t_s: float) -> float:
        """Export price per kWh at run second ``t_s`` (nan when the tariff gives none)."""
        return self._price_steps()[1]

