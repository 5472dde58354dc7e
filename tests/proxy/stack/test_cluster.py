"""ClusterRuntime, with a fake loop clock: outlier ejection after consecutive failures, its
duration and return at the interval check, the ejection cap, panic mode below the panic
threshold (for every balancer, ring hash included), retries avoiding the host that failed,
config updates that keep the hosts that stay, and the metrics and events of ejections."""

from __future__ import annotations

import json
import logging
from collections import Counter

import pytest
from tests.proxy.stack.fakeloop import FakeLoop

from trellis.proxy.config.resources import (
    CircuitLimits,
    ClusterConfig,
    EndpointConfig,
    LbConfig,
    LbKind,
    OutlierConfig,
)
from trellis.proxy.config.state import ConfigState
from trellis.proxy.stack.balance import hash64
from trellis.proxy.stack.cluster import PEER_IDLE_TIMEOUT, ClusterManager, ClusterRuntime
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.pool import IDLE_TIMEOUT

LB_KINDS: list[LbKind] = ["least_request", "round_robin", "ring_hash"]


def endpoints(n: int) -> tuple[EndpointConfig, ...]:
    return tuple(EndpointConfig(f"10.0.0.{i}", 8080) for i in range(n))


def cluster(
    n: int,
    outlier: OutlierConfig | None = None,
    lb: LbKind = "round_robin",
    panic_threshold: float = 50.0,
) -> tuple[ClusterRuntime, FakeLoop]:
    """A runtime on a loop whose clock the test moves."""
    loop = FakeLoop()
    config = ClusterConfig("c", lb=LbConfig(lb), outlier=outlier, panic_threshold=panic_threshold)
    runtime = ClusterRuntime(config, endpoints(n), loop=loop)  # type: ignore[arg-type]
    return runtime, loop


def picked(runtime: ClusterRuntime, n: int = 100, key: int | None = None) -> Counter[int]:
    out: Counter[int] = Counter()
    for _ in range(n):
        h = runtime.pick(key)
        assert h is not None
        out[runtime.hosts.index(h)] += 1
    return out


def ejected(runtime: ClusterRuntime) -> list[int]:
    return [i for i, h in enumerate(runtime.hosts) if h.ejected]


async def test_consecutive_5xx_ejects_and_the_host_comes_back_at_the_interval_check() -> None:
    od = OutlierConfig(consecutive_5xx=3, interval=1.0, base_ejection=30.0, max_ejection_percent=50)
    runtime, loop = cluster(3, od)
    bad = runtime.hosts[0]
    runtime.record(bad, 503)
    runtime.record(bad, 500)
    runtime.record(bad, 200)  # a success resets the count
    runtime.record(bad, 503)
    runtime.record(bad, 502)
    assert ejected(runtime) == []
    runtime.record(bad, 504)
    assert ejected(runtime) == [0]
    assert 0 not in picked(runtime)

    loop.advance(29.5)
    assert 0 not in picked(runtime)
    loop.advance(0.4)  # 29.9 s: the check at 30 s has not run yet
    assert ejected(runtime) == [0]
    loop.advance(0.2)  # the interval check at 30 s: base_ejection_time over
    assert ejected(runtime) == []
    assert picked(runtime, 30) == {0: 10, 1: 10, 2: 10}
    # Ejected again at once: twice as long (the back-off multiplier went 1 -> 2).
    for _ in range(3):
        runtime.record(bad, 503)
    assert bad.ejections == 2 and bad.backoff == 2
    loop.advance(59.5)
    assert 0 not in picked(runtime)
    loop.advance(1.5)
    assert 0 in picked(runtime)


async def test_a_host_that_stays_healthy_is_ejected_for_less_next_time() -> None:
    # Envoy: the multiplier goes down by one per interval check the host spends in service.
    od = OutlierConfig(consecutive_5xx=1, interval=1.0, base_ejection=10.0, max_ejection_percent=50)
    runtime, loop = cluster(2, od)
    h = runtime.hosts[0]
    runtime.record(h, 500)
    loop.advance(10.5)
    runtime.record(h, 500)
    assert h.backoff == 2 and h.ejected_until == pytest.approx(loop.now + 20)
    loop.advance(20.5)
    assert not h.ejected
    loop.advance(5)  # five clean interval checks: 2 -> 0
    assert h.backoff == 0
    runtime.record(h, 500)
    assert h.ejected_until == pytest.approx(loop.now + 10)


async def test_gateway_failures_count_only_502_503_504() -> None:
    runtime, _ = cluster(2, OutlierConfig(consecutive_gateway=2, max_ejection_percent=50))
    h = runtime.hosts[1]
    for _ in range(5):
        runtime.record(h, 500)
    assert ejected(runtime) == []
    runtime.record(h, 502)
    runtime.record(h, 503)
    assert ejected(runtime) == [1]


async def test_no_outlier_detection_never_ejects_and_runs_no_timer() -> None:
    runtime, loop = cluster(2)
    for _ in range(100):
        runtime.record(runtime.hosts[0], 503)
    assert ejected(runtime) == []
    assert loop.pending() == []


