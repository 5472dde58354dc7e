"""The generator skeleton both client kinds share: type dispatch and name resolution.

`MeshGenerator(kind)` answers LDS/RDS/CDS/EDS requests for one node. It turns
requested names into (service, port) targets (names.py), asks the builders for
resources, and records every name that resolves to nothing in
`Generated.errors` (the ADS server answers them NOT_FOUND). What differs per
kind — route timeouts/retries, inbound listener routes, local clusters, what
the RBAC filters may hold — comes from a `KindPolicy`. Pure: no I/O, no clock.

Inbound listeners carry the RBAC filters of the AuthorizationPolicies that
select the node's workload (rbac.py): its labels come from the node metadata,
else from its registered Workload.

Wildcard (names None): LDS gets the `FQDN:PORT` listener of every service
port, CDS every outbound cluster (plus the kind's local ones); RDS and EDS
wildcards are not meaningful and return nothing.

Sharing: most resources depend on little of the node (`scope`): a route
configuration on its namespace, an outbound cluster on whether it is secure,
endpoints on the node's (region, zone) — the priorities of locality failover.
Each is built and packed once per push and scope, kept in the push's memo, and
handed to every node of that scope: a push to N nodes of one shape costs one
generation, not N. Inbound listeners are the node's own and
are built for each; names that resolve to nothing are not kept, and the memo
is bounded (`MEMO_MAX` in push/context.py). A builder that starts reading more of the
node must say so in `scope` (tests/control/translate/test_shared_generation.py
compares shared against per-node generation for nodes that differ in every
field).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Hashable, Mapping
from typing import Protocol

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.route.v3 import route_pb2
from google.protobuf.message import Message

from trellis.control.push.context import PushContext
from trellis.control.translate import names, pb, ratelimits
from trellis.control.translate.api import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Generated,
)
from trellis.control.translate.clusters import (
    blackhole_cluster,
    outbound_cluster,
    passthrough_cluster,
)
from trellis.control.translate.endpoints import load_assignment
from trellis.control.translate.listeners import (
    inbound_listener,
    outbound_default_listener,
    outbound_listener,
)
from trellis.control.translate.node import NodeInfo
from trellis.control.translate.rbac import RbacDialect, rbac_filters
from trellis.control.translate.routes import RouteFlavor, route_configuration
from trellis.control.translate.rules import entries
from trellis.control.translate.tls import inbound_mode, upstream_tls


class KindPolicy(RouteFlavor, Protocol):
    """Everything a client kind decides for itself."""

    # Sidecars get `trellis/outbound` (outboundTrafficPolicy) and its two clusters.
    outbound_default: bool
    # What the kind's RBAC filters may contain (shadow rules, header names, filter names).
    rbac_dialect: RbacDialect
    # Its listeners state MeshConfig pathNormalization (sidecars; grpcio does not normalize).
    normalizes_paths: bool
    # Its listeners carry MeshConfig tracing as the HCM's `tracing` (sidecars).
    traces: bool

    def inbound_routes(
        self, node: NodeInfo, push: PushContext, name: str
    ) -> route_pb2.RouteConfiguration:
        """The inline RouteConfiguration of the node's inbound listener `name`."""

    def local_cluster(self, node: NodeInfo, port: int) -> cluster_pb2.Cluster | None:
        """The `inbound|PORT||` cluster, or None when this kind has none."""

    def local_ports(self, node: NodeInfo, push: PushContext) -> list[int]:
        """The app ports that have `inbound|PORT||` clusters (none for proxyless)."""


Builder = Callable[[NodeInfo, PushContext, str], Message]


