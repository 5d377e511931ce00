"""Store-and-forward across a broker crash AND a controller SIGKILL during the outage.

Timeline (real mosquitto, real controller processes, telemetry every 20 ms):

1. controller A publishes live; the operator's subscriber receives it;
2. the broker is SIGKILLed; A keeps producing into its outbox (the outage);
3. A is SIGKILLed in the middle of the outage; controller B starts on the same outbox file, still in the
   outage, and keeps producing;
4. the broker restarts. Its password file first admits only the operator, so the subscriber is
   re-subscribed before any station can publish (a gate, reopened by SIGHUP: no sleeps, no race);
5. B connects, replays the backlog in order, then goes live.

Two variants. *fast*: an outage of a few seconds with a 0.5 s backoff cap (B is refused and retries
several times). *one-minute*: the broker stays dead for at least 60 s (30 s of it for each controller,
telemetry every 100 ms) with the shipped backoff settings (0.5 s doubling to a 30 s cap), and B must be
back within the cap (plus slack for a loaded machine) once the broker admits it again. The bounds of
the outbox are tested separately in test_mqtt_outbox.py.

Checks: every seq either process committed arrives; seqs are contiguous from 1; first arrivals are in
strictly increasing order; every repeated copy is marked replay; everything produced during the outage
is marked historical; the traffic after recovery is live again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from station.config import MqttConfig
from tests.mqtt.conftest import Broker, Controller, Probe, link_config

STATION = "st-sf"
TOPIC = f"stations/{STATION}/telemetry"


@dataclass(frozen=True)
class Outage:
    period_s: float  # telemetry and cycle period of the controllers
    rows_a: int  # rows A commits during the outage before it is killed
    rows_b: int  # rows B commits during the outage
    min_outage_s: float
    reconnect_max_s: float | None  # None: the shipped default


FAST = Outage(0.02, 40, 25, 0.0, 0.5)
ONE_MINUTE = Outage(0.1, 300, 300, 60.0, None)
SLACK_S = 10.0  # a loaded 2-core machine: process start, TLS-free connect, replay of ~600 rows


@pytest.mark.parametrize("outage", [FAST, ONE_MINUTE], ids=["fast", "one-minute"])
def test_outbox_survives_broker_crash_and_controller_sigkill(tmp_path: Path, probes, broker_factory,  # noqa: ANN001
                                                             outage: Outage) -> None:
    broker: Broker = broker_factory(users=("operator", STATION)).start()
    (tmp_path / "st.pw").write_text("pw-" + STATION)
    shipped = MqttConfig()
    backoff = {"reconnect_min_s": shipped.reconnect_min_s, "reconnect_max_s": shipped.reconnect_max_s} \
        if outage.reconnect_max_s is None else {"reconnect_max_s": outage.reconnect_max_s}
    cfg = link_config(broker.port, tmp_path / "outbox.sqlite", username=STATION,
                      password_file=str(tmp_path / "st.pw"), telemetry_period_s=outage.period_s, **backoff)
    cap_s = cfg.reconnect_max_s
    rows_timeout = outage.rows_a * outage.period_s * 2 + 20.0

    def subscriber(name: str) -> Probe:
        p = probes(broker.port, name, user="operator").connect()
        p.subscribe(TOPIC, 1)
        return p

    sub = subscriber("ingest-1")
    a = Controller(cfg.model_dump_json(), STATION, outage.period_s)
    b: Controller | None = None
    try:
        # 1. live traffic
        assert sub.wait_for(lambda ms: len(ms) >= 20), "no live telemetry before the outage"
        # 2. broker crash; A keeps producing into its outbox
        broker.kill()
        down_at = time.monotonic()
        sub.close()  # it would auto-reconnect; a fresh subscriber comes back with the broker
        committed_before_outage = len(a.committed)
        a.wait_committed(committed_before_outage + outage.rows_a, rows_timeout)
        # 3. A dies in the middle of the outage; B takes over the same outbox, still offline
        seqs_a = a.sigkill()
        b = Controller(cfg.model_dump_json(), STATION, outage.period_s)
        b.wait_committed(outage.rows_b, rows_timeout)
        outage_seqs = set(seqs_a[committed_before_outage:]) | set(b.committed[:outage.rows_b])
        # 4. broker back, stations still shut out until the subscriber is in place
        broker.admit("operator")
        broker.start()
        sub2 = subscriber("ingest-2")
        outage_s = time.monotonic() - down_at
        assert outage_s >= outage.min_outage_s, f"the broker was down {outage_s:.1f} s only"
        broker.admit("operator", STATION)  # SIGHUP: the broker reloads its password file
        admitted_at = time.monotonic()
        # 5. B reconnects within its backoff cap, replays the backlog and goes live
        assert sub2.wait_for(lambda ms: len(ms) > 0, cap_s + SLACK_S), \
            f"nothing from the station within {cap_s:g} s (backoff cap) + {SLACK_S:g} s of the broker's return"
        back_after_s = time.monotonic() - admitted_at
        print(f"outage {outage_s:.1f} s, station back {back_after_s:.1f} s after the broker admitted it (cap {cap_s:g} s)")
        assert back_after_s <= cap_s + SLACK_S
        target = len(b.committed) + 25
        b.wait_committed(target, rows_timeout)
        last_b = b.committed[target - 1]
        assert sub2.wait_for(lambda ms: any(json.loads(m.payload)["seq"] >= last_b for m in ms)), \
            "backlog and live traffic did not arrive after the broker came back"
        all_committed = set(seqs_a) | set(b.committed[:target])
    finally:
        a.stop()
        if b is not None:
            b.stop()

    received = [json.loads(m.payload) for m in sub.on(TOPIC) + sub2.on(TOPIC)]
    first_copy: dict[int, dict] = {}
    order: list[int] = []
    for msg in received:
        seq = msg["seq"]
        if seq in first_copy:
            assert msg["replay"] is True, f"seq {seq} arrived twice without the replay mark"
        else:
            first_copy[seq] = msg
            order.append(seq)
    # in order, none lost, contiguous (nothing dropped: the bounds are far away)
    assert order == sorted(order), "telemetry arrived out of order"
    assert all_committed <= set(first_copy), f"lost: {sorted(all_committed - set(first_copy))[:20]}"
    assert order == list(range(order[0], order[-1] + 1)), "a gap in the sequence"
    # the second subscriber session sees the backlog; the first one saw the start
    assert outage_seqs, "nothing was produced during the outage"
    assert all(first_copy[s]["historical"] for s in outage_seqs), "outage data not marked historical"
    assert not first_copy[order[-1]]["historical"], "traffic after recovery should be live"
    # the payloads are the real telemetry of station.telemetry
    assert {"grid_kw", "limits", "guns", "health"} <= first_copy[order[-1]].keys()
