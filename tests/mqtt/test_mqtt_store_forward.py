"""Store-and-forward across a broker crash AND a controller SIGKILL during the outage.

Timeline (real mosquitto, real controller processes, telemetry every 20 ms):

1. controller A publishes live; the operator's subscriber receives it;
2. the broker is SIGKILLed; A keeps producing into its outbox (the outage);
3. A is SIGKILLed in the middle of the outage; controller B starts on the same outbox file, still in the
   outage, and keeps producing;
4. the broker restarts. Its password file first admits only the operator, so the subscriber is
   re-subscribed before any station can publish (a gate, reopened by SIGHUP: no sleeps, no race);
5. B connects, replays the backlog in order, then goes live.

The outage lasts a few seconds instead of a minute: what matters is that it outlasts the reconnect
backoff cap (0.5 s here, so B is refused and retries several times), spans the controller's death and
restart, and accumulates a backlog from both processes. Nothing in the code depends on its length except
the outbox bounds, tested separately in test_mqtt_outbox.py.

Checks: every seq either process committed arrives; seqs are contiguous from 1; first arrivals are in
strictly increasing order; every repeated copy is marked replay; everything produced during the outage
is marked historical; the traffic after recovery is live again.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.mqtt.conftest import Broker, Controller, Probe, link_config

STATION = "st-sf"
TOPIC = f"stations/{STATION}/telemetry"


def test_outbox_survives_broker_crash_and_controller_sigkill(tmp_path: Path, probes, broker_factory) -> None:  # noqa: ANN001
    broker: Broker = broker_factory(users=("operator", STATION)).start()
    (tmp_path / "st.pw").write_text("pw-" + STATION)
    cfg = link_config(broker.port, tmp_path / "outbox.sqlite", username=STATION,
                      password_file=str(tmp_path / "st.pw"))

    def subscriber(name: str) -> Probe:
        p = probes(broker.port, name, user="operator").connect()
        p.subscribe(TOPIC, 1)
        return p

    sub = subscriber("ingest-1")
    a = Controller(cfg.model_dump_json(), STATION)
    b: Controller | None = None
    try:
        # 1. live traffic
        assert sub.wait_for(lambda ms: len(ms) >= 20), "no live telemetry before the outage"
        # 2. broker crash; A keeps producing into its outbox
        broker.kill()
        sub.close()  # it would auto-reconnect; a fresh subscriber comes back with the broker
        committed_before_outage = len(a.committed)
        a.wait_committed(committed_before_outage + 40)
        # 3. A dies in the middle of the outage; B takes over the same outbox, still offline
        seqs_a = a.sigkill()
        b = Controller(cfg.model_dump_json(), STATION)
        b.wait_committed(25)
        outage_seqs = set(seqs_a[committed_before_outage:]) | set(b.committed[:25])
        # 4. broker back, stations still shut out until the subscriber is in place
        broker.admit("operator")
        broker.start()
        sub2 = subscriber("ingest-2")
        broker.admit("operator", STATION)  # SIGHUP: the broker reloads its password file
        # 5. B replays the backlog and goes live
        target = len(b.committed) + 25
        b.wait_committed(target)
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
