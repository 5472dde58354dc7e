"""Debounce and lease-expiry logic with a fake clock: no sleeps, no tasks."""

from __future__ import annotations

import pytest

from trellis.control.push.debounce import Debouncer, expired_leases
from trellis.model.keys import ResourceKey
from trellis.store.base import Lease


def test_nothing_pending_means_no_deadline() -> None:
    d = Debouncer(quiet=0.02, max_delay=0.1)
    assert not d.pending
    assert d.deadline() is None
    assert not d.due(1e9)


def test_a_single_event_fires_after_the_quiet_period() -> None:
    d = Debouncer(quiet=0.02, max_delay=0.1)
    d.event(10.0)
    assert d.pending
    assert d.deadline() == pytest.approx(10.02)
    assert not d.due(10.019)
    assert d.due(10.02)


def test_each_event_of_a_burst_extends_the_quiet_period() -> None:
    d = Debouncer(quiet=0.02, max_delay=0.1)
    d.event(10.0)
    d.event(10.015)
    assert not d.due(10.03)
    assert d.deadline() == pytest.approx(10.035)
    assert d.due(10.035)


def test_a_steady_trickle_is_pushed_by_max_delay() -> None:
    d = Debouncer(quiet=2.0, max_delay=10.0)  # whole numbers: exact arithmetic
    now = 100.0
    fired_at = None
    while fired_at is None:
        d.event(now)  # an event every second: never quiet for two
        now += 1.0
        if d.due(now):
            fired_at = now
    assert fired_at == 110.0


def test_fire_starts_a_new_burst() -> None:
    d = Debouncer(quiet=0.02, max_delay=0.1)
    d.event(10.0)
    d.event(10.09)
    assert d.due(10.1)
    d.fire()
    assert not d.pending and d.deadline() is None
    d.event(10.2)
    assert d.deadline() == pytest.approx(10.22)  # not limited by the old burst's start


@pytest.mark.parametrize(("quiet", "max_delay"), [(-0.1, 0.1), (0.2, 0.1)])
def test_bad_settings_are_refused(quiet: float, max_delay: float) -> None:
    with pytest.raises(ValueError):
        Debouncer(quiet=quiet, max_delay=max_delay)


def _lease(name: str, expires_at: float, healthy: bool = True) -> Lease:
    return Lease(ResourceKey("Workload", "default", name), 10.0, expires_at, healthy)


def test_expired_leases_are_those_before_now() -> None:
    leases = [_lease("a", 99.0), _lease("b", 100.0), _lease("c", 101.0)]
    assert expired_leases(leases, 100.0) == {ResourceKey("Workload", "default", "a")}
    assert expired_leases(leases, 50.0) == frozenset()
    assert len(expired_leases(leases, 200.0)) == 3