async def test_max_ejection_percent_limits_ejections() -> None:
    od = OutlierConfig(consecutive_5xx=1, interval=1.0, max_ejection_percent=50)
    runtime, loop = cluster(4, od)
    for h in runtime.hosts:
        runtime.record(h, 503)
    assert ejected(runtime) == [0, 1]  # 50% of 4; the others keep serving
    assert set(picked(runtime)) == {2, 3}
    # When they come back, others may go.
    loop.advance(31)
    runtime.record(runtime.hosts[2], 503)
    assert ejected(runtime) == [2]


@pytest.mark.parametrize(("hosts", "allowed"), [(3, 0), (9, 0), (10, 1), (20, 2)])
async def test_the_cap_is_strict_as_envoys(hosts: int, allowed: int) -> None:
    # Envoy: 100 x (ejected + 1) / hosts <= max_ejection_percent, with no exception for
    # the first host (its always_eject_one_host is off by default): 9 hosts at 10% allow none.
    runtime, _ = cluster(hosts, OutlierConfig(consecutive_5xx=1, max_ejection_percent=10))
    for h in runtime.hosts:
        runtime.record(h, 503)
    assert len(ejected(runtime)) == allowed


@pytest.mark.parametrize("lb", LB_KINDS)
async def test_panic_when_every_host_is_ejected_uses_them_all(lb: LbKind) -> None:
    runtime, _ = cluster(3, OutlierConfig(consecutive_5xx=1, max_ejection_percent=100), lb)
    for h in runtime.hosts:
        runtime.record(h, 503)
    assert ejected(runtime) == [0, 1, 2]
    assert runtime.pick(hash64(b"user-1")) is not None
    assert len(picked(runtime, 300)) == 3  # no key: spread over all of them


@pytest.mark.parametrize("lb", LB_KINDS)
async def test_panic_below_the_threshold_balances_over_every_host(lb: LbKind) -> None:
    # 2 of 4 ejected: 50% healthy is not below 50 (the default): the healthy two serve;
    # 3 of 4 ejected: 25% < 50: all four serve (Envoy's panic mode).
    od = OutlierConfig(consecutive_5xx=1, max_ejection_percent=100)
    runtime, _ = cluster(4, od, lb)
    for h in runtime.hosts[:2]:
        runtime.record(h, 503)
    assert set(picked(runtime, 400)) == {2, 3}
    assert runtime.statistics()["panic"] is False
    runtime.record(runtime.hosts[2], 503)
    assert set(picked(runtime, 400)) == {0, 1, 2, 3}
    assert runtime.statistics()["panic"] is True
    # A higher threshold panics sooner; 0 never panics (nobody healthy: no host).
    runtime.update(ClusterConfig("c", lb=LbConfig(lb), outlier=od, panic_threshold=0), endpoints(4))
    assert set(picked(runtime, 100)) == {3}
    runtime.record(runtime.hosts[3], 503)
    assert runtime.pick() is None


@pytest.mark.parametrize("lb", LB_KINDS)
async def test_ejected_hosts_are_skipped_by_every_balancer(lb: LbKind) -> None:
    runtime, _ = cluster(3, OutlierConfig(consecutive_5xx=1, max_ejection_percent=50), lb)
    runtime.record(runtime.hosts[1], 503)
    assert set(picked(runtime, 300)) == {0, 2}
    for i in range(50):
        assert runtime.pick(hash64(b"key-%d" % i)) is not runtime.hosts[1]


async def test_failure_percentage_ejects_at_the_interval_check() -> None:
    od = OutlierConfig(
        interval=1.0,
        max_ejection_percent=50,
        failure_percentage=50,
        failure_percentage_min_hosts=3,
        failure_percentage_volume=10,
    )
    runtime, loop = cluster(4, od)
    bad, *good = runtime.hosts
    for i in range(20):
        runtime.record(bad, 500 if i % 2 else 200)  # 50% failures: never 2 in a row
        for h in good:
            runtime.record(h, 200)
    assert ejected(runtime) == []  # not before the interval check
    loop.advance(1.0)
    assert ejected(runtime) == [0]
    assert bad.ejection_reason == "failure_percentage"
    assert runtime.hosts[1].success_rate == 100.0


