"""The shipped systemd units start commands that exist, with options those commands accept.

A unit whose ExecStart names a missing subcommand or option fails only on the bench machine, at boot:
here each unit's command line is parsed by the real argument parser of the command it names.
"""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

import pytest

from hil.cli import COMMANDS as HIL_COMMANDS
from station.cli import COMMANDS as STATION_COMMANDS
from station.cli import build_parser
from tests.conftest import REPO

UNITS = sorted((REPO / "systemd").glob("*.service"))
ENV_FILES = sorted((REPO / "systemd" / "hil-device").glob("*.env"))
REGISTRIES = {"station": STATION_COMMANDS, "station-hil": HIL_COMMANDS}


def read_unit(path: Path) -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # systemd keys are case-sensitive
    unit.read(path)
    return unit


def env_values(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))
    return {k: v for k, v in pairs}


def parse_exec_start(argv: list[str]) -> None:
    """Parse a unit's command line with the parser of the console script it runs (exits 2 if wrong)."""
    script = Path(argv[0]).name
    assert script in REGISTRIES, f"{argv[0]}: not one of our console scripts {sorted(REGISTRIES)}"
    assert argv[1] in REGISTRIES[script], f"{script} has no subcommand {argv[1]!r}"
    parser = build_parser(script, "", {argv[1]: REGISTRIES[script][argv[1]]})
    parser.parse_args(argv[1:])


def test_units_are_shipped() -> None:
    assert "station-can-hub.service" in {p.name for p in UNITS}


@pytest.mark.parametrize("unit_path", UNITS, ids=lambda p: p.name)
def test_every_unit_runs_an_existing_command_with_valid_options(unit_path: Path) -> None:
    unit = read_unit(unit_path)
    service = unit["Service"]
    assert unit["Install"]["WantedBy"] == "multi-user.target"
    assert service.get("Restart") == "on-failure"
    argv = shlex.split(service["ExecStart"])
    if "EnvironmentFile" in service:  # a template: check it with each shipped environment file
        assert ENV_FILES, "the template's environment files are missing"
        for env in ENV_FILES:
            values = env_values(env)
            parse_exec_start([values.get(a[2:-1], a) if a.startswith("${") else a for a in argv])
            assert Path(values["MAP"]).name in {p.name for p in (REPO / "config" / "devices").glob("*.yaml")}
    else:
        parse_exec_start(argv)


def test_a_wrong_subcommand_or_option_is_caught() -> None:
    with pytest.raises(AssertionError):
        parse_exec_start(["/opt/station/.venv/bin/station-hil", "no-such-command"])
    with pytest.raises(SystemExit):
        parse_exec_start(["/opt/station/.venv/bin/station-hil", "can-hub", "--no-such-option"])
