"""Clusters at run time: hosts, balancer, limits and outlier ejection, kept in step with xDS.

`ClusterManager` watches the ConfigState: a Cluster (CDS) and, for EDS
clusters, its ClusterLoadAssignment make a `ClusterRuntime`; later updates
change it in place, keeping the Hosts that stay (their pools and counters).
A cluster is usable (`get`) once both halves have arrived.

`ClusterRuntime.pick` chooses among hosts that are not ejected; when every
host is ejected it uses them all (Envoy's panic mode) rather than fail, for
every balancer (the ring, which is given all hosts and an availability test,
is then told that every host is available).
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from trellis.proxy.config.resources import ClusterConfig, EndpointConfig, LbConfig
from trellis.proxy.config.state import ConfigState
from trellis.proxy.config.types import CLUSTER_TYPE, ENDPOINT_TYPE, PASSTHROUGH_CLUSTER
from trellis.proxy.stack.balance import Balancer, LeastRequest, RingHash, RoundRobin
from trellis.proxy.stack.breaker import CircuitBreaker
from trellis.proxy.stack.budget import RetryBudget
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.pool import IDLE_TIMEOUT, HostPool, PoolCounters


def _any_host(host: Host) -> bool:
    return True


def _no_context() -> ssl.SSLContext | None:
    return None


class ClusterRuntime:
    __slots__ = (
        "_balancer",
        "_ejected",
        "_loop",
        "active",
        "active_retries",
        "breaker",
        "budget",
        "config",
        "counters",
        "hosts",
        "name",
        "overflows",
        "requests",
        "tls_context",
    )

    def __init__(
        self,
        config: ClusterConfig,
        endpoints: tuple[EndpointConfig, ...],
        tls_context: Callable[[], ssl.SSLContext | None] | None = None,
    ) -> None:
        self.name = config.name
        self.tls_context = tls_context or _no_context
        self.config = config
        self._loop = asyncio.get_event_loop()
        self.counters = PoolCounters()
        self.hosts: list[Host] = []
        self._ejected = 0
        self.active = 0
        self.active_retries = 0
        self.requests = 0
        self.overflows = 0
        self.breaker = CircuitBreaker(config.limits)
        self.budget: RetryBudget | None = None
        self._balancer: Balancer = RoundRobin()
        self.update(config, endpoints)

    def update(self, config: ClusterConfig, endpoints: tuple[EndpointConfig, ...]) -> None:
        old = {h.key: h for h in self.hosts}
        hosts = []
        for e in endpoints:
            host = old.pop(e.key, None)
            if host is None:
                pool = HostPool(
                    e.address, e.port, self.counters, connect_timeout=config.connect_timeout
                )
                host = Host(e, pool)
            else:
                host.update(e)
                host.pool.connect_timeout = config.connect_timeout
            host.pool.tls = config.tls
            host.pool.tls_context = self.tls_context
            # A peer sidecar's inbound listener keeps idle connections for minutes: no app
            # keep-alive race to avoid there, and every new mTLS connection costs a
            # handshake on both sidecars (a few ms each on the shared core).
            host.pool.idle_timeout = PEER_IDLE_TIMEOUT if e.target_port else IDLE_TIMEOUT
            hosts.append(host)
        for gone in old.values():
            gone.pool.retire()  # in-flight requests keep their connection until they end
        self.hosts = hosts
        lb = config.lb
        if lb.kind == "ring_hash":
            self._balancer = RingHash(hosts, lb.ring_min, lb.ring_max)
        elif lb.kind == "round_robin":
            if not isinstance(self._balancer, RoundRobin):
                self._balancer = RoundRobin()
        elif not isinstance(self._balancer, LeastRequest) or config.lb != self.config.lb:
            self._balancer = LeastRequest(lb.choice_count)
        if config.limits != self.breaker.limits:
            self.breaker.limits = config.limits  # counts in flight carry over
        rb = config.retry_budget
        if rb is None:
            self.budget = None
        elif self.budget is None or (
            self.budget.ratio,
            self.budget.min_per_second,
            self.budget.ttl,
        ) != (rb.ratio, rb.min_per_second, rb.ttl):
            self.budget = RetryBudget(rb.ratio, rb.min_per_second, rb.ttl)
        self.config = config
        self._ejected = sum(1 for h in hosts if h.ejected_until > 0)

    def pick(self, hash_key: int | None = None, avoid: Host | None = None) -> Host | None:
        hosts = self.hosts
        if not hosts:
            return None
        if len(hosts) == 1 and not self._ejected:
            return hosts[0]
        now = self._loop.time()
        candidates = hosts
        usable: Callable[[Host], bool] = _any_host
        if self._ejected:
            available = [h for h in hosts if h.ejected_until <= now]
            if len(available) < len(hosts):
                for h in hosts:
                    if 0 < h.ejected_until <= now:  # ejection over
                        h.ejected_until = 0.0
                        self._ejected -= 1
            if available:  # else every host is ejected: panic, all of them may serve
                candidates = available
                usable = lambda h: h.ejected_until <= now  # noqa: E731
        if avoid is not None and len(candidates) > 1:
            candidates = [h for h in candidates if h is not avoid]
        return self._balancer.pick(candidates, hash_key, usable)

    # -- outlier detection ----------------------------------------------------------------

    def record(self, host: Host, status: int) -> None:
        """An attempt's outcome: an HTTP status, or 503 for a connect failure or reset."""
        od = self.config.outlier
        if od is None:
            return
        if status >= 500:
            host.consecutive_5xx += 1
            if status in (502, 503, 504):
                host.consecutive_gateway += 1
            if (od.consecutive_5xx is not None and host.consecutive_5xx >= od.consecutive_5xx) or (
                od.consecutive_gateway is not None
                and host.consecutive_gateway >= od.consecutive_gateway
            ):
                self._eject(host)
        else:
            host.consecutive_5xx = 0
            host.consecutive_gateway = 0

    def _eject(self, host: Host) -> None:
        od = self.config.outlier
        assert od is not None
        now = self._loop.time()
        if host.ejected_until > now:
            return
        ejected = sum(1 for h in self.hosts if h.ejected_until > now)
        if (ejected + 1) * 100 > od.max_ejection_percent * len(self.hosts) and ejected > 0:
            return
        host.ejections += 1
        host.ejected_until = now + od.base_ejection * host.ejections
        host.consecutive_5xx = 0
        host.consecutive_gateway = 0
        self._ejected += 1

    # -- views ----------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        now = self._loop.time()
        return {
            "name": self.name,
            "discovery": self.config.discovery,
            "lb": self.config.lb.kind,
            "active_requests": self.active,
            "requests": self.requests,
            "overflows": self.overflows,
            "connections": self.counters.active,
            "connect_failures": self.counters.connect_failures,
            "identity_refused": self.counters.identity_refused,
            "tls": "mesh mTLS" if self.config.tls is not None else "plaintext",
            "hosts": [
                {
                    "address": f"{h.key[0]}:{h.key[1]}",
                    "workload": h.config.workload,
                    "target_port": h.config.target_port,
                    "weight": h.weight,
                    "health": "ejected" if h.ejected_until > now else "healthy",
                    "active_requests": h.active,
                    "requests": h.requests,
                    "connections": len(h.pool.total),
                    "idle_connections": h.pool.idle_count,
                }
                for h in self.hosts
            ],
        }

    def sweep(self, now: float) -> None:
        for h in self.hosts:
            h.pool.sweep(now)

    def close(self) -> None:
        for h in self.hosts:
            h.pool.close()


