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
import signal
import subprocess
import sys
import threading
from pathlib import Path

from tests.conftest import REPO
from tests.mqtt.conftest import WAIT_S, Broker, Probe, env_with_repo, link_config

PERIOD_S = 0.02
STATION = "st-sf"
TOPIC = f"stations/{STATION}/telemetry"


class Controller:
    """A controller_proc.py child; ``committed`` lists the seqs it reported durable, in order."""

    def __init__(self, cfg_json: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "mqtt" / "controller_proc.py"), cfg_json, STATION, str(PERIOD_S)],
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

    def wait_committed(self, n: int) -> None:
        with self._cv:
            ok = self._cv.wait_for(lambda: len(self.committed) >= n or self.proc.poll() is not None, WAIT_S)
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


def _passwords(path: Path, *users: str) -> None:
    path.unlink(missing_ok=True)
    for i, user in enumerate(users):
        subprocess.run(["mosquitto_passwd", *(["-c"] if i == 0 else []), "-b", str(path), user, "pw-" + user],
                       check=True)


def test_outbox_survives_broker_crash_and_controller_sigkill(tmp_path: Path, probes, broker_factory) -> None:  # noqa: ANN001
    pwfile = tmp_path / "passwords"
    _passwords(pwfile, "operator", STATION)
    acl = f"allow_anonymous false\npassword_file {pwfile}\n"
    broker: Broker = broker_factory(extra=acl).start()
    (tmp_path / "st.pw").write_text("pw-" + STATION)
    cfg = link_config(broker.port, tmp_path / "outbox.sqlite", username=STATION,
                      password_file=str(tmp_path / "st.pw"))

    def subscriber(name: str) -> Probe:
        p = probes(broker.port, name)
        p.client.username_pw_set("operator", "pw-operator")
        p.connect()
        p.subscribe(TOPIC, 1)
        return p

    sub = subscriber("ingest-1")
    a = Controller(cfg.model_dump_json())
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
        b = Controller(cfg.model_dump_json())
        b.wait_committed(25)
        outage_seqs = set(seqs_a[committed_before_outage:]) | set(b.committed[:25])
        # 4. broker back, stations still shut out until the subscriber is in place
        _passwords(pwfile, "operator")
        broker.start()
        sub2 = subscriber("ingest-2")
        _passwords(pwfile, "operator", STATION)
        broker.proc.send_signal(signal.SIGHUP)  # reload the password file: the station may come in
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
