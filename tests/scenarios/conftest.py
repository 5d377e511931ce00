"""Fixtures of the scenario tests."""

from __future__ import annotations

import pytest

from station.config import StationConfig, load_config
from tests.scenarios.helpers import HUB


@pytest.fixture(scope="session")
def hub() -> StationConfig:
    return load_config(HUB)
