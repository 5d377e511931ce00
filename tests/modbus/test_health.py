"""Link health state machine and last-good-value ages (sans-IO: timestamps passed in)."""

from __future__ import annotations

import logging

import pytest

from drivers.modbus.health import Health, HealthPolicy, LastValues, LinkHealth


def test_starts_lost_and_becomes_ok_on_first_good_exchange() -> None:
    h = LinkHealth("dc-01", HealthPolicy(), now=10.0)
    assert h.state is Health.LOST
    change = h.record_ok(10.2)
    assert change is not None and (change.old, change.new, change.at) == (Health.LOST, Health.OK, 10.2)
    assert h.since == 10.2 and h.last_ok_at == 10.2


def test_one_miss_degrades_then_the_timer_loses_it() -> None:
    h = LinkHealth("dc-01", HealthPolicy(degraded_after=1, lost_after_s=1.0), now=0.0)
    h.record_ok(0.0)
    assert h.record_failure(0.1, "timeout").new is Health.DEGRADED
    assert h.record_failure(0.5, "timeout") is None  # still degraded: no new change
    assert h.state is Health.DEGRADED
    change = h.record_failure(1.0, "timeout")  # 1.0 s since the last good answer
    assert change is not None and change.new is Health.LOST and change.at == 1.0
    assert [(c.old, c.new) for c in h.changes] == [(Health.LOST, Health.OK), (Health.OK, Health.DEGRADED),
                                                     (Health.DEGRADED, Health.LOST)]


def test_degraded_after_counts_consecutive_failures_and_success_resets() -> None:
    h = LinkHealth("m", HealthPolicy(degraded_after=3, lost_after_s=10.0), now=0.0)
    h.record_ok(0.0)
    h.record_failure(0.1, "t")
    h.record_failure(0.2, "t")
    assert h.state is Health.OK
    h.record_ok(0.3)
    h.record_failure(0.4, "t")
    h.record_failure(0.5, "t")
    assert h.state is Health.OK  # the success in between reset the count
    assert h.record_failure(0.6, "t").new is Health.DEGRADED


def test_connection_failure_is_lost_at_once() -> None:
    h = LinkHealth("m", HealthPolicy(lost_after_s=10.0), now=0.0)
    h.record_ok(0.0)
    change = h.record_failure(0.1, "connection refused", connection_lost=True)
    assert change.new is Health.LOST and change.reason == "connection refused"


def test_check_ages_a_degraded_link_out_without_an_exchange() -> None:
    h = LinkHealth("m", HealthPolicy(lost_after_s=1.0), now=0.0)
    h.record_ok(0.0)
    h.record_failure(0.2, "t")
    assert h.check(0.9) is None
    assert h.check(1.0).new is Health.LOST


def test_logs_once_per_transition_not_per_failure(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="drivers.modbus.health")
    h = LinkHealth("bess", HealthPolicy(lost_after_s=1.0), now=0.0)
    h.record_ok(0.0)
    for i in range(1, 50):
        h.record_failure(i * 0.1, "timeout")
    lines = [r.getMessage() for r in caplog.records if r.name == "drivers.modbus.health"]
    assert lines == ["modbus device bess: lost -> ok (answering)",
                     "modbus device bess: ok -> degraded (timeout)",
                     "modbus device bess: degraded -> lost (timeout)"]


def test_policy_rejects_nonsense() -> None:
    with pytest.raises(ValueError):
        HealthPolicy(degraded_after=0)
    with pytest.raises(ValueError):
        HealthPolicy(lost_after_s=0)


def test_last_values_keep_value_and_age_and_flag_stale() -> None:
    values = LastValues()
    values.update({"dc_voltage": 801.5, "status": 3}, at=5.0, max_age_s={"dc_voltage": 0.5, "status": 5.0})
    r = values["dc_voltage"]
    assert (r.value, r.at) == (801.5, 5.0)
    assert r.age_s(5.25) == pytest.approx(0.25)
    assert not r.is_stale(5.5)
    assert r.is_stale(5.51)
    assert values.stale(6.0) == ["dc_voltage"]
    values.update({"dc_voltage": 802.0}, at=6.0, max_age_s=0.5)
    assert values["dc_voltage"].value == 802.0 and values.stale(6.0) == []
    assert set(values) == {"dc_voltage", "status"}
