"""The GB/T 27930 codec, transport, session and their tools are sans-IO: importing every module of
``drivers/gbt27930`` loads neither python-can nor any socket layer, so they can be tested, fuzzed and
replayed without a bus, and a python-can upgrade cannot change a protocol decision."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import drivers.gbt27930


def test_no_module_of_the_codec_imports_python_can() -> None:
    names = [f"drivers.gbt27930.{m.name}" for m in pkgutil.iter_modules(drivers.gbt27930.__path__)]
    assert {"drivers.gbt27930.session", "drivers.gbt27930.transport", "drivers.gbt27930.cli"} <= set(names)
    probe = (
        "import importlib, json, sys\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m == 'can' or m.startswith('can.'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout) == []
