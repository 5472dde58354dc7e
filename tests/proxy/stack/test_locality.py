"""Priorities and localities (locality.py, pure) and the cluster's use of them: Envoy's
priority load with the 1.4 overprovisioning factor, failover as a zone's hosts are ejected,
per-priority panic, locality weights; a cluster with one priority and one locality keeps
its single-level path."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.proxy.stack.fakeloop import FakeLoop, unused_pool

from trellis.proxy.config.resources import ClusterConfig, EndpointConfig, LbConfig, OutlierConfig
from trellis.proxy.stack.cluster import ClusterRuntime
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.locality import choose, health, layered, levels_of, priority_loads


def host(i: int, priority: int = 0, locality: str = "", weight: int = 0) -> Host:
    e = EndpointConfig(
        f"10.0.0.{i}", 80, locality=locality, priority=priority, locality_weight=weight
    )
    return Host(e, unused_pool(e.address))


def test_health_is_the_healthy_share_times_1_4_at_most_100() -> None:
    assert health(5, 10) == pytest.approx(70.0)
    assert health(8, 10) == 100.0
    assert health(0, 10) == 0.0 and health(0, 0) == 0.0


@pytest.mark.parametrize(
    ("healths", "loads"),
    [
        ([100.0, 100.0], [100.0, 0.0]),
        ([70.0, 100.0], [70.0, 30.0]),  # 50% healthy in P0: 70% stays, 30% spills
        ([70.0, 20.0, 100.0], [70.0, 20.0, 10.0]),
        ([40.0, 20.0], [pytest.approx(66.67, abs=0.01), pytest.approx(33.33, abs=0.01)]),
        ([0.0, 0.0], [100.0, 0.0]),  # nothing healthy: all to P0 (in panic)
    ],
)
def test_priority_loads(healths: list[float], loads: list[float]) -> None:
    assert priority_loads(healths) == loads


@given(st.lists(st.floats(0, 100), min_size=1, max_size=6))
def test_priority_loads_always_add_up_to_100(healths: list[float]) -> None:
    loads = priority_loads(healths)
    assert sum(loads) == pytest.approx(100.0)
    assert all(load >= 0 for load in loads)
    if sum(healths) >= 100:
        assert all(load <= h + 1e-9 for load, h in zip(loads, healths, strict=True))


def test_layered_only_with_several_priorities_or_weighted_localities() -> None:
    assert not layered([host(0), host(1)], locality_weighted=True)
    assert not layered([host(0, locality="a"), host(1, locality="b")], locality_weighted=False)
    assert layered([host(0, locality="a"), host(1, locality="b")], locality_weighted=True)
    assert layered([host(0), host(1, priority=1)], locality_weighted=False)


def shares(
    hosts: list[Host], n: int = 4000, threshold: float = 50.0, weighted: bool = False
) -> Counter[int]:
    """How often each host is a candidate, each draw's candidates sharing one count (as if
    the balancer then spread evenly among them): the counts add up to `n`."""
    rng = random.Random(7)
    levels = levels_of(hosts)
    out: Counter[int] = Counter()
    for _ in range(n):
        candidates = choose(levels, threshold, weighted, rng.random(), rng.random())
        for h in candidates:
            out[hosts.index(h)] += 1 / len(candidates)  # type: ignore[assignment]
    return Counter({i: c for i, c in out.items() if c > 0})


def test_failover_follows_the_healthy_share_of_the_preferred_priority() -> None:
    local = [host(i, 0, "zone-a") for i in range(4)]
    remote = [host(i + 4, 1, "zone-b") for i in range(4)]
    hosts = local + remote
    assert set(shares(hosts)) == {0, 1, 2, 3}  # all healthy: the own zone only
    local[0].ejected = True  # 75% x 1.4 > 100%: still all local
    assert set(shares(hosts)) == {1, 2, 3}
    local[1].ejected = True  # 50% x 1.4 = 70% stays local, 30% fails over
    got = shares(hosts)
    spilled = sum(got[i] for i in range(4, 8)) / sum(got.values())
    assert spilled == pytest.approx(0.30, abs=0.03)
    for h in local:
        h.ejected = True  # the zone is gone: everything to the other
    assert set(shares(hosts)) == {4, 5, 6, 7}


def test_a_priority_in_panic_uses_all_its_hosts() -> None:
    local = [host(i, 0) for i in range(4)]
    remote = [host(4, 1)]
    for h in local[:3]:
        h.ejected = True
    remote[0].ejected = True
    # P0: 25% healthy -> health 35; P1: 0. Total < 100 and 25% < 50: P0 panics.
    assert set(shares(local + remote)) == {0, 1, 2, 3}
    assert set(shares(local + remote, threshold=0)) == {3}  # panic off


def test_locality_weights_times_health() -> None:
    a = [host(i, 0, "a", weight=3) for i in range(2)]
    b = [host(i + 2, 0, "b", weight=1) for i in range(2)]
    got = shares(a + b, weighted=True)
    in_a = (got[0] + got[1]) / sum(got.values())
    assert in_a == pytest.approx(0.75, abs=0.03)
    a[0].ejected = True  # a's health: 50% x 1.4 = 70%: weights 3 x 0.7 = 2.1 against 1
    got = shares(a + b, weighted=True)
    assert got[0] == 0
    assert got[1] / sum(got.values()) == pytest.approx(2.1 / 3.1, abs=0.03)


async def test_the_cluster_prefers_its_own_zone_and_fails_over() -> None:
    endpoints = tuple(
        EndpointConfig(f"10.0.{p}.{i}", 80, locality=f"zone-{p}", priority=p)
        for p in (0, 1)
        for i in range(2)
    )
    od = OutlierConfig(consecutive_5xx=1, max_ejection_percent=100)
    config = ClusterConfig("c", lb=LbConfig("round_robin"), outlier=od)
    runtime = ClusterRuntime(config, endpoints, loop=FakeLoop())  # type: ignore[arg-type]
    zones = Counter((h := runtime.pick()) is not None and h.config.locality for _ in range(200))
    assert zones == {"zone-0": 200}
    for h in runtime.hosts[:2]:
        runtime.record(h, 503)
    zones = Counter((h := runtime.pick()) is not None and h.config.locality for _ in range(200))
    assert zones == {"zone-1": 200}
