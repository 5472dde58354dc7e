"""ClusterRuntime, with a fake clock: outlier ejection after consecutive failures, its
duration and return, max_ejection_percent, panic mode when every host is ejected (for
every balancer, ring hash included), retries avoiding the host that failed, and config
updates that keep the hosts that stay."""

from __future__ import annotations

from collections import Counter

import pytest

from trellis.proxy.config.resources import (
    ClusterConfig,
    EndpointConfig,
    LbConfig,
    LbKind,
    OutlierConfig,
)
from trellis.proxy.stack.balance import hash64
from trellis.proxy.stack.cluster import PEER_IDLE_TIMEOUT, ClusterRuntime
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.pool import IDLE_TIMEOUT

LB_KINDS: list[LbKind] = ["least_request", "round_robin", "ring_hash"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        return self.now


def endpoints(n: int) -> tuple[EndpointConfig, ...]:
    return tuple(EndpointConfig(f"10.0.0.{i}", 8080) for i in range(n))


def cluster(
    n: int, outlier: OutlierConfig | None = None, lb: LbKind = "round_robin"
) -> tuple[ClusterRuntime, Clock]:
    """A runtime whose clock the test moves (ClusterRuntime reads time from its loop)."""
    runtime = ClusterRuntime(ClusterConfig("c", lb=LbConfig(lb), outlier=outlier), endpoints(n))
    clock = Clock()
    runtime._loop = clock  # type: ignore[assignment]
    return runtime, clock


def picked(runtime: ClusterRuntime, n: int = 100, key: int | None = None) -> Counter[int]:
    out: Counter[int] = Counter()
    for _ in range(n):
        h = runtime.pick(key)
        assert h is not None
        out[runtime.hosts.index(h)] += 1
    return out


def ejected(runtime: ClusterRuntime, clock: Clock) -> list[int]:
    return [i for i, h in enumerate(runtime.hosts) if h.ejected_until > clock.now]


async def test_consecutive_5xx_ejects_and_the_host_comes_back() -> None:
    od = OutlierConfig(consecutive_5xx=3, base_ejection=30.0, max_ejection_percent=50)
    runtime, clock = cluster(3, od)
    bad = runtime.hosts[0]
    runtime.record(bad, 503)
    runtime.record(bad, 500)
    runtime.record(bad, 200)  # a success resets the count
    runtime.record(bad, 503)
    runtime.record(bad, 502)
    assert ejected(runtime, clock) == []
    runtime.record(bad, 504)
    assert ejected(runtime, clock) == [0]
    assert 0 not in picked(runtime)

    clock.now += 29.9
    assert 0 not in picked(runtime)
    clock.now += 0.2  # base_ejection_time over
    assert picked(runtime, 30) == {0: 10, 1: 10, 2: 10}
    # A second ejection lasts twice as long (base x times ejected).
    for _ in range(3):
        runtime.record(bad, 503)
    clock.now += 59.9
    assert 0 not in picked(runtime)
    clock.now += 0.2
    assert 0 in picked(runtime)


async def test_gateway_failures_count_only_502_503_504() -> None:
    runtime, clock = cluster(2, OutlierConfig(consecutive_gateway=2, max_ejection_percent=50))
    h = runtime.hosts[1]
    for _ in range(5):
        runtime.record(h, 500)
    assert ejected(runtime, clock) == []
    runtime.record(h, 502)
    runtime.record(h, 503)
    assert ejected(runtime, clock) == [1]


async def test_no_outlier_detection_never_ejects() -> None:
    runtime, clock = cluster(2)
    for _ in range(100):
        runtime.record(runtime.hosts[0], 503)
    assert ejected(runtime, clock) == []


async def test_max_ejection_percent_limits_ejections() -> None:
    runtime, clock = cluster(4, OutlierConfig(consecutive_5xx=1, max_ejection_percent=50))
    for h in runtime.hosts:
        runtime.record(h, 503)
    assert ejected(runtime, clock) == [0, 1]  # 50% of 4; the others keep serving
    assert set(picked(runtime)) == {2, 3}
    # When one comes back, another may go.
    clock.now += 31
    runtime.record(runtime.hosts[2], 503)
    assert ejected(runtime, clock) == [2]


async def test_at_least_one_host_may_be_ejected_whatever_the_percent() -> None:
    runtime, clock = cluster(3, OutlierConfig(consecutive_5xx=1, max_ejection_percent=10))
    for h in runtime.hosts:
        runtime.record(h, 503)
    assert ejected(runtime, clock) == [0]  # Envoy ejects one host even below 1 host's share


@pytest.mark.parametrize("lb", LB_KINDS)
async def test_panic_when_every_host_is_ejected_uses_them_all(lb: LbKind) -> None:
    runtime, clock = cluster(3, OutlierConfig(consecutive_5xx=1, max_ejection_percent=100), lb)
    for h in runtime.hosts:
        runtime.record(h, 503)
    assert ejected(runtime, clock) == [0, 1, 2]
    assert runtime.pick(hash64(b"user-1")) is not None
    assert len(picked(runtime, 300)) == 3  # no key: spread over all of them


@pytest.mark.parametrize("lb", LB_KINDS)
async def test_ejected_hosts_are_skipped_by_every_balancer(lb: LbKind) -> None:
    runtime, _ = cluster(3, OutlierConfig(consecutive_5xx=1, max_ejection_percent=50), lb)
    runtime.record(runtime.hosts[1], 503)
    assert set(picked(runtime, 300)) == {0, 2}
    for i in range(50):
        assert runtime.pick(hash64(b"key-%d" % i)) is not runtime.hosts[1]


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
    runtime, clock = cluster(3, OutlierConfig(consecutive_5xx=1, max_ejection_percent=50))
    keep = runtime.hosts[1]
    keep.requests = 7
    runtime.record(keep, 503)
    gone_pool = runtime.hosts[0].pool
    config = runtime.config
    runtime.update(config, (*endpoints(3)[1:], EndpointConfig("10.0.0.9", 8080)))
    assert [h.key[0] for h in runtime.hosts] == ["10.0.0.1", "10.0.0.2", "10.0.0.9"]
    assert runtime.hosts[0] is keep and keep.requests == 7
    assert ejected(runtime, clock) == [0]  # its ejection carries over
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
