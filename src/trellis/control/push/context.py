"""PushContext: one immutable, indexed snapshot of the mesh, built once per push.

It owns the mesh *semantics* every generator shares: which workloads are live
endpoints (leases), which workloads a Service selects, which routes apply to
a client (GAMMA producer/consumer), which DestinationPolicy governs a
service, which AuthorizationPolicies select a workload, and the effective
MeshConfig. It knows nothing of xDS or protobuf,
does no I/O and reads no clock: `now` is given to `build`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from trellis.model.base import selector_matches
from trellis.model.keys import ResourceKey
from trellis.model.mesh_config import MeshConfig
from trellis.model.policies import AuthorizationPolicy, DestinationPolicy, RateLimitPolicy
from trellis.model.routes import GRPCRoute, HTTPRoute
from trellis.model.service import Service, ServicePort
from trellis.model.workload import Locality, Workload
from trellis.store.base import Lease, Snapshot
from trellis.wire import peer_value, workload_peer

Route = HTTPRoute | GRPCRoute
# What a push's memo keeps, at most. Its keys hold names and namespaces that clients
# choose (a node's metadata names its namespace), and a quiet push can last for hours:
# past this, callers compute again what they would have found there.
MEMO_MAX = 20_000
ServiceKey = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One way to reach one workload for one service port.

    `port` is where peers connect: the app's port for a proxyless workload, the
    sidecar's inbound port for a sidecar workload. `target_port` is the app's
    own port (the same number for proxyless workloads).
    """

    workload: str  # "NAME.NAMESPACE"
    address: str
    port: int
    target_port: int
    sidecar: bool
    locality: Locality
    weight: int
    mtls: bool = False  # it speaks mesh mTLS (Workload spec.mtls)
    service_account: str = "default"
    # Who it is for its callers' metrics (app, version, canonical name and revision), in
    # the peer header's format (trellis.wire): EDS metadata "peer".
    peer: str = ""


@dataclass(frozen=True, slots=True)
class AttachedRoute:
    """A route attached to a service: `port` None means every port of the service."""

    route: Route
    port: int | None

    def applies_to_port(self, port: int) -> bool:
        return self.port is None or self.port == port


def _route_order(route: Route) -> tuple[int, str, str, str]:
    """Gateway API tie-break: oldest first, then namespace/name."""
    return (route.metadata.creation_revision or 0, route.namespace, route.name, route.kind)


