"""MQTT grid-operator link benchmarks (issue 6), against a real Mosquitto on loopback.

    .venv/bin/python -m bench.bench_mqtt [--setpoints 3000] [--telemetry 20000]

1. Setpoint latency: operator publishes a setpoint (QoS 1) -> the station's link receives it -> the
   dispatch manager validates it and the lease is active. Closed loop (the next setpoint is published
   once the previous one is active), so the figure is latency, not queueing. Unsigned, HMAC-SHA256 and
   Ed25519 (JWS), with the in-process ``submit()`` cost as the baseline.
2. Telemetry throughput through the outbox (SQLite, QoS 1, row deleted on PUBACK), with fsync per
   commit on and off, against raw paho QoS 1 publishing of the same payloads (same in-flight window).
3. Backlog drain: rows stored during an outage, sent when the broker is reachable.

Prints a Markdown table (paste into docs/benchmarks.md with the machine load it reports).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from paho.mqtt.enums import CallbackAPIVersion

from drivers.mqtt.link import MqttLink
from drivers.mqtt.outbox import Outbox
from drivers.mqtt.signing import JwsVerifier, sign
from station import telemetry as payloads
from station.config import MqttConfig, load_config
from station.dispatch import DispatchManager, GridLimits, Verifier, no_signature
from tests.mqtt.conftest import Broker  # the same broker harness as the tests

REPO = Path(__file__).resolve().parent.parent

STATION = "bench-1"
HMAC_KEY = os.urandom(32)
ED_KEY = Ed25519PrivateKey.generate()


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def link_cfg(port: int, outbox: Path, fsync: bool = False) -> MqttConfig:
    return MqttConfig.model_validate({"host": "127.0.0.1", "port": port, "reconnect_min_s": 0.05,
                                      "reconnect_max_s": 0.5,
                                      "outbox": {"path": str(outbox), "fsync_each_commit": fsync,
                                                 "max_queued_messages": 1_000_000}})


def operator(port: int) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-operator", protocol=mqtt.MQTTv5)
    ready = threading.Event()
    client.on_connect = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as any low-latency publisher
    client.loop_start()
    assert ready.wait(10)
    return client


def message(seq: int, mode: str) -> bytes:
    now = time.time()
    body = json.dumps({"id": f"b{seq}", "seq": seq, "issued_at": now, "valid_until": now + 600,
                       "import_limit_kw": 100.0 + seq % 200, "export_limit_kw": 0.0}).encode()
    if mode == "hmac-sha256":
        return sign(body, HMAC_KEY)
    if mode == "ed25519":
        return sign(body, ED_KEY)
    return body


def bench_setpoints(port: int, tmp: Path, n: int, mode: str, verifier: Verifier) -> dict[str, float]:
    cfg = load_config(REPO / "config" / "station.yaml")
    manager = DispatchManager.from_config(cfg, verifier)
    active: dict[int, float] = {}
    cv = threading.Condition()

    def on_dispatch(payload: bytes) -> list[dict[str, Any]]:
        acks = manager.submit(payload, time.time())
        done = time.perf_counter()
        if acks[0].accepted:
            with cv:
                active[acks[0].seq or 0] = done
                cv.notify()
        return [a.to_payload() for a in acks]

    link = MqttLink(link_cfg(port, tmp / f"sp-{mode}.sqlite"), STATION, Outbox(tmp / f"sp-{mode}.sqlite"),
                    on_dispatch=on_dispatch)
    link.start()
    assert link.wait_ready(10)
    op = operator(port)
    topic = f"stations/{STATION}/dispatch/set"
    lat: list[float] = []
    try:
        for seq in range(1, n + 1):
            msg = message(seq, mode)
            t0 = time.perf_counter()
            op.publish(topic, msg, qos=1)
            with cv:
                assert cv.wait_for(lambda: seq in active, 10), f"setpoint {seq} not active"
            lat.append(active[seq] - t0)
    finally:
        op.disconnect()
        op.loop_stop()
        link.stop()
    # the component alone, same messages, same verifier (baseline)
    alone = DispatchManager.from_config(cfg, verifier)
    msgs = [message(seq, mode) for seq in range(1, n + 1)]
    t0 = time.perf_counter()
    for msg in msgs:
        alone.submit(msg, time.time())
    submit_s = (time.perf_counter() - t0) / n
    return {"p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "max": max(lat), "submit": submit_s}


def telemetry_body(i: int) -> dict[str, Any]:
    guns = [payloads.GunSample(f"G{g}", True, "charging", 120.0 + g, 250.0, 480.0, 0.5) for g in range(8)]
    return payloads.telemetry(time.time(), grid_kw=900.0 + i % 50, limits=GridLimits(1000, 0, None, 200, "fallback", None),
                              dispatch={"source": "fallback"}, guns=guns,
                              health={f"dev{d}": "ok" for d in range(12)}, bess_kw=-100.0, bess_soc=0.6)


def drain(link: MqttLink, n: int, timeout: float = 600) -> None:
    end = time.monotonic() + timeout
    while link.stats.delivered < n:  # the benchmark's own progress probe; tests never poll like this
        if time.monotonic() > end:
            raise TimeoutError(f"{link.stats.delivered}/{n} delivered")
        time.sleep(0.005)


def bench_outbox(port: int, tmp: Path, n: int, fsync: bool) -> float:
    path = tmp / f"tel-{fsync}.sqlite"
    link = MqttLink(link_cfg(port, path, fsync), STATION, Outbox(path, fsync=fsync))
    link.start()
    assert link.wait_ready(10)
    bodies = [telemetry_body(i) for i in range(n)]
    t0 = time.perf_counter()
    for b in bodies:
        link.publish_telemetry(b)
    drain(link, n)
    rate = n / (time.perf_counter() - t0)
    link.stop()
    return rate


def bench_raw_paho(port: int, n: int, window: int = 20) -> float:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="bench-raw", protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(window)
    done = threading.Event()
    count = [0]

    def on_publish(*_: Any) -> None:
        count[0] += 1
        if count[0] == n:
            done.set()

    client.on_publish = on_publish
    ready = threading.Event()
    client.on_connect = lambda *a: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10)
    bodies = [payloads.encode(telemetry_body(i)) for i in range(n)]
    t0 = time.perf_counter()
    for b in bodies:
        client.publish(f"stations/{STATION}/telemetry", b, qos=1)
    assert done.wait(600)
    rate = n / (time.perf_counter() - t0)
    client.disconnect()
    client.loop_stop()
    return rate


def bench_backlog(broker: Broker, tmp: Path, n: int) -> float:
    path = tmp / "backlog.sqlite"
    box = Outbox(path, fsync=False)
    with box.batch() as b:
        for i in range(n):
            b.append(f"stations/{STATION}/telemetry", payloads.encode(telemetry_body(i)), 0)
    link = MqttLink(link_cfg(broker.port, path), STATION, box)
    t0 = time.perf_counter()
    link.start()
    drain(link, n)
    rate = n / (time.perf_counter() - t0)
    link.stop()
    return rate


def mosquitto_version() -> str:
    """"mosquitto version 2.0.11" (the first line of ``mosquitto -h``, which exits non-zero)."""
    out = subprocess.run(["mosquitto", "-h"], capture_output=True, text=True, check=False).stdout
    return out.splitlines()[0].strip() if out else "mosquitto (version unknown)"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--setpoints", type=int, default=3000)
    ap.add_argument("--telemetry", type=int, default=20000)
    args = ap.parse_args(argv)
    load = os.getloadavg()
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        broker = Broker(tmp).start()
        try:
            verifiers: dict[str, Callable[[bytes], bytes]] = {
                "unsigned": no_signature, "hmac-sha256": JwsVerifier(HMAC_KEY),
                "ed25519": JwsVerifier(ED_KEY.public_key())}
            for mode, verifier in verifiers.items():
                r = bench_setpoints(broker.port, tmp, args.setpoints, mode, verifier)
                rows.append((f"setpoint -> lease active, {mode} ({args.setpoints} closed-loop)",
                             f"p50 {r['p50'] * 1e3:.3f} ms, p99 {r['p99'] * 1e3:.3f} ms, max {r['max'] * 1e3:.2f} ms; "
                             f"submit() alone {r['submit'] * 1e6:.0f} us"))
            raw = bench_raw_paho(broker.port, args.telemetry)
            rows.append((f"telemetry, raw paho QoS 1, no outbox ({args.telemetry} x ~1.3 kB)", f"{raw:,.0f} msg/s (baseline)"))
            for fsync in (False, True):
                rate = bench_outbox(broker.port, tmp, args.telemetry, fsync)
                rows.append((f"telemetry through the outbox, fsync per commit {'on' if fsync else 'off'}",
                             f"{rate:,.0f} msg/s ({rate / raw:.2f} x raw)"))
            backlog = bench_backlog(broker, tmp, args.telemetry)
            rows.append((f"backlog drain after an outage ({args.telemetry} rows)", f"{backlog:,.0f} msg/s"))
        finally:
            broker.kill()
    print(f"\nMQTT link, {mosquitto_version()} on loopback, Python {sys.version.split()[0]}, "
          f"{os.cpu_count()} cores, load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}\n")
    print("| measurement | result |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
