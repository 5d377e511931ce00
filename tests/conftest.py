"""Fixtures shared by every test area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

# CI runs a fixed, deterministic sample; `HYPOTHESIS_PROFILE=deep pytest` explores far more, at random.
settings.register_profile("ci", max_examples=300, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
settings.register_profile(
    "deep", max_examples=5000, deadline=None, suppress_health_check=list(HealthCheck), print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def free_tcp_port() -> int:
    """A loopback port free right now (the OS picks it; tests bind it immediately after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def shared() -> Path:
    """../shared beside the checkout (CI clones main with it beside)."""
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests read the reference traces from ../shared")
    return SHARED


class ManualClock:
    """The injected clock of a test: it moves only when the test sets ``t`` (timeouts, ages and backoffs
    are tested by moving it, never by waiting)."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t
