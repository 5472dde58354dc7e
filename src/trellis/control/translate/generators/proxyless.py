"""Proxyless gRPC: what grpcio's xDS client understands (gRFCs A28, A31, A33, A36, A42, A44).

- A28: no query-parameter matches (a match needing one cannot match gRPC
  traffic: it is dropped, and a rule left without matches disappears).
- A31: the request timeout is `max_stream_duration.max_stream_duration`; there is
  no per-try timeout, so `backendRequest` is not used.
- A44: `retry_on` lists gRPC codes only (cancelled, deadline-exceeded,
  internal, resource-exhausted, unavailable); an HTTPRoute's 502/503/504 map
  to unavailable and other HTTP codes are dropped; at most 5 attempts in all;
  backoff base from `backoff`, max 10x base.
- A42: ring hash without a header hashes the channel (`io.grpc.channel_id`).
- A36: the inbound listener's routes use `non_forwarding_action`.
Mirrors are not supported by gRPC and are left out.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2

from trellis.control.push.context import PushContext
from trellis.control.translate import pb, rbac
from trellis.control.translate.generators.mesh import MeshGenerator
from trellis.control.translate.node import NodeInfo
from trellis.control.translate.rules import Entry
from trellis.model.duration import parse_duration
from trellis.model.routes import GRPCRetry, HTTPRetry

MAX_RETRIES = 4  # gRFC A44: at most 5 attempts, the first one included
_HTTP_TO_GRPC = {502: "unavailable", 503: "unavailable", 504: "unavailable"}


def grpc_retry_on(retry: HTTPRetry | GRPCRetry) -> list[str]:
    """The gRPC status names a retry policy retries on, in a stable order, without repeats."""
    if isinstance(retry, GRPCRetry):
        names = [c.lower().replace("_", "-") for c in retry.codes]
    elif retry.codes:
        names = [_HTTP_TO_GRPC[c] for c in retry.codes if c in _HTTP_TO_GRPC]
    else:
        names = ["unavailable"]
    return sorted(set(names))


def retry_back_off(backoff: str | None) -> rc.RetryPolicy.RetryBackOff | None:
    base = parse_duration(backoff) if backoff else 0.0
    if base <= 0:
        return None
    return rc.RetryPolicy.RetryBackOff(
        base_interval=pb.seconds(base), max_interval=pb.seconds(base * 10)
    )


class ProxylessKind:
    rbac_dialect = rbac.PROXYLESS
    normalizes_paths = False
    traces = False
    outbound_default = False
    supports_query = False
    supports_mirror = False
    marks_non_idempotent = False
    supports_rate_limit = False

    def apply_policies(self, action: rc.RouteAction, entry: Entry) -> None:
        timeouts = entry.timeouts
        if timeouts is not None and timeouts.request and parse_duration(timeouts.request) > 0:
            action.max_stream_duration.max_stream_duration.CopyFrom(pb.duration(timeouts.request))
        retry = entry.retry
        if retry is None or retry.attempts == 0:
            return
        codes = grpc_retry_on(retry)
        if not codes:
            return
        policy = rc.RetryPolicy(retry_on=",".join(codes))
        policy.num_retries.value = min(retry.attempts, MAX_RETRIES)
        back_off = retry_back_off(retry.backoff)
        if back_off is not None:
            policy.retry_back_off.CopyFrom(back_off)
        action.retry_policy.CopyFrom(policy)

    def connection_hash(self) -> rc.RouteAction.HashPolicy:
        return rc.RouteAction.HashPolicy(
            filter_state=rc.RouteAction.HashPolicy.FilterState(key="io.grpc.channel_id")
        )

    def inbound_routes(
        self, node: NodeInfo, push: PushContext, name: str
    ) -> route_pb2.RouteConfiguration:
        route = rc.Route(
            name="inbound",
            match=rc.RouteMatch(prefix="/"),
            non_forwarding_action=rc.NonForwardingAction(),
        )
        vhost = rc.VirtualHost(name="inbound", domains=["*"], routes=[route])
        return route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])

    def local_cluster(self, node: NodeInfo, port: int) -> cluster_pb2.Cluster | None:
        return None

    def local_ports(self, node: NodeInfo, push: PushContext) -> list[int]:
        return []


GENERATOR = MeshGenerator(ProxylessKind())
