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
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from station.config import MqttConfig, StationConfig, load_config
from tests.conftest import REPO, free_tcp_port

START_TIMEOUT_S = 20.0
WAIT_S = 20.0  # generous: the CI machine has 2 busy cores


class Broker:
    """One mosquitto process. ``extra`` is appended to the listener config (TLS, ACL, ...)."""

    def __init__(self, workdir: Path, *, extra: str = "", port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_tcp_port()
        self.extra = extra
        self.proc: subprocess.Popen[str] | None = None
        self.log: list[str] = []
        self._ready = threading.Event()

    def config_text(self) -> str:
        return "\n".join([
            f"listener {self.port} 127.0.0.1",
            f"user {getpass.getuser()}",  # as root, mosquitto would otherwise drop to 'mosquitto'
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "persistence false",
            "max_queued_messages 0",  # the tests' subscribers must never lose a queued QoS 1 message
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
            self.log.append(line.rstrip())
            if " running" in line:
                self._ready.set()
        self._ready.set()  # exited: start() reports the log

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
        "outbox": {"path": str(outbox_path), "fsync_each_commit": False},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(data.get(key), dict):
            data[key] = {**data[key], **value}
        else:
            data[key] = value
    return MqttConfig.model_validate(data)


@dataclass
class Received:
    topic: str
    payload: bytes
    retain: bool
    properties: Any = None

    def json(self) -> Any:
        return json.loads(self.payload)


@dataclass
class Probe:
    """A test-side MQTT client (operator, fleet consumer, rogue station) collecting what it receives."""

    port: int
    client_id: str
    protocol: int = mqtt.MQTTv5
    tls: Any = None  # an ssl.SSLContext
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cv = threading.Condition()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=self.protocol)
        if self.tls is not None:
            self.client.tls_set_context(self.tls)
        self.client.on_message = self._on_message
        self.connack: Any = None

    def _on_message(self, client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cv:
            self.messages.append(Received(msg.topic, msg.payload, bool(msg.retain), msg.properties))
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


def env_with_repo() -> dict[str, str]:
    """Environment for child Python processes that import the project from this checkout."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    return env
