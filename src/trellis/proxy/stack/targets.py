"""The request path's targets, typed per level (linkerd2-proxy's logical → concrete →
endpoint), so that a function's signature says at which level it works.

- `LogicalTarget`: what the app asked for, once routed: the Route chosen for the
  request's authority (a listener name) — the level of route actions, faults, mirrors,
  local rate limits and the retry and timeout policies;
- `ConcreteTarget`: a backend after the route's split: a destination cluster at run time
  (ClusterRuntime: its circuit breaker, retry budget, balancer and hosts);
- `EndpointTarget`: one endpoint after balancing: a Host (its pool, its outlier state).

Each is a slotted class built once per config version (never per request), so naming
the levels costs the request path nothing; a cluster's name, the one string that still
travels (telemetry labels), is `ConcreteTarget.name`.
"""

from __future__ import annotations

from typing import TypeAlias

from trellis.proxy.stack.cluster import ClusterRuntime
from trellis.proxy.stack.hosts import Host
from trellis.routing import Route

LogicalTarget: TypeAlias = Route
ConcreteTarget: TypeAlias = ClusterRuntime
EndpointTarget: TypeAlias = Host
