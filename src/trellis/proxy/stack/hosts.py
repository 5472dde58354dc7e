"""Host: one upstream endpoint at run time — its config, load, health and connection pool.

A Host outlives config updates: when EDS sends the same (address, port) again
the ClusterRuntime keeps the Host, so its active-request count, outlier
history and pooled connections carry over.

Outlier detection (Envoy's consecutive-5xx and consecutive-gateway-failure):
`record(status)` counts, `eject(now)` happens when a threshold is reached and
the cluster allows it (max_ejection_percent); an ejected host comes back
after base_ejection_time x times ejected.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trellis.proxy.config.resources import EndpointConfig

if TYPE_CHECKING:
    from trellis.proxy.stack.pool import HostPool


class Host:
    __slots__ = (
        "active",
        "config",
        "consecutive_5xx",
        "consecutive_gateway",
        "ejected_until",
        "ejections",
        "key",
        "pool",
        "requests",
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
        self.ejected_until = 0.0
        self.ejections = 0

    def update(self, config: EndpointConfig) -> None:
        self.config = config
        self.weight = config.weight
        self.target_port = b"%d" % config.target_port if config.target_port else b""

    def available(self, now: float) -> bool:
        return self.ejected_until <= now

    def __repr__(self) -> str:
        return f"<Host {self.key[0]}:{self.key[1]} active={self.active}>"
