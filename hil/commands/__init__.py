"""``station-hil`` commands of the simulator. Shared here: the scenario argument and its loading."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

# the main job of a fresh machine (README): the demo station through a demo scenario
DEFAULT_SCENARIO = Path(__file__).resolve().parents[1] / "scenarios" / "demo.yaml"


def add_scenario_arguments(p: argparse.ArgumentParser, outputs: str) -> None:
    p.add_argument("scenario", nargs="?", default=str(DEFAULT_SCENARIO),
                   help="scenario YAML (hil/scenarios/*.yaml; default: the demo station's demo scenario)")
    p.add_argument("--out", type=Path, default=None, help=f"output directory for {outputs} (default: sim-out/NAME)")
    p.add_argument("--step", type=float, default=None, help="simulation step in seconds (default: the scenario's)")


def load(args: argparse.Namespace) -> Any:
    """The scenario named by ``args`` (and ``args.out`` defaulted), or None after printing why not."""
    from hil.scenarios import ScenarioError, load_scenario

    try:
        scn = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(exc, file=sys.stderr)
        return None
    if args.out is None:
        args.out = Path("sim-out") / Path(args.scenario).stem
    return scn
