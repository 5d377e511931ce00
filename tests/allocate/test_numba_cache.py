"""The Numba compile cache from a read-only install (issue 2), in real processes.

A deployed controller's package is read-only: the cache must go where the operator says
(``NUMBA_CACHE_DIR``, or ``$CACHE_DIRECTORY/numba`` under systemd's ``CacheDirectory=``), and with neither
the kernel must still run, uncached, with one warning. ``station/allocate/jit.py`` decides this at import
time, so every case runs in a fresh process on a read-only copy of the ``station`` package.

Read-only for real: CI runs as root, and root ignores file modes. When the tests run as root, the copy is
owned by ``nobody`` (mode 0555/0444) and the probe runs as root *without any capability* (``setpriv``,
util-linux): it can neither write into the copy (no CAP_DAC_OVERRIDE) nor chmod it back (not the owner, no
CAP_FOWNER). Switching to the user ``nobody`` instead would also lose read access to the interpreter and
the venv, which live under the clone (in CI possibly under /root, mode 0700). Each probe checks the premise
itself: creating a file in the copy must fail.

Cache hits are read from the kernel dispatcher's ``stats`` (cache_hits / cache_misses), never from timing.
The two cold compiles (~10-15 s each: with NUMBA_CACHE_DIR, and with no cache at all) run concurrently, once
for the module; the other cases start from the cache the first one wrote.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
WARNING = "Numba cache unavailable"

# A cap of 100 kW shared max-min fair by two guns asking 80 and 30 kW: B gets all it asks (bound by its
# vehicle), A the remaining 70 (bound by the grid).
PROBE = r"""
import json, os, pathlib, tempfile
import station
from station.allocate import AllocationInput, GridInput, GunInput, allocate
from station.allocate.kernel import allocate_kernel

package = pathlib.Path(station.__file__).parent
try:
    tempfile.TemporaryFile(dir=package).close()
    install_writable = True
except OSError:
    install_writable = False
out = allocate(AllocationInput(dt_s=0.1, grid=GridInput(import_limit_kw=100.0),
                               guns=(GunInput("A", demand_kw=80.0), GunInput("B", demand_kw=30.0))))
stats = allocate_kernel.stats
print(json.dumps({
    "package": str(package),
    "install_writable": install_writable,
    "power_kw": {g.id: g.power_kw for g in out.guns},
    "bound_by": {g.id: g.bound_by.label for g in out.guns},
    "grid_kw": out.grid_kw,
    "cache_path": stats.cache_path,
    "cache_hits": sum(stats.cache_hits.values()),
    "cache_misses": sum(stats.cache_misses.values()),
}))
"""


@dataclass(frozen=True)
class Install:
    root: Path  # PYTHONPATH of the probe: holds the read-only `station` package
    home: Path  # a read-only HOME, so Numba's per-user cache directory is not writable either

    @property
    def package(self) -> Path:
        return self.root / "station"


@dataclass(frozen=True)
class Probe:
    out: dict
    stderr: str

    def assert_decided_right(self, install: Install) -> None:
        assert self.out["package"] == str(install.package), "the probe must import the read-only copy"
        assert self.out["install_writable"] is False, "the premise: the install is read-only for the probe"
        assert self.out["power_kw"] == pytest.approx({"A": 70.0, "B": 30.0}, abs=1e-9)
        assert self.out["bound_by"] == {"A": "grid", "B": "vehicle"}
        assert self.out["grid_kw"] == pytest.approx(100.0, abs=1e-9)


def _tree(path: Path) -> set[tuple[str, int]]:
    """Every file and directory under path with its modification time (to prove nothing was written)."""
    return {(str(p.relative_to(path)), p.stat().st_mtime_ns) for p in path.rglob("*")} | {(".", path.stat().st_mtime_ns)}


def _cache_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.suffix in (".nbi", ".nbc"))


def _make_read_only(path: Path) -> None:
    for p in [path, *path.rglob("*")]:
        p.chmod(0o555 if p.is_dir() else 0o444)
        if os.geteuid() == 0:
            os.chown(p, 65534, 65534)  # nobody: root without CAP_FOWNER cannot chmod it back


def _probe_command() -> list[str]:
    command = [sys.executable, "-c", PROBE]
    if os.geteuid() == 0:
        # as root, drop every capability: file modes and ownership then bind the probe like any user
        return ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", *command]
    return command


def run_probes(install: Install, cases: dict[str, dict[str, str]]) -> dict[str, Probe]:
    """Run one probe per case concurrently (each compile is single-threaded); env holds only what is given."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(install.home), "LANG": "C.UTF-8",
            "PYTHONPATH": str(install.root)}
    procs = {
        name: subprocess.Popen(_probe_command(), env=base | env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, cwd=install.home)
        for name, env in cases.items()
    }
    results: dict[str, Probe] = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=240)
        assert proc.returncode == 0, f"probe {name} failed ({proc.returncode}):\n{stderr}"
        results[name] = Probe(json.loads(stdout.strip().splitlines()[-1]), stderr)
    return results


