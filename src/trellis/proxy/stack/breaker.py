"""Circuit breaker: one destination cluster's limits on concurrency (Envoy's thresholds
of the DEFAULT priority). Pure counters: no clock, no I/O.

- `max_requests`: requests in flight to the cluster (all hosts);
- `max_pending`: requests waiting for a connection (the pool's queue, pool.py);
- `max_retries`: retries in flight to the cluster;
- `max_connections`: connections open or opening (enforced by the pool, pool.py).
Beyond a limit the request is answered at once: 503 with flag UO, counted here by kind
(`overflows`), shown in /clusters and metrics.
"""

from __future__ import annotations

from trellis.proxy.config.resources import CircuitLimits


class CircuitBreaker:
    __slots__ = (
        "limits",
        "overflow_connections",
        "overflow_pending",
        "overflow_requests",
        "overflow_retries",
        "pending",
        "requests",
        "retries",
    )

    def __init__(self, limits: CircuitLimits) -> None:
        self.limits = limits
        self.requests = 0
        self.pending = 0
        self.retries = 0
        self.overflow_requests = 0
        self.overflow_pending = 0
        self.overflow_retries = 0
        self.overflow_connections = 0

    @property
    def overflows(self) -> int:
        return (
            self.overflow_requests
            + self.overflow_pending
            + self.overflow_retries
            + self.overflow_connections
        )

    def begin_request(self) -> bool:
        if self.requests >= self.limits.max_requests:
            self.overflow_requests += 1
            return False
        self.requests += 1
        return True

    def end_request(self) -> None:
        self.requests -= 1

    def begin_retry(self) -> bool:
        if self.retries >= self.limits.max_retries:
            self.overflow_retries += 1
            return False
        self.retries += 1
        return True

    def end_retry(self) -> None:
        self.retries -= 1

    def begin_pending(self) -> bool:
        if self.pending >= self.limits.max_pending:
            self.overflow_pending += 1
            return False
        self.pending += 1
        return True

    def end_pending(self) -> None:
        self.pending -= 1