@dataclass(frozen=True, slots=True)
class PushContext:
    revision: int
    mesh: MeshConfig
    services: Mapping[ServiceKey, Service]
    workloads: Mapping[ServiceKey, Workload]  # every workload, live or not
    live: frozenset[ServiceKey]  # workloads that are endpoints (healthy lease or static)
    members: Mapping[ServiceKey, tuple[Workload, ...]]  # live workloads a service selects
    attached: Mapping[ServiceKey, tuple[AttachedRoute, ...]]  # oldest first
    policies: Mapping[ServiceKey, DestinationPolicy]
    authorization: Mapping[str, tuple[AuthorizationPolicy, ...]]  # per namespace, by name
    # RateLimitPolicies per service (namespace, name), oldest first.
    rate_limits: Mapping[ServiceKey, tuple[RateLimitPolicy, ...]] = field(default_factory=dict)
    # What pure functions of this snapshot computed, kept for the other callers of the
    # same push (the generators' resources, shared by every node of the same shape). It
    # lives and dies with the push: a new snapshot starts empty, so nothing goes stale.
    memo: dict[Hashable, object] = field(default_factory=dict, compare=False, repr=False)

    def remember(self, key: Hashable, value: object) -> None:
        """Keep `value` in the memo under `key`, unless the memo is full (MEMO_MAX)."""
        if len(self.memo) < MEMO_MAX:
            self.memo[key] = value

    # -- construction -----------------------------------------------------------------

    @classmethod
    def empty(cls) -> PushContext:
        return cls.build(Snapshot(revision=0, docs=(), leases=()), now=0.0)

    @classmethod
    def build(cls, snapshot: Snapshot, now: float) -> PushContext:
        """Index `snapshot`; a lease is live when healthy and `expires_at >= now`."""
        services: dict[ServiceKey, Service] = {}
        workloads: dict[ServiceKey, Workload] = {}
        routes: list[Route] = []
        policies: dict[ServiceKey, DestinationPolicy] = {}
        authorization: dict[str, list[AuthorizationPolicy]] = {}
        rate_limits: dict[ServiceKey, list[RateLimitPolicy]] = {}
        mesh = MeshConfig()
        for doc in snapshot.docs:
            if isinstance(doc, Service):
                services[(doc.namespace, doc.name)] = doc
            elif isinstance(doc, Workload):
                workloads[(doc.namespace, doc.name)] = doc
            elif isinstance(doc, HTTPRoute | GRPCRoute):
                routes.append(doc)
            elif isinstance(doc, DestinationPolicy):
                key = (doc.namespace, doc.spec.service)
                # Several policies for one service: the oldest wins (as Istio does).
                if key not in policies or _policy_order(doc) < _policy_order(policies[key]):
                    policies[key] = doc
            elif isinstance(doc, AuthorizationPolicy):
                authorization.setdefault(doc.namespace, []).append(doc)
            elif isinstance(doc, RateLimitPolicy):
                rate_limits.setdefault((doc.namespace, doc.spec.service), []).append(doc)
            elif isinstance(doc, MeshConfig):
                mesh = doc
        live = frozenset(_live_workloads(workloads, snapshot.leases, now))
        members = {
            key: tuple(
                workloads[w]
                for w in sorted(live)
                if w[0] == svc.namespace
                and selector_matches(svc.spec.selector, dict(workloads[w].metadata.labels))
            )
            for key, svc in services.items()
        }
        return cls(
            revision=snapshot.revision,
            mesh=mesh,
            services=MappingProxyType(services),
            workloads=MappingProxyType(workloads),
            live=live,
            members=MappingProxyType(members),
            attached=MappingProxyType(_attach(routes)),
            policies=MappingProxyType(policies),
            authorization=MappingProxyType(
                {ns: tuple(sorted(ps, key=lambda p: p.name)) for ns, ps in authorization.items()}
            ),
            rate_limits=MappingProxyType(
                {k: tuple(sorted(ps, key=_policy_order)) for k, ps in rate_limits.items()}
            ),
        )

    # -- queries ----------------------------------------------------------------------

    def service(self, namespace: str, name: str) -> Service | None:
        return self.services.get((namespace, name))

    def all_services(self) -> list[Service]:
        """Every service, sorted by (namespace, name)."""
        return [self.services[k] for k in sorted(self.services)]

    def workload(self, namespace: str, name: str) -> Workload | None:
        return self.workloads.get((namespace, name))

    def policy(self, service: Service) -> DestinationPolicy | None:
        return self.policies.get((service.namespace, service.name))

    def service_rate_limit(self, service: Service, side: str) -> RateLimitPolicy | None:
        """The RateLimitPolicy limiting all of `service` at `side` (one without routes): the
        oldest, when several do."""
        for p in self.rate_limits.get((service.namespace, service.name), ()):
            if p.spec.side == side and not p.spec.routes:
                return p
        return None

    def route_rate_limit(
        self, service: Service, route_namespace: str, route_name: str, rule: int
    ) -> RateLimitPolicy | None:
        """The outbound RateLimitPolicy of `service` naming rule `rule` of that HTTPRoute
        (or all its rules): the oldest, when several do."""
        for p in self.rate_limits.get((service.namespace, service.name), ()):
            if p.spec.side != "outbound":
                continue
            for ref in p.spec.routes:
                if (
                    ref.name == route_name
                    and (ref.namespace or p.namespace) == route_namespace
                    and (ref.rule is None or ref.rule == rule)
                ):
                    return p
        return None

    def authorization_policies(
        self, namespace: str, labels: Mapping[str, str]
    ) -> tuple[AuthorizationPolicy, ...]:
        """The AuthorizationPolicies selecting a workload of `namespace` with `labels`, by name.

        A policy without a selector (or with empty `matchLabels`) selects
        every workload of its namespace, as in Istio.
        """
        return tuple(p for p in self.authorization.get(namespace, ()) if _selects(p, labels))

    def endpoints(self, service: Service, port: ServicePort) -> tuple[Endpoint, ...]:
        """Live members of `service` reachable for `port`, sorted by workload.

        A member whose ports do not contain the port's targetPort (by number or
        name) is not an endpoint of that port, as in Kubernetes.
        """
        target = port.target_port if port.target_port is not None else port.port
        out = []
        for w in self.members.get((service.namespace, service.name), ()):
            wp = w.port_for(target)
            if wp is None:
                continue
            inbound = w.spec.inbound
            out.append(
                Endpoint(
                    workload=f"{w.name}.{w.namespace}",
                    address=w.spec.address,
                    port=inbound.port if inbound is not None else wp.port,
                    target_port=wp.port,
                    sidecar=inbound is not None,
                    locality=w.spec.locality,
                    weight=w.spec.weight,
                    mtls=w.spec.mtls,
                    service_account=w.service_account,
                    peer=peer_value(workload_peer(w.name, w.namespace, w.metadata.labels)),
                )
            )
        return tuple(out)

    def services_of(self, workload: Workload) -> tuple[Service, ...]:
        """The Services whose selector picks `workload` (its namespace, its labels)."""
        return tuple(
            svc
            for svc in self.all_services()
            if svc.namespace == workload.namespace
            and svc.spec.selector
            and all(workload.metadata.labels.get(k) == v for k, v in svc.spec.selector.items())
        )

    def routes_for(self, service: Service, port: int, client_namespace: str) -> tuple[Route, ...]:
        """Routes that apply to calls from `client_namespace` to `service`:`port` (GAMMA).

        Consumer routes (in the client's namespace, when that is not the
        service's) replace the producer routes for those clients; otherwise the
        producer routes (in the service's namespace) apply. Oldest first.
        """
        attached = [
            a
            for a in self.attached.get((service.namespace, service.name), ())
            if a.applies_to_port(port)
        ]
        if client_namespace != service.namespace:
            consumer = [a.route for a in attached if a.route.namespace == client_namespace]
            if consumer:
                return tuple(_unique(consumer))
        return tuple(_unique(a.route for a in attached if a.route.namespace == service.namespace))


