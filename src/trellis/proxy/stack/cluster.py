"""Clusters at run time: hosts, balancer, limits and outlier ejection, kept in step with xDS.

`ClusterManager` watches the ConfigState: a Cluster (CDS) and, for EDS
clusters, its ClusterLoadAssignment make a `ClusterRuntime`; later updates
change it in place, keeping the Hosts that stay (their pools and counters).
A cluster is usable (`get`) once both halves have arrived.

`ClusterRuntime.pick` chooses among hosts that are not ejected. When the healthy
share falls below the cluster's panic threshold (50% by default), it balances over
every host, ejected ones included, rather than pile the load on the few left
(Envoy's panic mode; threshold 0: never, and no host when none is healthy). The
ring, which is given all hosts and an availability test, is then told that every
host is available. Endpoints with EDS priorities, or in several localities with
locality weighting on, go through locality.py first (priority load, failover,
locality weights); the usual cluster (one priority, one locality) does not.

Outlier detection (outlier.py decides): `record(host, status)` per attempt's outcome
ejects at once on consecutive failures; a loop timer per cluster with outlier config,
every `interval`, returns hosts whose time is over and ejects by failure percentage.
Each ejection and return is one JSON log line (logger `trellis.proxy.outlier`,
level WARNING, so a default log shows it), kept among the cluster's last events
(/clusters), and counted (`metric_lines`, /metrics).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import ssl
from collections import deque
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
from trellis.proxy.stack.locality import PriorityLevel, choose, health, layered, levels_of
from trellis.proxy.stack.outlier import REASONS, OutlierDetector, OutlierEvent
from trellis.proxy.stack.pool import IDLE_TIMEOUT, HostPool, PoolCounters

log = logging.getLogger("trellis.proxy.outlier")

EVENTS_KEPT = 16  # outlier events per cluster shown in /clusters


def _any_host(host: Host) -> bool:
    return True


def _not_ejected(host: Host) -> bool:
    return not host.ejected


def _no_context() -> ssl.SSLContext | None:
    return None


def in_panic(healthy: int, total: int, threshold: float) -> bool:
    """Envoy's panic test for one set of hosts: none healthy, or its health (x 1.4) under
    100% and its healthy share under the threshold (percent; 0: never)."""
    if threshold <= 0:
        return False
    if healthy == 0:
        return True
    return health(healthy, total) < 100.0 and 100.0 * healthy < threshold * total


class ClusterRuntime:
    __slots__ = (
        "_balancer",
        "_detector",
        "_ejected",
        "_levels",
        "_loop",
        "_random",
        "_timer",
        "active",
        "active_retries",
        "breaker",
        "budget",
        "config",
        "counters",
        "events",
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
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.name = config.name
        self.tls_context = tls_context or _no_context
        self.config = config
        self._loop = loop if loop is not None else asyncio.get_event_loop()
        self.breaker = CircuitBreaker(config.limits)
        self.counters = PoolCounters(self.breaker)
        self.hosts: list[Host] = []
        self._ejected = 0  # hosts ejected now (the detector's count, read on every pick)
        self._detector: OutlierDetector | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._levels: list[PriorityLevel] | None = None  # None: one priority, one locality
        self._random = random.Random()
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.active = 0
        self.active_retries = 0
        self.requests = 0
        self.overflows = 0
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
            self.counters.slot_freed()  # a higher max_connections serves waiters now
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
        self._levels = levels_of(hosts) if layered(hosts, config.locality_weighted) else None
        self._update_detector(config)

    def _update_detector(self, config: ClusterConfig) -> None:
        od = config.outlier
        detector = self._detector
        if od is None:
            if detector is not None:  # outlier detection turned off: everyone serves
                self._detector = None
                self._stop_timer()
                for h in self.hosts:
                    h.ejected = False
        elif detector is None or detector.config != od:
            interval_changed = detector is None or detector.config.interval != od.interval
            fresh = OutlierDetector(od)
            if detector is not None:  # counts carry over
                fresh.ejections = detector.ejections
                fresh.overflowed = detector.overflowed
            self._detector = detector = fresh
            if interval_changed:
                self._stop_timer()
        if self._detector is not None:
            self._detector.recount(self.hosts)
            if self._timer is None:
                self._start_timer()
        self._ejected = sum(1 for h in self.hosts if h.ejected)

    def _start_timer(self) -> None:
        detector = self._detector
        if detector is not None:
            self._timer = self._loop.call_later(detector.config.interval, self._on_interval)

    def _stop_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_interval(self) -> None:
        self._timer = None
        detector = self._detector
        if detector is None:
            return
        try:
            for event in detector.interval(self.hosts, self._loop.time()):
                self._tell(event)
            self._ejected = detector.ejected
        finally:
            self._start_timer()

    def pick(self, hash_key: int | None = None, avoid: Host | None = None) -> Host | None:
        hosts = self.hosts
        if not hosts:
            return None
        if len(hosts) == 1 and not self._ejected:
            return hosts[0]  # one host (never layered): the usual sidecar-to-app cluster
        levels = self._levels
        candidates: list[Host] = hosts
        usable: Callable[[Host], bool] = _any_host
        if levels is not None:
            rng = self._random
            candidates = choose(
                levels,
                self.config.panic_threshold,
                self.config.locality_weighted,
                rng.random(),
                rng.random(),
            )
            if not candidates:
                return None
            if len(candidates) < len(hosts):
                allowed = set(candidates)
                usable = allowed.__contains__
        elif self._ejected:
            healthy = len(hosts) - self._ejected
            if not in_panic(healthy, len(hosts), self.config.panic_threshold):
                if healthy == 0:
                    return None  # panic off and nobody healthy: no healthy upstream
                candidates = [h for h in hosts if not h.ejected]
                usable = _not_ejected
        if avoid is not None and len(candidates) > 1:
            candidates = [h for h in candidates if h is not avoid]
        return self._balancer.pick(candidates, hash_key, usable)

    # -- outlier detection ----------------------------------------------------------------

    def record(self, host: Host, status: int) -> None:
        """An attempt's outcome: an HTTP status, or 503 for a connect failure or reset."""
        detector = self._detector
        if detector is None:
            return
        event = detector.record(host, status, self._loop.time(), self.hosts)
        if event is not None:
            self._ejected = detector.ejected
            self._tell(event)

    def _tell(self, event: OutlierEvent) -> None:
        """One ejection or return: a JSON log line, and the cluster's recent events."""
        host = event.host
        record: dict[str, Any] = {
            "event": "outlier_ejected" if event.ejected else "outlier_returned",
            "cluster": self.name,
            "host": f"{host.key[0]}:{host.key[1]}",
            "workload": host.config.workload,
            "times_ejected": host.ejections,
        }
        if event.ejected:
            record["reason"] = event.reason
            record["seconds"] = round(event.until - host.ejected_at, 3)
        self.events.append(record)
        log.warning("%s", json.dumps(record, sort_keys=True))

    # -- views ----------------------------------------------------------------------------

    def statistics(self) -> dict[str, Any]:
        now = self._loop.time()
        breaker = self.breaker
        limits = breaker.limits
        detector = self._detector
        healthy = len(self.hosts) - self._ejected
        return {
            "name": self.name,
            "discovery": self.config.discovery,
            "lb": self.config.lb.kind,
            "active_requests": self.active,
            "requests": self.requests,
            # 503 UO answers the request path counted (any kind); by kind: circuit_breaker
            "overflows": self.overflows,
            "connections": self.counters.active,
            "connections_opening": self.counters.opening,
            "pending_requests": len(self.counters.waiting),
            "connect_failures": self.counters.connect_failures,
            "identity_refused": self.counters.identity_refused,
            "tls": "mesh mTLS" if self.config.tls is not None else "plaintext",
            "circuit_breaker": {
                "max_connections": limits.max_connections,
                "max_pending_requests": limits.max_pending,
                "max_requests": limits.max_requests,
                "max_retries": limits.max_retries,
                "overflow": {
                    "connections": breaker.overflow_connections,
                    "pending": breaker.overflow_pending,
                    "requests": breaker.overflow_requests,
                    "retries": breaker.overflow_retries,
                },
            },
            "outlier_detection": None
            if detector is None
            else {
                "ejected": self._ejected,
                "ejections": dict(detector.ejections),
                "ejections_refused": detector.overflowed,
                "events": list(self.events),
            },
            "panic": bool(self.hosts)
            and self._levels is None
            and in_panic(healthy, len(self.hosts), self.config.panic_threshold)
            and self._ejected > 0,
            "hosts": [
                {
                    "address": f"{h.key[0]}:{h.key[1]}",
                    "workload": h.config.workload,
                    "locality": h.config.locality,
                    "priority": h.config.priority,
                    "target_port": h.config.target_port,
                    "weight": h.weight,
                    "health": "ejected" if h.ejected else "healthy",
                    "ejected_for_seconds": round(max(0.0, h.ejected_until - now), 3)
                    if h.ejected
                    else None,
                    "ejection_reason": h.ejection_reason or None,
                    "times_ejected": h.ejections,
                    "success_rate": round(h.success_rate, 2) if h.success_rate >= 0 else None,
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

    def stop(self) -> None:
        """No more interval checks (the cluster is dropped)."""
        self._stop_timer()

    def close(self) -> None:
        self._stop_timer()
        for h in self.hosts:
            h.pool.close()


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


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
                dropped = self._originals.pop(oldest)
                dropped.stop()
                for evicted in dropped.hosts:
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

    def metric_lines(self) -> list[str]:
        """Prometheus text: outlier ejections and circuit-breaker overflows, by cluster (the
        clusters of the config: bounded by CDS; reasons and kinds are fixed lists)."""
        ejections = [
            "# HELP trellis_outlier_ejections_total Hosts ejected by outlier detection, by"
            " cluster and reason.",
            "# TYPE trellis_outlier_ejections_total counter",
        ]
        active = [
            "# HELP trellis_outlier_ejections_active Hosts ejected now, by cluster.",
            "# TYPE trellis_outlier_ejections_active gauge",
        ]
        refused = [
            "# HELP trellis_outlier_ejections_overflow_total Ejections refused by"
            " max_ejection_percent, by cluster.",
            "# TYPE trellis_outlier_ejections_overflow_total counter",
        ]
        overflows = [
            "# HELP trellis_circuit_breaker_overflows_total Requests refused or queued by a"
            " cluster's circuit breaker, by kind (connections: a new connection was over"
            " max_connections and the request waited; pending, requests, retries: refused,"
            " 503 UO).",
            "# TYPE trellis_circuit_breaker_overflows_total counter",
        ]
        pending = [
            "# HELP trellis_upstream_pending_requests Requests waiting for a connection (the"
            " cluster at max_connections), by cluster.",
            "# TYPE trellis_upstream_pending_requests gauge",
        ]
        for name, c in sorted(self.clusters.items()):
            label = f'cluster="{_label(name)}"'
            detector = c._detector
            if detector is not None:
                for reason in REASONS:
                    ejections.append(
                        f'trellis_outlier_ejections_total{{{label},reason="{reason}"}}'
                        f" {detector.ejections[reason]}"
                    )
                active.append(f"trellis_outlier_ejections_active{{{label}}} {c._ejected}")
                refused.append(
                    f"trellis_outlier_ejections_overflow_total{{{label}}} {detector.overflowed}"
                )
            b = c.breaker
            for kind, n in (
                ("connections", b.overflow_connections),
                ("pending", b.overflow_pending),
                ("requests", b.overflow_requests),
                ("retries", b.overflow_retries),
            ):
                overflows.append(
                    f'trellis_circuit_breaker_overflows_total{{{label},kind="{kind}"}} {n}'
                )
            pending.append(
                f"trellis_upstream_pending_requests{{{label}}} {len(c.counters.waiting)}"
            )
        return ejections + active + refused + overflows + pending

    def sweep(self, now: float) -> None:
        """Close upstream connections idle too long (`now` is the loop's time)."""
        for c in [*self.clusters.values(), *self._originals.values()]:
            c.sweep(now)

    def close(self) -> None:
        for c in [*self.clusters.values(), *self._originals.values()]:
            c.close()
