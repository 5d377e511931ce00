"""Benchmark: frames per second the software CAN hub and one controller process sustain with N guns
charging (BCL + CCS every 50 ms, BCS over TP and BSM every 250 ms), and the CPU each process uses.

    .venv/bin/python -m bench.bench_can_hub                 # 32 guns unpaced and paced, 64 guns unpaced
    .venv/bin/python -m bench.bench_can_hub --update-docs   # also rewrite the issue-4 section of docs/benchmarks.md

Processes: the hub (``station-hil can-hub``), one process with all the simulated vehicles
(``station-hil bms --channel G1,...,GN``) and this one, the controller: N ``ChargerLink``s (python-can's
socketcand client, one thread per gun) plus a 50 ms control loop that answers the hooks and feeds the
measurements back. The measurement window starts once every gun is charging. A gun "keeps up" when no
session stopped or retried during the window; the expected rate per gun is 36 frames/s from the vehicle
(20 BCL + 4 BSM + 4 x 3 for the BCS transfer) and 28 to it (20 CCS + 4 x 2 transfer replies).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from drivers.can.charger import ChargerLink
from drivers.gbt27930.events import (
    InsulationCheckRequested,
    PrechargeRequested,
    Retrying,
    SessionStopped,
)
from drivers.gbt27930.transitions import Phase
from station.config import CanLink, Gun

REPO = Path(__file__).resolve().parent.parent

TICK = os.sysconf("SC_CLK_TCK")
SECTION = "## GB/T 27930 over the software CAN hub (issue 4)"


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


class Child:
    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "hil.cli", *args], cwd=REPO, stdout=subprocess.PIPE,
                                     text=True)
        self.lines: queue.Queue[dict] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def wait_for(self, key: str, timeout: float = 60.0) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                item = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if key in item or item.get("event") == key:
                return item
        raise RuntimeError(f"no '{key}' from {self.proc.args}")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def run_once(guns: int, seconds: float, pace: bool) -> dict[str, float]:
    hub = Child("can-hub", "--port", "0", *(["--pace"] if pace else []))
    port = int(hub.wait_for("listening")["listening"].rsplit(":", 1)[1])
    names = [f"G{i + 1}" for i in range(guns)]
    cars = Child("bms", "--port", str(port), "--channel", ",".join(names), "--soc", "0.2",
                 "--capacity-kwh", "400")
    cars.wait_for("ready")
    events: queue.Queue[tuple[str, object]] = queue.Queue()
    links = {}
    for name in names:
        gun = Gun(id=name, max_current_a=250.0, max_voltage_v=1000.0, max_power_kw=240.0,
                  can=CanLink(interface="socketcand", channel=name, options={"host": "127.0.0.1", "port": port}))
        links[name] = ChargerLink.for_gun(gun, on_event=lambda g, e: events.put((g, e)))
        links[name].open()
    for link in links.values():
        link.start()
    faults = {"stops": 0, "retries": 0}
    window = {"open": False}
    stop_loop = threading.Event()

    def control_loop() -> None:
        next_tick = time.monotonic()
        while not stop_loop.is_set():
            while True:
                try:
                    gun, ev = events.get_nowait()
                except queue.Empty:
                    break
                if isinstance(ev, InsulationCheckRequested):
                    links[gun].insulation_done(True)
                elif isinstance(ev, PrechargeRequested):
                    links[gun].precharge_done(ev.battery_voltage_v)
                elif isinstance(ev, SessionStopped) and window["open"]:
                    faults["stops"] += 1
                elif isinstance(ev, Retrying) and window["open"]:
                    faults["retries"] += 1
            for link in links.values():
                link.set_current_limit(200.0)
                st = link.status()
                link.set_measurements(st.battery.measured_voltage_v or 400.0, st.setpoint_current_a)
            next_tick += 0.05
            stop_loop.wait(max(0.0, next_tick - time.monotonic()))

    loop_thread = threading.Thread(target=control_loop, daemon=True)
    loop_thread.start()
    deadline = time.monotonic() + 90
    while any(link.status().phase is not Phase.CHARGING for link in links.values()):
        if time.monotonic() > deadline:
            raise RuntimeError("not every gun reached charging")
        stop_loop.wait(0.2)
    load = os.getloadavg()[0]

    def sample() -> tuple[float, ...]:
        t = os.times()
        fin = sum(link.runner.frames_in for link in links.values())
        fout = sum(link.runner.frames_out for link in links.values())
        return (time.monotonic(), t.user + t.system, cpu_seconds(hub.proc.pid), cpu_seconds(cars.proc.pid), fin, fout)

    window["open"] = True
    t0 = sample()
    stop_loop.wait(seconds)
    t1 = sample()
    window["open"] = False
    elapsed = t1[0] - t0[0]
    stop_loop.set()
    loop_thread.join(5)
    for link in links.values():
        link.close()
    cars.stop()
    hub.stop()
    frames_in = (t1[4] - t0[4]) / elapsed
    frames_out = (t1[5] - t0[5]) / elapsed
    return {
        "guns": guns, "pace": pace, "seconds": elapsed, "load": load,
        "hub_fps": frames_in + frames_out, "ctl_in_fps": frames_in, "ctl_out_fps": frames_out,
        "expected_fps": guns * 64.0,
        "hub_cpu": 100 * (t1[2] - t0[2]) / elapsed, "ctl_cpu": 100 * (t1[1] - t0[1]) / elapsed,
        "bms_cpu": 100 * (t1[3] - t0[3]) / elapsed, "stops": faults["stops"], "retries": faults["retries"],
    }


def table(rows: list[dict[str, float]], command: str) -> str:
    out = [
        f"Command: `{command}` (2-core VM shared with other agents; load average at the start of each window "
        "in the table).", "",
        "| guns | hub pacing | frames/s through hub | controller in / out | expected | hub CPU | "
        "controller CPU | vehicles CPU | stops / retries | load |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['guns']} | {'250 kbit/s' if r['pace'] else 'off'} | {r['hub_fps']:.0f} | "
            f"{r['ctl_in_fps']:.0f} / {r['ctl_out_fps']:.0f} | {r['expected_fps']:.0f} | {r['hub_cpu']:.0f} % | "
            f"{r['ctl_cpu']:.0f} % | {r['bms_cpu']:.0f} % | {r['stops']} / {r['retries']} | {r['load']:.2f} |"
        )
    out += ["", "CPU is the share of one core over the window (user + system). Every session kept charging "
            "through the window when stops / retries is 0 / 0."]
    return "\n".join(out) + "\n"


def update_docs(text: str) -> None:
    path = REPO / "docs" / "benchmarks.md"
    content = path.read_text()
    pattern = re.compile(re.escape(SECTION) + r"\n.*?(?=\n## |\Z)", re.S)
    content = pattern.sub(lambda _: f"{SECTION}\n\n{text}", content)
    path.write_text(content)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--guns", type=int, default=32)
    parser.add_argument("--headroom", type=int, default=64, help="also run this many guns, unpaced (0: skip)")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--update-docs", action="store_true")
    args = parser.parse_args()
    rows = [run_once(args.guns, args.seconds, pace) for pace in (False, True)]
    if args.headroom:
        rows.append(run_once(args.headroom, args.seconds, False))
    command = ".venv/bin/python -m bench.bench_can_hub" + (f" --guns {args.guns}" if args.guns != 32 else "") + (
        f" --seconds {args.seconds:g}" if args.seconds != 20.0 else "") + (
        f" --headroom {args.headroom}" if args.headroom != 64 else "")
    text = table(rows, command)
    print(text)
    if args.update_docs:
        update_docs(text)
    return 0 if all(r["stops"] == 0 and r["retries"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
