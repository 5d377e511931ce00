"""Fixtures of the GB/T area."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def traces(shared: Path) -> Path:
    """The three real captures in ../shared/traces/gbt27930."""
    return shared / "traces" / "gbt27930"