@pytest.fixture(scope="module")
def install(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Install]:
    root = tmp_path_factory.mktemp("install")
    shutil.copytree(REPO / "station", root / "station", ignore=shutil.ignore_patterns("__pycache__"))
    home = tmp_path_factory.mktemp("home")
    _make_read_only(root / "station")
    _make_read_only(home)
    yield Install(root, home)
    for p in [home, root / "station", *home.rglob("*"), *(root / "station").rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)  # let pytest clean the temporary tree


@dataclass(frozen=True)
class ColdRuns:
    numba_cache_dir: Path  # case (a), filled by the cold start with NUMBA_CACHE_DIR
    probes: dict[str, Probe]
    install_before: set[tuple[str, int]]
    home_before: set[tuple[str, int]]


@pytest.fixture(scope="module")
def cold(install: Install, tmp_path_factory: pytest.TempPathFactory) -> ColdRuns:
    """The two cold starts, at once: with NUMBA_CACHE_DIR, and with no cache directory at all."""
    numba_dir = tmp_path_factory.mktemp("numba-cache")
    install_before, home_before = _tree(install.package), _tree(install.home)
    probes = run_probes(install, {"numba_cache_dir": {"NUMBA_CACHE_DIR": str(numba_dir)}, "no_cache_dir": {}})
    return ColdRuns(numba_dir, probes, install_before, home_before)


def test_numba_cache_dir_is_written_then_hit_by_the_next_process(install: Install, cold: ColdRuns) -> None:
    first = cold.probes["numba_cache_dir"]
    first.assert_decided_right(install)
    assert (first.out["cache_hits"], first.out["cache_misses"]) == (0, 1)
    assert first.out["cache_path"].startswith(str(cold.numba_cache_dir) + os.sep)
    files = _cache_files(cold.numba_cache_dir)
    assert any(f.name.startswith("kernel.allocate_kernel-") and f.suffix == ".nbi" for f in files), files
    assert any(f.name.startswith("kernel.allocate_kernel-") and f.suffix == ".nbc" for f in files), files
    assert WARNING not in first.stderr

    second = run_probes(install, {"restart": {"NUMBA_CACHE_DIR": str(cold.numba_cache_dir)}})["restart"]
    second.assert_decided_right(install)
    assert (second.out["cache_hits"], second.out["cache_misses"]) == (1, 0)
    assert second.out["cache_path"] == first.out["cache_path"]


def test_without_a_writable_cache_dir_the_kernel_runs_uncached_with_one_warning(
    install: Install, cold: ColdRuns
) -> None:
    probe = cold.probes["no_cache_dir"]
    probe.assert_decided_right(install)
    assert probe.out["cache_path"] is None  # Numba's null cache: compiled in memory only
    assert (probe.out["cache_hits"], probe.out["cache_misses"]) == (0, 1)
    assert probe.stderr.count(WARNING) == 1, probe.stderr
    assert "Set NUMBA_CACHE_DIR" in probe.stderr
    # nothing was written into the package (no __pycache__, no index) nor into the per-user cache
    assert _tree(install.package) == cold.install_before
    assert _tree(install.home) == cold.home_before


def test_systemd_cache_directory_holds_the_cache_under_numba(
    install: Install, cold: ColdRuns, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A restart under systemd: ``CacheDirectory=`` sets CACHE_DIRECTORY (several paths joined by ':', the first
    is ours). The cache a previous start left in ``$CACHE_DIRECTORY/numba`` is found and hit. (Seeded from
    case (a)'s cold start rather than compiled again: writing through NUMBA_CACHE_DIR, which is what jit.py
    sets from CACHE_DIRECTORY, is what case (a) proves.)"""
    systemd_dir, other = tmp_path_factory.mktemp("systemd-cache"), tmp_path_factory.mktemp("systemd-other")
    shutil.copytree(cold.numba_cache_dir, systemd_dir / "numba")
    probe = run_probes(install, {"restart": {"CACHE_DIRECTORY": f"{systemd_dir}:{other}"}})["restart"]
    probe.assert_decided_right(install)
    assert (probe.out["cache_hits"], probe.out["cache_misses"]) == (1, 0)
    assert probe.out["cache_path"].startswith(str(systemd_dir / "numba") + os.sep)
    assert WARNING not in probe.stderr
    assert list(other.iterdir()) == []


def test_numba_cache_dir_wins_over_cache_directory(
    install: Install, cold: ColdRuns, tmp_path_factory: pytest.TempPathFactory
) -> None:
    unused = tmp_path_factory.mktemp("systemd-unused")
    probe = run_probes(install, {"both": {"NUMBA_CACHE_DIR": str(cold.numba_cache_dir),
                                          "CACHE_DIRECTORY": str(unused)}})["both"]
    probe.assert_decided_right(install)
    assert (probe.out["cache_hits"], probe.out["cache_misses"]) == (1, 0)
    assert probe.out["cache_path"].startswith(str(cold.numba_cache_dir) + os.sep)
    assert list(unused.iterdir()) == []
