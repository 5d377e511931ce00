"""Numba set-up shared by every compiled kernel: where the compile cache lives, and the decorator.

The cache matters at start-up (measured in docs/benchmarks.md: a cold compile takes seconds, a cached load
a fraction of that). A deployed install is read-only, so the cache must go elsewhere:

* ``NUMBA_CACHE_DIR`` if set (the operator decides);
* else ``$CACHE_DIRECTORY/numba`` when run by systemd with ``CacheDirectory=`` (docs/deployment.md);
* else Numba's own default (next to the sources, or the user's cache directory).

If no location is writable the kernels still work, compiled at every start, with one warning per process
that says how to enable the cache: a missing cache is a slow start, never a controller that does not start.
tests/allocate/test_numba_cache.py runs all of this from a read-only copy of the package.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


def _configure_cache_dir() -> None:
    if os.environ.get("NUMBA_CACHE_DIR"):  # Numba, too, treats an empty value as unset
        return
    systemd_cache = os.environ.get("CACHE_DIRECTORY")  # may list several, separated by ':'
    if systemd_cache:
        os.environ["NUMBA_CACHE_DIR"] = os.path.join(systemd_cache.split(":")[0], "numba")


_configure_cache_dir()

import numba  # noqa: E402  (after the cache directory is decided)
from numba.core import config as _numba_config  # noqa: E402

_numba_config.reload_config()  # in case Numba was imported before the environment was set


_warned_no_cache = False  # one warning per process, not one per kernel function


def njit(fn: F) -> F:
    """``numba.njit(cache=True, nogil=True)``, degrading to no cache when no location is writable.

    Reference counting is asked for explicitly (``_nrt=True``): Numba lets a function without the option
    inherit it from its first caller, and one called from an ``njit_noalloc`` function would then lose
    the allocations it needs."""
    return _compile(fn, {"_nrt": True})


def njit_inline(fn: F) -> F:
    """``njit`` for a small helper called in a hot loop: inlined into its callers by Numba
    (``inline="always"``). A call Numba leaves to LLVM that does not get inlined passes every array
    argument with an atomic reference count taken and dropped (two locked instructions per array, per
    call): a three-array heap pop paid six, more than its own work (docs/benchmarks.md)."""
    return _compile(fn, {"inline": "always"})


def njit_noalloc(fn: F) -> F:
    """``njit`` for a function that allocates nothing (its caller passes the scratch): compiled without
    Numba's reference counting (``_nrt=False``), so its array arguments and the views it takes of them are
    borrowed, kept alive by the caller. Numba otherwise takes and drops an atomic reference count for each
    array argument of every inlined helper, each a full memory barrier on x86: the module covering loop
    paid several per switch-in, 1.2 us of a 64-gun full reassignment (docs/benchmarks.md). A function
    compiled this way that allocates (``np.empty``, ``.copy()``, ``np.argsort``) fails to compile, so the
    contract cannot be broken silently. ``_nrt`` is a private Numba option: tests/allocate runs every
    kernel path against the reference, and the pinned Numba range is where it was measured."""
    return _compile(fn, {"_nrt": False})


def _compile(fn: F, options: dict[str, Any]) -> F:
    global _warned_no_cache
    try:
        return numba.njit(cache=True, nogil=True, **options)(fn)  # type: ignore[no-any-return]
    except RuntimeError as exc:
        if "no locator available" not in str(exc):  # Numba's words when no cache directory is writable
            raise
        if not _warned_no_cache:
            _warned_no_cache = True
            warnings.warn(
                f"Numba cache unavailable ({exc}): the kernels compile at every start. Set NUMBA_CACHE_DIR to a "
                "writable directory (or CacheDirectory= in the systemd unit) to cache them.",
                RuntimeWarning,
                stacklevel=2,
            )
        return numba.njit(nogil=True, **options)(fn)  # type: ignore[no-any-return]