class MeshGenerator:
    __slots__ = ("_builders", "kind")

    def __init__(self, kind: KindPolicy) -> None:
        self.kind = kind
        self._builders: dict[str, Builder] = {
            LISTENER_TYPE: self.listener,
            ROUTE_TYPE: self.route_config,
            CLUSTER_TYPE: self.cluster,
            ENDPOINT_TYPE: self.endpoints,
        }

    def generate(
        self, node: NodeInfo, push: PushContext, type_url: str, names_: Collection[str] | None
    ) -> Generated:
        build = self._builders.get(type_url)
        if build is None:
            return Generated()
        wanted = self._wildcard(node, push, type_url) if names_ is None else sorted(set(names_))
        out = Generated()
        memo = push.memo
        for name in wanted:
            scope = self.scope(node, push, type_url, name)
            if scope is None:
                try:
                    out.resources[name] = build(node, push, name)
                except names.Unresolved as e:
                    out.errors[name] = str(e)
                continue
            key = (self, type_url, name, scope)
            shared = memo.get(key)
            if shared is None:
                try:
                    message = build(node, push, name)
                except names.Unresolved as e:
                    out.errors[name] = str(e)  # not kept: clients choose what they ask for
                    continue
                shared = (message, pb.pack(message))
                push.remember(key, shared)
            assert isinstance(shared, tuple)
            out.resources[name], out.packed[name] = shared
        return out

    def scope(self, node: NodeInfo, push: PushContext, type_url: str, name: str) -> Hashable | None:
        """What of `node` its resource `name` depends on: nodes (of this kind) that agree on
        it get the same resource. None: the resource is the node's own."""
        if type_url == ENDPOINT_TYPE:
            # The service's endpoints, with priorities from the caller's zone: one variant
            # per caller locality (as Istio caches EDS per locality).
            return node_locality(node, push)
        if type_url == CLUSTER_TYPE:
            return node.secure  # upstream_tls; an inbound cluster is its name's port alone
        if type_url == ROUTE_TYPE:
            return node.namespace  # names resolve and routes attach from the namespace
        if type_url == LISTENER_TYPE and not name.startswith(names.INBOUND_LISTENER_PREFIX):
            return node.namespace  # outbound listeners: the host resolves from it
        return None  # inbound listeners: the workload's labels, ports, mTLS mode

    def _wildcard(self, node: NodeInfo, push: PushContext, type_url: str) -> list[str]:
        if type_url == LISTENER_TYPE:
            return [
                names.route_config_name(svc, p.port)
                for svc in push.all_services()
                for p in svc.spec.ports
            ]
        if type_url == CLUSTER_TYPE:
            outbound = [
                names.outbound_cluster_name(svc.namespace, svc.name, p.port)
                for svc in push.all_services()
                for p in svc.spec.ports
            ]
            local = [names.inbound_cluster_name(p) for p in self.kind.local_ports(node, push)]
            return outbound + local
        return []

    # -- one resource per type ----------------------------------------------------------

    def listener(self, node: NodeInfo, push: PushContext, name: str) -> Message:
        if name == names.OUTBOUND_DEFAULT_LISTENER and self.kind.outbound_default:
            policy = push.mesh.spec.outbound_traffic_policy.mode
            cluster = (
                names.PASSTHROUGH_CLUSTER if policy == "ALLOW_ANY" else names.BLACKHOLE_CLUSTER
            )
            return outbound_default_listener(name, cluster)
        paths = push.mesh.spec.path_normalization if self.kind.normalizes_paths else None
        tracing = push.mesh.spec.tracing if self.kind.traces else None
        inbound = names.parse_inbound_listener(name)
        if inbound is not None:
            address, port = inbound
            policies = push.authorization_policies(node.namespace, workload_labels(node, push))
            filters = rbac_filters(policies, push.mesh.spec.trust_domain, self.kind.rbac_dialect)
            routes = self.kind.inbound_routes(node, push, name)
            mode = inbound_mode(node, push)
            if any(
                pb.LOCAL_RATELIMIT_FILTER in v.typed_per_filter_config for v in routes.virtual_hosts
            ):
                filters = [*filters, ratelimits.http_filter()]  # only where a limit applies
            return inbound_listener(name, address, port, routes, filters, mode, paths, tracing)
        target = names.resolve_host(push, name, node.namespace)
        rds = names.route_config_name(target.service, target.port.port)
        limited = self.kind.supports_rate_limit and any(
            p.spec.side == "outbound"
            for p in push.rate_limits.get((target.service.namespace, target.service.name), ())
        )
        return outbound_listener(name, rds, paths, tracing, limited)

    def route_config(self, node: NodeInfo, push: PushContext, name: str) -> Message:
        target = names.resolve_route_config(push, name)
        domains = names.spellings(target.service, target.port.port, node.namespace)
        rules = entries(push, target, node.namespace)
        limit = push.service_rate_limit(target.service, "outbound")
        return route_configuration(
            name, domains, rules, self.kind, push, limit.spec.local if limit else None
        )

    def cluster(self, node: NodeInfo, push: PushContext, name: str) -> Message:
        if self.kind.outbound_default:
            if name == names.PASSTHROUGH_CLUSTER:
                return passthrough_cluster(name)
            if name == names.BLACKHOLE_CLUSTER:
                return blackhole_cluster(name)
        ref = names.parse_cluster_name(name)
        if ref.direction == "inbound":
            local = self.kind.local_cluster(node, ref.port)
            if local is None:
                raise names.Unresolved(f"{name!r}: {node.kind} nodes have no inbound clusters")
            return local
        target = names.resolve_cluster(push, ref)
        policy = push.policy(target.service)
        cluster = outbound_cluster(name, policy)
        socket = upstream_tls(
            node, push.endpoints(target.service, target.port), push.mesh.spec.trust_domain, policy
        )
        if socket is not None:
            cluster.transport_socket.CopyFrom(socket)
        return cluster

    def endpoints(self, node: NodeInfo, push: PushContext, name: str) -> Message:
        ref = names.parse_cluster_name(name)
        if ref.direction == "inbound":
            raise names.Unresolved(f"{name!r} is a STATIC cluster: it has no EDS resource")
        target = names.resolve_cluster(push, ref)
        policy = push.policy(target.service)
        setting = policy.spec.load_balancer.locality_lb_setting if policy is not None else None
        caller = node_locality(node, push) if setting is not None and setting.enabled else None
        return load_assignment(name, push.endpoints(target.service, target.port), caller)


def node_locality(node: NodeInfo, push: PushContext) -> tuple[str, str]:
    """(region, zone) of the node's registered Workload; ("", "") when it has none (yet:
    a sidecar connects before `trellis run` registers its workload)."""
    workload = push.workload(node.namespace, node.workload)
    if workload is None:
        return ("", "")
    locality = workload.spec.locality
    return (locality.region, locality.zone)


def workload_labels(node: NodeInfo, push: PushContext) -> Mapping[str, str]:
    """The node's labels from its metadata, else those of its registered Workload."""
    if node.labels:
        return node.labels
    workload = push.workload(node.namespace, node.workload)
    return workload.metadata.labels if workload is not None else {}