MAX_ORIGINAL_DESTINATIONS = 256
# Idle upstream connections to a peer sidecar close after this: well under its inbound
# listener's 300 s (listeners/server.py IDLE_TIMEOUT).
PEER_IDLE_TIMEOUT = 60.0


class ClusterManager:
    """Every usable cluster, by name, rebuilt from the ConfigState as it changes.

    ORIGINAL_DST clusters (PassthroughCluster) have no hosts of their own: each
    destination `host:port` a request names gets a small cluster of its own
    (`original_destination`), at most MAX_ORIGINAL_DESTINATIONS of them, the
    least recently used evicted first.
    """

    def __init__(self, state: ConfigState) -> None:
        self.state = state
        self.clusters: dict[str, ClusterRuntime] = {}
        self._originals: dict[tuple[str, int], ClusterRuntime] = {}
        # The proxy's current client TLS context (mesh identity), when it has one.
        self.client_context: Callable[[], ssl.SSLContext | None] = _no_context
        state.watch(self._on_change)

    def _client_context(self) -> ssl.SSLContext | None:
        return self.client_context()

    def original_destination(
        self, host: str, port: int, parent: ClusterConfig | None = None
    ) -> ClusterRuntime:
        """The cluster of one destination outside the registry (LRU-cached)."""
        key = (host, port)
        runtime = self._originals.pop(key, None)
        if runtime is None:
            base = parent or ClusterConfig(PASSTHROUGH_CLUSTER, lb=LbConfig("round_robin"))
            config = replace(base, name=f"{base.name}|{host}:{port}", discovery="STATIC")
            runtime = ClusterRuntime(config, (EndpointConfig(host, port),))
            if len(self._originals) >= MAX_ORIGINAL_DESTINATIONS:
                oldest = next(iter(self._originals))
                for evicted in self._originals.pop(oldest).hosts:
                    evicted.pool.retire()
        self._originals[key] = runtime  # most recently used last
        return runtime

    def get(self, name: str) -> ClusterRuntime | None:
        return self.clusters.get(name)

    def _on_change(self, type_url: str, names: frozenset[str]) -> None:
        if type_url == CLUSTER_TYPE:
            for name in names:
                self._refresh(name)
        elif type_url == ENDPOINT_TYPE:
            for cluster in list(self.state.clusters.values()):
                if cluster.discovery == "EDS" and cluster.eds_name in names:
                    self._refresh(cluster.name)

    def _refresh(self, name: str) -> None:
        config = self.state.clusters.get(name)
        if config is None:
            return
        if config.discovery == "EDS":
            endpoints = self.state.assignments.get(config.eds_name)
            if endpoints is None:
                return  # not usable until its endpoints arrive
        else:
            endpoints = config.endpoints
        runtime = self.clusters.get(name)
        if runtime is None:
            self.clusters[name] = ClusterRuntime(config, endpoints, self._client_context)
        else:
            runtime.update(config, endpoints)

    def statistics(self) -> list[dict[str, Any]]:
        return [c.statistics() for _, c in sorted(self.clusters.items())]

    def sweep(self, now: float) -> None:
        """Close upstream connections idle too long (`now` is the loop's time)."""
        for c in [*self.clusters.values(), *self._originals.values()]:
            c.sweep(now)

    def close(self) -> None:
        for c in [*self.clusters.values(), *self._originals.values()]:
            c.close()