async def test_ejections_are_logged_as_json_counted_and_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    od = OutlierConfig(consecutive_5xx=2, interval=1.0, base_ejection=5.0, max_ejection_percent=50)
    runtime, loop = cluster(2, od)
    manager = ClusterManager(ConfigState())
    manager.clusters["c"] = runtime
    with caplog.at_level(logging.INFO, logger="trellis.proxy.outlier"):
        runtime.record(runtime.hosts[1], 500)
        runtime.record(runtime.hosts[1], 500)
        stats = runtime.statistics()
        loop.advance(5.5)
    events = [json.loads(r.getMessage()) for r in caplog.records]
    assert [e["event"] for e in events] == ["outlier_ejected", "outlier_returned"]
    assert events[0] == {
        "event": "outlier_ejected",
        "cluster": "c",
        "host": "10.0.0.1:8080",
        "workload": "",
        "reason": "consecutive_5xx",
        "seconds": 5.0,
        "times_ejected": 1,
    }
    host = stats["hosts"][1]
    assert host["health"] == "ejected" and host["times_ejected"] == 1
    assert host["ejected_for_seconds"] == 5.0 and host["ejection_reason"] == "consecutive_5xx"
    assert stats["outlier_detection"]["ejected"] == 1
    text = "\n".join(manager.metric_lines())
    assert 'trellis_outlier_ejections_total{cluster="c",reason="consecutive_5xx"} 1' in text
    assert 'trellis_outlier_ejections_active{cluster="c"} 0' in text
    assert 'trellis_circuit_breaker_overflows_total{cluster="c",kind="pending"} 0' in text
    after = runtime.statistics()
    assert [e["event"] for e in after["outlier_detection"]["events"]] == [
        "outlier_ejected",
        "outlier_returned",
    ]


async def test_turning_outlier_detection_off_returns_every_host_and_stops_the_timer() -> None:
    od = OutlierConfig(consecutive_5xx=1, max_ejection_percent=50)
    runtime, loop = cluster(2, od)
    runtime.record(runtime.hosts[0], 500)
    assert ejected(runtime) == [0] and len(loop.pending()) == 1
    runtime.update(ClusterConfig("c", lb=LbConfig("round_robin")), endpoints(2))
    assert ejected(runtime) == [] and loop.pending() == []
    assert set(picked(runtime)) == {0, 1}


async def test_limits_from_config() -> None:
    runtime, _ = cluster(1)
    runtime.update(ClusterConfig("c", limits=CircuitLimits(max_connections=3)), endpoints(1))
    assert runtime.counters.breaker.limits.max_connections == 3


@pytest.mark.parametrize("lb", ["least_request", "round_robin"])
async def test_a_retry_avoids_the_host_that_failed(lb: LbKind) -> None:
    runtime, _ = cluster(2, lb=lb)
    first = runtime.hosts[0]
    for _ in range(50):
        assert runtime.pick(avoid=first) is runtime.hosts[1]
    single, _ = cluster(1, lb=lb)
    only = single.hosts[0]
    assert single.pick(avoid=only) is only  # nowhere else to go


async def test_ring_hash_keeps_keys_and_moves_only_an_ejected_hosts_keys() -> None:
    od = OutlierConfig(consecutive_5xx=1, max_ejection_percent=50)
    runtime, _ = cluster(3, od, "ring_hash")
    keys = [hash64(b"user-%d" % i) for i in range(300)]
    before: list[Host] = []
    for k in keys:
        h = runtime.pick(k)
        assert h is not None
        before.append(h)
    assert all(runtime.pick(k) is h for k, h in zip(keys, before, strict=True))
    victim = runtime.hosts[2]
    runtime.record(victim, 503)
    for k, h in zip(keys, before, strict=True):
        now = runtime.pick(k)
        assert now is not victim
        if h is not victim:
            assert now is h


async def test_an_update_keeps_the_hosts_that_stay() -> None:
    runtime, _ = cluster(3, OutlierConfig(consecutive_5xx=1, max_ejection_percent=50))
    keep = runtime.hosts[1]
    keep.requests = 7
    runtime.record(keep, 503)
    gone_pool = runtime.hosts[0].pool
    config = runtime.config
    runtime.update(config, (*endpoints(3)[1:], EndpointConfig("10.0.0.9", 8080)))
    assert [h.key[0] for h in runtime.hosts] == ["10.0.0.1", "10.0.0.2", "10.0.0.9"]
    assert runtime.hosts[0] is keep and keep.requests == 7
    assert ejected(runtime) == [0]  # its ejection carries over
    assert gone_pool.retired


async def test_connections_to_peer_sidecars_idle_longer_than_to_apps() -> None:
    # A peer sidecar keeps idle mesh connections for minutes, and each new one costs an
    # mTLS handshake on both sides; an app's keep-alive may be as short as Node's 5 s.
    peer = EndpointConfig("10.0.0.1", 15006, target_port=8080)
    app = EndpointConfig("10.0.0.2", 8080)
    runtime = ClusterRuntime(ClusterConfig("c"), (peer, app))
    timeouts = {h.key: h.pool.idle_timeout for h in runtime.hosts}
    assert timeouts[peer.key] == PEER_IDLE_TIMEOUT == 60.0
    assert timeouts[app.key] == IDLE_TIMEOUT < 5.0
    # An endpoint that stops being a sidecar (or starts) changes its pool's timeout.
    runtime.update(ClusterConfig("c"), (EndpointConfig("10.0.0.1", 15006), app))
    assert {h.key: h.pool.idle_timeout for h in runtime.hosts}[peer.key] == IDLE_TIMEOUT
