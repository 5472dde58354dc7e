"""Sidecars (and, for now, gateways): Envoy router semantics for HTTP.

- `RouteAction.timeout` is always set: the request timeout, else `0s`
  (no timeout; Envoy's default would be 15 s).
- `retry_policy`: `per_try_timeout` from `backendRequest`; an HTTPRoute retries
  on "connect-failure,reset,retriable-status-codes" with its codes in
  `retriable_status_codes` (no codes: connect-failure,reset only); a
  GRPCRoute retries on connect-failure,reset and its gRPC codes.
  `num_retries` = attempts; backoff base from `backoff`, max 10x base;
  `rate_limited_retry_back_off` honours `Retry-After` (seconds) up to 10 s.
  An HTTPRoute retry's `nonIdempotent: true` (Trellis extension) sets the route's
  `metadata.filter_metadata.trellis.retryNonIdempotent` (routes.py).
- Query-parameter matches and request mirrors are kept.
- Ring hash without a header hashes the client's source IP.

Inbound: the listener `trellis/inbound?address=IP:PORT` routes to the app's
ports through STATIC clusters `inbound|PORT||` = 127.0.0.1:PORT. With several
app ports, the caller's sidecar names the one it wants in the
`x-trellis-target-port` header (from the endpoint's `trellis.targetPort`
metadata); a request without it goes to the first port. The routes of a port
declared `tcp` (by the Workload's port, or by a Service port that targets it)
accept CONNECT: `upgrade_configs: [{upgrade_type: CONNECT, connect_config: {}}]`,
Envoy's way to terminate CONNECT and carry its payload to the cluster as raw
TCP. Other ports are HTTP: the sidecar refuses tunnels to them, since the
requests inside a tunnel would pass no L7 policy. An inbound RateLimitPolicy of
the workload's service sits on the inbound virtual host (ratelimits.py): one
bucket for all that the sidecar takes in.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.type.matcher.v3 import string_pb2

from trellis.control.push.context import PushContext
from trellis.control.translate import names, pb, ratelimits, rbac
from trellis.control.translate.clusters import inbound_cluster
from trellis.control.translate.generators.mesh import MeshGenerator
from trellis.control.translate.generators.proxyless import retry_back_off
from trellis.control.translate.node import NodeInfo
from trellis.control.translate.rules import Entry
from trellis.model.duration import parse_duration
from trellis.model.policies import LocalRateLimit
from trellis.model.routes import GRPCRetry
from trellis.wire import TARGET_PORT_FIELD as TARGET_PORT_HEADER

_ALWAYS = ["connect-failure", "reset"]
# The longest Retry-After a retry waits for. A retry is worth waiting for only within a
# request's life: past 10 s a caller has usually given up (and the route's timeout, when
# set, bounds the wait anyway). Envoy's own default would be 300 s.
RETRY_AFTER_MAX = 10.0


class SidecarKind:
    rbac_dialect = rbac.SIDECAR
    normalizes_paths = True
    traces = True
    outbound_default = True
    supports_query = True
    supports_mirror = True
    marks_non_idempotent = True
    supports_rate_limit = True

    def apply_policies(self, action: rc.RouteAction, entry: Entry) -> None:
        timeouts = entry.timeouts
        request = parse_duration(timeouts.request) if timeouts and timeouts.request else 0.0
        action.timeout.CopyFrom(pb.seconds(request))
        per_try = (
            parse_duration(timeouts.backend_request)
            if timeouts and timeouts.backend_request
            else 0.0
        )
        retry = entry.retry
        if (retry is None or retry.attempts == 0) and per_try <= 0:
            return
        policy = rc.RetryPolicy()
        policy.num_retries.value = retry.attempts if retry is not None else 0
        if retry is not None and retry.attempts > 0:
            if isinstance(retry, GRPCRetry):
                on = _ALWAYS + sorted({c.lower().replace("_", "-") for c in retry.codes})
            elif retry.codes:
                on = [*_ALWAYS, "retriable-status-codes"]
                policy.retriable_status_codes.extend(sorted(set(retry.codes)))
            else:
                on = list(_ALWAYS)
            policy.retry_on = ",".join(on)
            back_off = retry_back_off(retry.backoff)
            if back_off is not None:
                policy.retry_back_off.CopyFrom(back_off)
            policy.rate_limited_retry_back_off.CopyFrom(retry_after_back_off())
        if per_try > 0:
            policy.per_try_timeout.CopyFrom(pb.seconds(per_try))
        action.retry_policy.CopyFrom(policy)

    def connection_hash(self) -> rc.RouteAction.HashPolicy:
        return rc.RouteAction.HashPolicy(
            connection_properties=rc.RouteAction.HashPolicy.ConnectionProperties(source_ip=True)
        )

    def local_ports(self, node: NodeInfo, push: PushContext) -> list[int]:
        if node.ports:
            return list(dict.fromkeys(node.ports))
        workload = push.workload(node.namespace, node.workload)
        return [p.port for p in workload.spec.ports] if workload is not None else []

    def inbound_routes(
        self, node: NodeInfo, push: PushContext, name: str
    ) -> route_pb2.RouteConfiguration:
        ports = self.local_ports(node, push)
        tcp = tcp_ports(node, push)
        routes = []
        for port in ports:
            header = rc.HeaderMatcher(
                name=TARGET_PORT_HEADER, string_match=string_pb2.StringMatcher(exact=str(port))
            )
            routes.append(_inbound_route(f"port-{port}", port, [header], port in tcp))
        if ports:
            routes.append(_inbound_route("default", ports[0], [], ports[0] in tcp))
        vhost = rc.VirtualHost(name="inbound", domains=["*"], routes=routes)
        limit = inbound_rate_limit(node, push)
        if limit is not None:
            vhost.typed_per_filter_config[pb.LOCAL_RATELIMIT_FILTER].CopyFrom(
                ratelimits.per_filter_config(limit)
            )
        return route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])

    def local_cluster(self, node: NodeInfo, port: int) -> cluster_pb2.Cluster | None:
        return inbound_cluster(names.inbound_cluster_name(port), port)


def inbound_rate_limit(node: NodeInfo, push: PushContext) -> LocalRateLimit | None:
    """The inbound RateLimitPolicy of a service the node's workload is a member of (the
    first such service by name, when several select it and have one): one bucket for every
    request this sidecar takes in."""
    workload = push.workload(node.namespace, node.workload)
    if workload is None:
        return None
    for service in push.services_of(workload):
        policy = push.service_rate_limit(service, "inbound")
        if policy is not None:
            return policy.spec.local
    return None


def tcp_ports(node: NodeInfo, push: PushContext) -> frozenset[int]:
    """The node's app ports declared `tcp`: by its Workload's port, or by a port of a
    Service that selects the workload and targets that port."""
    workload = push.workload(node.namespace, node.workload)
    if workload is None:
        return frozenset()
    out = {p.port for p in workload.spec.ports if p.protocol == "tcp"}
    for service in push.services_of(workload):
        for sp in service.spec.ports:
            if sp.protocol == "tcp":
                wp = workload.port_for(sp.target_port if sp.target_port is not None else sp.port)
                if wp is not None:
                    out.add(wp.port)
    return frozenset(out)


def _inbound_route(
    name: str, port: int, headers: list[rc.HeaderMatcher], tunnels: bool = False
) -> rc.Route:
    action = rc.RouteAction(cluster=names.inbound_cluster_name(port), timeout=pb.seconds(0))
    if tunnels:
        action.upgrade_configs.append(
            rc.RouteAction.UpgradeConfig(
                upgrade_type="CONNECT", connect_config=rc.RouteAction.UpgradeConfig.ConnectConfig()
            )
        )
    return rc.Route(name=name, match=rc.RouteMatch(prefix="/", headers=headers), route=action)


def retry_after_back_off() -> rc.RetryPolicy.RateLimitedRetryBackOff:
    """Honour an upstream's `Retry-After: SECONDS` before the next attempt, up to
    RETRY_AFTER_MAX; a longer one is discarded (Envoy's rule) and the usual back-off
    applies."""
    return rc.RetryPolicy.RateLimitedRetryBackOff(
        reset_headers=[
            rc.RetryPolicy.ResetHeader(name="retry-after", format=rc.RetryPolicy.SECONDS)
        ],
        max_interval=pb.seconds(RETRY_AFTER_MAX),
    )


GENERATOR = MeshGenerator(SidecarKind())
