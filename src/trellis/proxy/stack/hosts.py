"""Host: one upstream endpoint at run time — its config, load, health and connection pool.

A Host outlives config updates: when EDS sends the same (address, port) again
the ClusterRuntime keeps the Host, so its active-request count, outlier
history and pooled connections carry over.

A Host carries its outlier-detection state (outlier.py decides, cluster.py drives):
its consecutive failures, this interval's requests and failures, whether it is
ejected, since when and until when, how often it was ejected and the back-off
multiplier of its next ejection time (Envoy's `ejectTimeBackoff`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trellis.proxy.config.resources import EndpointConfig

if TYPE_CHECKING:
    from trellis.proxy.stack.pool import HostPool


class Host:
    __slots__ = (
        "active",
        "backoff",
        "config",
        "consecutive_5xx",
        "consecutive_gateway",
        "ejected",
        "ejected_at",
        "ejected_until",
        "ejection_reason",
        "ejections",
        "interval_failures",
        "interval_requests",
        "key",
        "pool",
        "requests",
        "success_rate",
        "target_port",
        "weight",
    )

    def __init__(self, config: EndpointConfig, pool: HostPool) -> None:
        self.config = config
        self.key = config.key
        self.weight = config.weight
        self.target_port = b"%d" % config.target_port if config.target_port else b""
        self.pool = pool
        self.active = 0  # requests in flight (least-request)
        self.requests = 0  # requests sent, ever
        self.consecutive_5xx = 0
        self.consecutive_gateway = 0
        self.ejected = False  # out of the balancing set (outlier detection)
        self.ejected_at = 0.0
        self.ejected_until = 0.0  # when it may return (at the next interval check after)
        self.ejection_reason = ""
        self.ejections = 0  # times ejected, ever
        self.backoff = 0  # ejection time multiplier: +1 per ejection, -1 per clean interval
        self.interval_requests = 0  # outcomes recorded in the current interval
        self.interval_failures = 0
        self.success_rate = -1.0  # % of the last interval with outcomes (-1: none)

    def update(self, config: EndpointConfig) -> None:
        self.config = config
        self.weight = config.weight
        self.target_port = b"%d" % config.target_port if config.target_port else b""

    def __repr__(self) -> str:
        return f"<Host {self.key[0]}:{self.key[1]} active={self.active}>"
