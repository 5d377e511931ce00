"""A flood of 10,000 malformed dispatch messages through a real broker while the control cycle runs.

The cycle is the real runner (station.control.loop.PeriodicLoop, 20 ms period) in the same process as
the MQTT link; its step does what the service's step does with the dispatch component (limits, grid
power sample, telemetry to the outbox) plus allocation-sized work (tests/mqtt/cycle_load.py). To run the
real decision instead, replace the body of :func:`control_step` with ``decide(snapshot, now)``: nothing
else depends on it.

The operator side (10,000 messages in, 10,000 acks out) and the broker run in separate processes
(mosquitto_pub, mosquitto_sub, mosquitto) at a low CPU priority (nice 10): in the field they run on
other machines, here they share the station's 2 cores. The interpreter is set up as the service should
set it up (:func:`cycle_load.service_runtime`), and the link steps aside while a tick is due, through the
loop's :class:`~station.control.loop.CycleGate`, as the service wires it.

What "keeps its timing" means on a loaded machine: a reference copy of the cycle runs at the same time in
its own process, with no MQTT in it (tests/mqtt/cycle_load.py). Whatever the machine does to every cycle
(other jobs on a busy CI box) shows up in both; what the flood does inside the station process (GIL,
garbage collection, locks) only in the station's. The test bounds the difference.

A measurement is only judged if the machine gave the station the CPU it asked for. Two signs that it did
not: the lone reference thread is late by more than :data:`BUSY_P50_S` at the median (most wake-ups found
no free core), or the station's network thread, busy parsing the flood, waited for a CPU more than
:data:`STARVED_MAX` of the time (Linux schedstat). A thread the kernel deschedules while it holds the GIL
holds up every other thread of its process, whatever it was doing: on a machine shared with other jobs,
such runs missed 4-37 periods while the reference missed none. Such a run is repeated; of :data:`ATTEMPTS` runs, the first
unstarved one is judged, or else the least starved.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from station import telemetry as payloads
from station.control.loop import CycleGate, PeriodicLoop
from station.dispatch import Reason
from tests.mqtt.conftest import WAIT_S, Broker, Station, env_with_repo
from tests.mqtt.cycle_load import DEMAND_KW, PERIOD_S, allocation_work, service_runtime, stats_summary
from tests.mqtt.setpoints import encode, setpoint

FLOOD = 10_000
ELSEWHERE_NICE = 10  # the broker and the operator's side: other machines in the field
ELSEWHERE = ["nice", "-n", str(ELSEWHERE_NICE)]
REFERENCE = Path(__file__).with_name("cycle_load.py")
ATTEMPTS = 3
BUSY_P50_S = 0.5e-3  # a lone thread's median wake-up lateness is ~0.1 ms on a 2-core box that has a core free
STARVED_MAX = 0.25


def control_step(st: Station, deadline: float, pacer: payloads.TelemetryPacer) -> None:
    now = st.clock()
    limits = st.manager.limits_at(now)
    allocation_work(limits, DEMAND_KW)
    st.manager.observe_grid_power(now, 150.0)
    if pacer.due(deadline):
        st.link.publish_telemetry(payloads.telemetry(now, grid_kw=150.0, limits=limits,
                                                     dispatch=st.manager.status(now), guns=[], health={}))


def malformed(i: int, now: float) -> bytes:
    """Ten kinds of bad messages, each one unique."""
    kind = i % 10
    if kind == 0:
        return b"{not json %d" % i
    if kind == 1:
        return encode(setpoint(1000 + i, now=now, import_limit_kw=-1.0))
    if kind == 2:
        return encode(setpoint(1000 + i, now=now, bogus=i))
    if kind == 3:
        return encode(setpoint(1000 + i, now=now, seq=str(i)))
    if kind == 4:
        return encode(setpoint(1000 + i, now=now, valid_until=now - 1, valid_from=now - 2))
    if kind == 5:
        return encode(setpoint(0, now=now, id=f"old-{i}"))  # stale seq
    if kind == 6:
        return encode(setpoint(1000 + i, now=now, issued_at=now - 3600))
    if kind == 7:
        return encode(setpoint(1000 + i, now=now, import_limit_kw=50.0, target_kw=300.0))
    if kind == 8:
        return b"[]"
    return b"\xff\xfe%d" % i


EXPECTED = [Reason.MALFORMED_JSON, Reason.NEGATIVE_LIMIT, Reason.UNKNOWN_FIELD, Reason.WRONG_TYPE,
            Reason.VALID_UNTIL_PAST, Reason.SEQ_STALE, Reason.ISSUED_AT_OUT_OF_WINDOW,
            Reason.TARGET_OUTSIDE_LIMITS, Reason.SCHEDULE_EMPTY, Reason.MALFORMED_JSON]


@dataclass
class FloodRun:
    acks: list[dict[str, Any]]
    flood_s: float
    cycle: dict[str, float]  # the station's cycle (stats_summary)
    reference: dict[str, float]  # the reference cycle in its own process
    starved: float | None  # share of the flood the network thread waited for a CPU (None: not on Linux)

    @property
    def machine_busy(self) -> bool:
        return self.reference["p50_s"] >= BUSY_P50_S or (self.starved or 0.0) > STARVED_MAX

    def summary(self) -> str:
        starved = "?" if self.starved is None else f"{self.starved:.0%}"
        return (f"{len(self.acks)} acks in {self.flood_s:.2f} s; station cycle {_fmt(self.cycle)}; "
                f"reference cycle {_fmt(self.reference)}; network thread waited for a CPU {starved} of the time")


def run_queue_wait_s(thread: threading.Thread) -> float | None:
    """How long a thread of this process has been runnable but waiting for a CPU, from Linux schedstat
    (None where the kernel does not say)."""
    try:
        return int(Path(f"/proc/self/task/{thread.native_id}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def flood_once(st: Station, broker: Broker, flood: Path, out_dir: Path, attempt: int) -> FloodRun:
    """Publish the flood while the station's cycle and the reference cycle run; collect the acks."""
    port = str(broker.port)
    acks_file = out_dir / f"acks-{attempt}.txt"
    collector_id = f"acks-{attempt}"
    with acks_file.open("wb") as out, contextlib.ExitStack() as stack:
        collector = subprocess.Popen(ELSEWHERE + ["mosquitto_sub", "-h", "127.0.0.1", "-p", port, "-q", "1",
                                                  "-C", str(FLOOD), "-t", "stations/st-1/dispatch/ack",
                                                  "-i", collector_id], stdout=out)
        stack.callback(collector.kill)
        reference = subprocess.Popen([sys.executable, str(REFERENCE)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env_with_repo())
        stack.callback(reference.kill)
        assert reference.stdout is not None and reference.stdout.readline().strip() == "READY"
        # mosquitto_sub says nothing until messages come: its connection in the broker log is the barrier
        assert broker.wait_log(f" as {collector_id} (", WAIT_S)
        stack.enter_context(service_runtime())
        pacer = payloads.TelemetryPacer(1.0)  # the shipped telemetry period
        gate = CycleGate(max_wait_s=PERIOD_S)  # wired as the service wires it
        st.link.yield_to_cycle = gate.wait_turn
        stack.callback(setattr, st.link, "yield_to_cycle", lambda: None)
        loop = PeriodicLoop(PERIOD_S, lambda tick, deadline: control_step(st, deadline, pacer),
                            name="cycle-under-flood", gate=gate)
        loop.start()
        stack.callback(loop.stop)
        network = next(t for t in threading.enumerate() if t.name == "mqtt-net-st-1")
        waited0 = run_queue_wait_s(network)
        t0 = time.perf_counter()
        with flood.open("rb") as src:
            subprocess.run(ELSEWHERE + ["mosquitto_pub", "-h", "127.0.0.1", "-p", port, "-q", "1", "-l",
                                        "-t", "stations/st-1/dispatch/set", "-i", f"flood-{attempt}"],
                           stdin=src, check=True, timeout=120)
        collector.wait(120)
        flood_s = time.perf_counter() - t0
        waited1 = run_queue_wait_s(network)
        loop.stop()
        ref_out, _ = reference.communicate("stop\n", timeout=WAIT_S)
    assert loop.error is None
    acks = [json.loads(line) for line in acks_file.read_bytes().splitlines()]
    starved = None if waited0 is None or waited1 is None else (waited1 - waited0) / flood_s
    return FloodRun(acks, flood_s, stats_summary(loop.stats), json.loads(ref_out), starved)


def test_flood_of_malformed_setpoints_does_not_disturb_the_cycle(broker: Broker, stations, probes,  # noqa: ANN001
                                                                  tmp_path: Path) -> None:
    st = stations(broker.port, "st-1")
    st.link.start()
    assert st.link.wait_ready(WAIT_S)
    op = probes(broker.port, "operator").connect()
    op.subscribe("stations/st-1/dispatch/ack")
    now = st.clock()
    op.publish("stations/st-1/dispatch/set", encode(setpoint(500, now=now, import_limit_kw=222.0,
                                                            valid_until=now + 600)))
    assert op.wait_for(lambda ms: len(ms) == 1) and op.messages[0].json()["accepted"]
    op.close()
    lease_before = st.manager.limits_at(st.clock())
    assert lease_before.source == "lease:sp-500"

    # the station's clock stands still from here: every message stays exactly as (in)valid as written,
    # however long a loaded machine takes to deliver them
    st.clock.frozen_at = now = st.clock()
    flood = tmp_path / "flood.txt"
    flood.write_bytes(b"\n".join(malformed(i, now) for i in range(FLOOD)) + b"\n")
    assert broker.proc is not None
    os.setpriority(os.PRIO_PROCESS, broker.proc.pid, ELSEWHERE_NICE)

    runs: list[FloodRun] = []
    for attempt in range(1, ATTEMPTS + 1):
        run = flood_once(st, broker, flood, tmp_path, attempt)
        runs.append(run)
        assert len(run.acks) == FLOOD and not any(a["accepted"] for a in run.acks)
        # acks come back in publish order (one connection, QoS 1, one topic), each with its own reason
        assert [a["reason"] for a in run.acks] == [EXPECTED[i % 10].value for i in range(FLOOD)]
        assert st.link.stats.dispatch_received == attempt * FLOOD + 1
        # the lease in force is untouched
        assert st.manager.limits_at(st.clock()) == lease_before
        print(f"attempt {attempt}: {run.summary()}")
        if not run.machine_busy:
            break

    # the cycle kept its timing
    run = min(runs, key=lambda r: (r.machine_busy, r.starved or 0.0))  # the first unstarved, or the least starved
    cycle, ref, summary = run.cycle, run.reference, run.summary()
    assert cycle["ticks"] >= run.flood_s / PERIOD_S * 0.9, summary  # it ran all along
    # what the machine does to any cycle (the reference), plus from the flood: a quarter period on the
    # typical tick, one period in the tail, at most 3 % missed periods. Measured on a 2-core box with the
    # service's GC settings and the CycleGate: 0 missed periods, p99 1-2 ms; without the gate 4-18 missed
    # periods and p99 34-65 ms (the GIL convoy, see station/control/loop.py), failing here.
    assert cycle["p50_s"] < ref["p50_s"] + PERIOD_S / 4, summary
    assert cycle["p99_s"] < ref["p99_s"] + PERIOD_S, summary
    assert cycle["overruns"] <= ref["overruns"] + max(2, cycle["ticks"] * 3 // 100), summary


def _fmt(s: dict[str, float]) -> str:
    return (f"{s['ticks']} ticks, {s['overruns']} overruns, lateness p50 {s['p50_s'] * 1e3:.2f} ms "
            f"p99 {s['p99_s'] * 1e3:.2f} ms max {s['max_s'] * 1e3:.2f} ms")