def _selects(policy: AuthorizationPolicy, labels: Mapping[str, str]) -> bool:
    selector = policy.spec.selector
    if selector is None:
        return True
    return all(labels.get(k) == v for k, v in selector.match_labels.items())


def _policy_order(p: DestinationPolicy | RateLimitPolicy) -> tuple[int, str]:
    return (p.metadata.creation_revision or 0, p.name)


def _live_workloads(
    workloads: Mapping[ServiceKey, Workload], leases: Iterable[Lease], now: float
) -> Iterable[ServiceKey]:
    by_key: dict[ResourceKey, Lease] = {lease.key: lease for lease in leases}
    for key in workloads:
        lease = by_key.get(ResourceKey("Workload", *key))
        # No lease: a static endpoint (applied by hand), always live.
        if lease is None or (lease.healthy and lease.expires_at >= now):
            yield key


def _attach(routes: list[Route]) -> dict[ServiceKey, tuple[AttachedRoute, ...]]:
    out: dict[ServiceKey, list[AttachedRoute]] = {}
    for route in sorted(routes, key=_route_order):
        for parent in route.spec.parent_refs:
            ns = parent.namespace or route.namespace
            out.setdefault((ns, parent.name), []).append(AttachedRoute(route, parent.port))
    return {k: tuple(v) for k, v in out.items()}


def _unique(routes: Iterable[Route]) -> list[Route]:
    seen: set[int] = set()
    out = []
    for r in routes:
        if id(r) not in seen:
            seen.add(id(r))
            out.append(r)
    return out
