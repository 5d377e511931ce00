"""Fixtures shared by every test area. Area-specific fixtures live in tests/<area>/conftest.py."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

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
