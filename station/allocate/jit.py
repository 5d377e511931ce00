"""Numba set-up shared by every compiled kernel: where the compile cache lives, and the decorator.

The cache matters at start-up (measured in docs/benchmarks.md: a cold compile takes seconds, a cached load
a fraction of that). A deployed install is read-only, so the cache must go elsewhere:

* ``NUMBA_CACHE_DIR`` if set (the operator decides);
* else ``$CACHE_DIRECTORY/numba`` when run by systemd with ``CacheDirectory=`` (systemd/station.service);
* else Numba's own default (next to the sources, or the user's cache directory).

If no location is writable the kernels still work, compiled at every start, with a warning: a missing
cache is a slow start, never a controller that does not start.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _configure_cache_dir() -> None:
    if "NUMBA_CACHE_DIR" in os.environ:
        return
    systemd_cache = os.environ.get("CACHE_DIRECTORY")  # may list several, separated by ':'
    if systemd_cache:
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(systemd_cache.split(":")[0], "numba")


_configure_cache_dir()

import numba  # noqa: E402  (after the cache directory is decided)
from numba.core import config as _numba_config  # noqa: E402

_numba_config.reload_config()  # in case Numba was imported before the environment was set


def njit(fn: F) -> F:
    """``numba.njit(cache=True, nogil=True)``, degrading to no cache when no location is writable."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)  # type: ignore[no-any-return]
    except RuntimeError as exc:  # "cannot cache function ...: no locator available"
        warnings.warn(f"Numba cache unavailable, compiling at every start: {exc}", RuntimeWarning, stacklevel=2)
        return numba.njit(nogil=True)(fn)  # type: ignore[no-any-return]
