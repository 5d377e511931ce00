"""``station check-config FILE``: validate a station file; a one-screen summary or every error."""

from __future__ import annotations

import argparse
import json
import sys

HELP = "validate a station configuration file and print a summary (exit 1 listing every error)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="station YAML file")
    p.add_argument("--schema", action="store_true", help="print the JSON Schema of station files instead")


def run(args: argparse.Namespace) -> int:
    from station.config import ConfigError, cross_checks_skipped, json_schema, read_yaml, validate_config

    if args.schema:
        print(json.dumps(json_schema(), indent=2))
        return 0
    try:
        data = read_yaml(args.file)
    except FileNotFoundError:
        print(f"{args.file}: no such file", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 1
    cfg, issues = validate_config(data, args.file)
    errors = [i for i in issues if i.severity == "error"]
    warnings = [i for i in issues if i.severity == "warning"]
    if cfg is None or errors:
        print(f"{args.file}: {len(errors)} error(s)", file=sys.stderr)
        for i in errors:
            print(f"  error: {i}", file=sys.stderr)
        for i in warnings:
            print(f"  warning: {i}", file=sys.stderr)
        if cross_checks_skipped(issues):
            print("  (site cross-checks run once the field errors above are fixed)", file=sys.stderr)
        return 1
    print(summary(cfg))
    for i in warnings:
        print(f"warning: {i}")
    return 0


def summary(cfg) -> str:  # noqa: ANN001 - StationConfig, imported lazily
    guns = cfg.guns()
    g = cfg.grid
    lines = [
        f"station {cfg.station.id} ({cfg.station.name or 'unnamed'}) - configuration OK",
        f"grid      import cap {g.import_cap_kw:g} kW (limit {g.import_limit_kw:g}, transformer "
        f"{g.transformer_kva:g} kVA x pf {g.power_factor:g}), export {g.export_limit_kw:g} kW, "
        f"ramp {g.ramp_limit_kw_per_s:g} kW/s, aux {g.aux_load_kw:g} kW",
    ]
    for c in cfg.cabinets:
        m = c.modules
        lines.append(
            f"cabinet   {c.id}: {m.count} x {m.rated_kw:g} kW ({m.min_voltage_v:g}-{m.max_voltage_v:g} V, "
            f"{m.max_current_a:g} A, eff {m.efficiency:g}) = {m.count * m.rated_kw:g} kW"
        )
    total_kw = sum(x.max_power_kw for x in guns)
    bidi = [x for x in guns if x.bidirectional]
    lines.append(
        f"guns      {len(guns)} on {len(cfg.dispensers)} dispensers, {total_kw:g} kW in total "
        f"({total_kw / g.import_cap_kw:.1f}x the import cap); {len(bidi)} bidirectional "
        f"({sum(x.max_discharge_kw for x in bidi):g} kW discharge)"
    )
    allowed = cfg.module_gun_matrix()
    for gi, gun in enumerate(guns):
        reach = sum(1 for row in allowed if row[gi])
        lines.append(
            f"  {gun.id:<6} {gun.max_power_kw:>6g} kW {gun.max_current_a:>5g} A {gun.max_voltage_v:>5g} V "
            f"prio {gun.priority} {gun.cooling:<7} {'V2G ' + format(gun.max_discharge_kw, 'g') + ' kW' if gun.bidirectional else '':<11}"
            f" modules {reach:>3}  can {gun.can.channel if gun.can else '-'}"
        )
    if cfg.bess:
        b = cfg.bess
        lines.append(
            f"bess      {b.id}: {b.capacity_kwh:g} kWh, +{b.max_charge_kw:g}/-{b.max_discharge_kw:g} kW, "
            f"SoC {b.soc_min:g}-{b.soc_max:g}, reserve {b.reserve_soc:g}"
        )
    else:
        lines.append("bess      none")
    lines.append(f"meters    {', '.join(f'{m.id} ({m.role})' for m in cfg.meters) or 'none'}")
    lines.append(
        f"mqtt      {cfg.mqtt.host}:{cfg.mqtt.port} prefix {cfg.mqtt.topic_prefix}/{cfg.station.id}, "
        f"MQTT {cfg.mqtt.protocol}, tls {'on' if cfg.mqtt.tls else 'off'}, signing {cfg.mqtt.signing.mode}"
    )
    lines.append(f"control   period {cfg.control.period_s * 1000:g} ms")
    return "\n".join(lines)
