"""Real Mosquitto brokers on free loopback ports, and a small MQTT probe client for the tests.

The broker is the Debian ``mosquitto`` binary (installed by ``.ci/setup --dev``), started with a config
file written per test. Readiness is taken from the broker's own log line, never from a sleep.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from drivers.mqtt.link import MqttLink
from drivers.mqtt.outbox import Outbox
from station import telemetry as payloads
from station.config import MqttConfig, StationConfig, load_config
from station.dispatch import DispatchManager
from tests.conftest import REPO, free_tcp_port

START_TIMEOUT_S = 20.0
WAIT_S = 20.0  # generous: the CI machine has 2 busy cores


class Broker:
    """One mosquitto process. ``extra`` is appended to a loopback listener config, or is the whole config
    (``full_config``, listener included) with only the log and user lines added."""

    def __init__(self, workdir: Path, *, extra: str = "", port: int | None = None,
                 users: tuple[str, ...] = (), full_config: bool = False) -> None:
        self.workdir = workdir
        self.port = port or free_tcp_port()
        self.extra = extra
        self.full_config = full_config
        self.password_file = workdir / f"passwords-{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        if users:  # username/password auth; each user's password is "pw-<user>"
            self.admit(*users)
            self.extra = f"allow_anonymous false\npassword_file {self.password_file}\n" + extra
        self.log: list[str] = []
        self._log_cv = threading.Condition()
        self._ready = threading.Event()

    def config_text(self) -> str:
        common = [
            f"user {getpass.getuser()}",  # as root, mosquitto would otherwise drop to 'mosquitto'
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "log_type subscribe",  # "<client id> <qos> <topic filter>": the tests check subscription QoS
        ]
        if self.full_config:  # a complete config (e.g. config/mosquitto/mosquitto.conf, rewritten)
            return "\n".join(common + [self.extra, ""])
        return "\n".join([
            f"listener {self.port} 127.0.0.1",
            *common,
            "persistence false",
            "max_queued_messages 0",  # the tests' subscribers must never lose a queued QoS 1 message
            "set_tcp_nodelay true",  # as config/mosquitto/mosquitto.conf: no Nagle delay on dispatch
            self.extra or "allow_anonymous true",
            "",
        ])

    def start(self) -> Broker:
        conf = self.workdir / f"mosquitto-{self.port}.conf"
        conf.write_text(self.config_text())
        self._ready.clear()
        self.proc = subprocess.Popen(["mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, text=True)
        threading.Thread(target=self._read_log, args=(self.proc,), daemon=True).start()
        if not self._ready.wait(START_TIMEOUT_S):
            self.kill()
            pytest.fail("mosquitto did not start:\n" + "\n".join(self.log[-20:]))
        return self

    def _read_log(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            with self._log_cv:
                self.log.append(line.rstrip())
                self._log_cv.notify_all()
            if " running" in line:
                self._ready.set()
        self._ready.set()  # exited: start() reports the log

    def wait_log(self, text: str, timeout: float) -> bool:
        """Wait until the broker logged a line containing ``text`` (e.g. a client id connecting)."""
        with self._log_cv:
            return self._log_cv.wait_for(lambda: any(text in line for line in self.log), timeout)

    def admit(self, *users: str) -> None:
        """Rewrite the password file to admit exactly ``users``; a running broker reloads it (SIGHUP)."""
        self.password_file.unlink(missing_ok=True)
        self.password_file.touch()
        for user in users:
            subprocess.run(["mosquitto_passwd", "-b", str(self.password_file), user, "pw-" + user], check=True)
        if self.running():
            assert self.proc is not None
            self.proc.send_signal(signal.SIGHUP)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without closing anything cleanly (a crash or power cut)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture
def broker_factory(tmp_path: Path) -> Iterator[Callable[..., Broker]]:
    brokers: list[Broker] = []

    def make(**kw: Any) -> Broker:
        b = Broker(tmp_path, **kw)
        brokers.append(b)
        return b

    yield make
    for b in brokers:
        b.kill()


@pytest.fixture
def broker(broker_factory: Callable[..., Broker]) -> Broker:
    return broker_factory().start()


@pytest.fixture
def station_cfg() -> StationConfig:
    return load_config(REPO / "config" / "station.yaml")


def link_config(port: int, outbox_path: Path, **overrides: Any) -> MqttConfig:
    """An MqttConfig for the test broker: fast reconnects so outages are short."""
    data: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": port,
        "reconnect_min_s": 0.05,
        "reconnect_max_s": 0.5,
        "keepalive_s": 10,
        "telemetry_period_s": 0.02,  # stand-in controllers publish every 20 ms cycle: outages fill quickly
        "outbox": {"path": str(outbox_path), "fsync_each_commit": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return MqttConfig.model_validate(data)


class WallClock:
    """The injected wall clock of the dispatch manager in link tests: real time plus a test offset, so
    lease expiry is reached by moving the clock, not by waiting. ``frozen_at`` stops it (a test whose
    messages must stay as fresh as when they were written, however long a loaded machine takes)."""

    def __init__(self) -> None:
        self.offset = 0.0
        self.frozen_at: float | None = None

    def __call__(self) -> float:
        if self.frozen_at is not None:
            return self.frozen_at
        return time.time() + self.offset


@dataclass
class Station:
    """One in-process station: dispatch manager + MQTT link + outbox, the way the service wires them."""

    link: MqttLink
    manager: DispatchManager
    clock: WallClock

    def cycle(self) -> None:
        """What the control cycle does for the link: publish dispatch events and reports."""
        self.manager.limits_at(self.clock())
        for e in self.manager.drain_events():
            self.link.publish_event(payloads.dispatch_event(e))
        for r in self.manager.drain_reports():
            self.link.publish_report(r)


@pytest.fixture
def stations(tmp_path: Path, station_cfg: StationConfig) -> Iterator[Callable[..., Station]]:
    made: list[Station] = []

    def make(port: int, station_id: str = "st-1", *, verifier: Any = None, user: str | None = None,
             on_committed: Callable[[list[int]], None] | None = None, **overrides: Any) -> Station:
        if user is not None:  # a Broker(users=...) account: password "pw-<user>"
            (tmp_path / f"{user}.pw").write_text("pw-" + user)
            overrides.update(username=user, password_file=str(tmp_path / f"{user}.pw"))
        cfg = link_config(port, tmp_path / f"outbox-{station_id}.sqlite", **overrides)
        clock = WallClock()
        manager = DispatchManager.from_config(station_cfg, verifier) if verifier else \
            DispatchManager.from_config(station_cfg)
        outbox = Outbox.from_config(cfg.outbox, clock=clock)
        link = MqttLink(cfg, station_id, outbox, firmware="test-1.0", config_sha256="0" * 64,
                        on_dispatch=lambda p: [a.to_payload() for a in manager.submit(p, clock())],
                        on_committed=on_committed, wall_clock=clock)
        st = Station(link, manager, clock)
        made.append(st)
        return st

    yield make
    for st in made:
        st.link.stop()
        st.link.outbox.close()


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    properties: Any = None
    qos: int = 0

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Probe:
    """A test-side MQTT client (operator, fleet consumer, rogue station) collecting what it receives."""

    port: int
    client_id: str
    protocol: int = mqtt.MQTTv5
    tls: Any = None  # an ssl.SSLContext
    cv: threading.Condition | None = None  # shared by probes that are waited on together
    user: str | None = None  # a Broker(users=...) account
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cv = self.cv or threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol)
        if self.tls is not None:
            self.client.tls_set_context(self.tls)
        self.client.on_message = self._on_message
        if self.user is not None:
            self.client.username_pw_set(self.user, "pw-" + self.user)
        self.connack: Any = None

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cv:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain), msg.properties, msg.qos))
            self._cv.notify_all()

    def connect(self, **kw: Any) -> Probe:
        done = threading.Event()

        def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
            self.connack = reason
            done.set()

        self.client.on_connect = on_connect
        self.client.connect("127.0.0.1", self.port, 30, **kw)
        self.client.loop_start()
        assert done.wait(WAIT_S), f"{self.client_id}: no CONNACK"
        assert not self.connack.is_failure, f"{self.client_id}: refused: {self.connack}"
        return self

    def subscribe(self, topic: str, qos: int = 1) -> list[Any]:
        done = threading.Event()
        result: list[Any] = []

        def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, reasons: list[Any], props: Any) -> None:
            result.extend(reasons)
            done.set()

        self.client.on_subscribe = on_subscribe
        self.client.subscribe(topic, qos)
        assert done.wait(WAIT_S), f"{self.client_id}: no SUBACK for {topic}"
        return result

    def publish(self, topic: str, payload: bytes, qos: int = 1, properties: Any = None, retain: bool = False) -> Any:
        """Publish and wait for the PUBACK; returns the PUBACK reason code (MQTT 5)."""
        codes: dict[int, Any] = {}
        done = threading.Condition()

        def on_publish(client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
            with done:
                codes[mid] = reason
                done.notify_all()

        self.client.on_publish = on_publish
        info = self.client.publish(topic, payload, qos=qos, properties=properties, retain=retain)
        if qos == 0:
            return None
        with done:
            assert done.wait_for(lambda: info.mid in codes, WAIT_S), f"{self.client_id}: no PUBACK on {topic}"
        return codes[info.mid]

    def publish_nowait(self, topic: str, payload: bytes, qos: int = 1) -> Any:
        return self.client.publish(topic, payload, qos=qos)

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float = WAIT_S) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: predicate(self.messages), timeout)

    def on(self, topic: str) -> list[Received]:
        with self._cv:
            return [m for m in self.messages if m.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def probes() -> Iterator[Callable[..., Probe]]:
    made: list[Probe] = []

    def make(port: int, client_id: str, **kw: Any) -> Probe:
        p = Probe(port, client_id, **kw)
        made.append(p)
        return p

    yield make
    for p in made:
        try:
            p.close()
        except Exception:  # noqa: BLE001 - a probe whose broker was killed
            pass


class Controller:
    """A controller_proc.py child (link + outbox + telemetry every ``period_s``); ``committed`` lists the seqs
    it reported durable, in order."""

    def __init__(self, cfg_json: str, station_id: str, period_s: float = 0.02) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "mqtt" / "controller_proc.py"), cfg_json, station_id, str(period_s)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_repo(), cwd=REPO,
        )
        self.committed: list[int] = []
        self._cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("C "):
                with self._cv:
                    self.committed.extend(int(x) for x in line.split()[1:])
                    self._cv.notify_all()
        with self._cv:
            self._cv.notify_all()

    def wait_committed(self, n: int, timeout: float = WAIT_S) -> None:
        with self._cv:
            ok = self._cv.wait_for(lambda: len(self.committed) >= n or self.proc.poll() is not None, timeout)
        stderr = "" if self.proc.poll() is None else (self.proc.stderr.read() if self.proc.stderr else "")
        assert ok and len(self.committed) >= n, f"controller committed {len(self.committed)} < {n}\n{stderr}"

    def sigkill(self) -> list[int]:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        with self._cv:
            return list(self.committed)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


def env_with_repo() -> dict[str, str]:
    """Environment for child Python processes that import the project from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
