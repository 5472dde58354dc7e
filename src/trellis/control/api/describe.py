"""`describe service`: a Service with its attached routes, its endpoints, the names
nodes subscribe to for it, and the resilience settings in force for calls to it (its
DestinationPolicy's, defaults filled in). Pure: works on a store Snapshot and a clock
reading.

Endpoints follow the mesh's membership rule: Workloads in the Service's
namespace whose labels match its selector; a Workload with a lease is healthy
while the lease is healthy and unexpired, a static one (no lease) always.
"""

from __future__ import annotations

from dataclasses import dataclass

from trellis.control.translate import ratelimits
from trellis.control.translate.names import outbound_cluster_name, route_config_name, spellings
from trellis.model import DestinationPolicy, GRPCRoute, HTTPRoute, Service, Workload
from trellis.model.base import Document, selector_matches
from trellis.model.policies import ConnectionPool, DestinationPolicySpec, RateLimitPolicy
from trellis.store.base import Lease, Snapshot


@dataclass(frozen=True, slots=True)
class Endpoint:
    workload: str
    address: str
    port: int  # where the mesh reaches the workload: its sidecar's inbound port, or the app port
    service_port: int
    healthy: bool
    expires_at: float | None
    static: bool

    def to_json(self) -> dict[str, object]:
        return {
            "workload": self.workload,
            "address": self.address,
            "port": self.port,
            "servicePort": self.service_port,
            "healthy": self.healthy,
            "expiresAt": self.expires_at,
            "static": self.static,
        }


def attached_routes(snapshot: Snapshot, service: Service) -> list[Document]:
    """HTTPRoutes and GRPCRoutes with a parentRef naming `service` (producer and consumer)."""
    out: list[Document] = []
    for doc in snapshot.docs:
        if not isinstance(doc, HTTPRoute | GRPCRoute):
            continue
        for parent in doc.spec.parent_refs:
            if (
                parent.name == service.name
                and (parent.namespace or doc.namespace) == service.namespace
            ):
                out.append(doc)
                break
    return out


def endpoints(snapshot: Snapshot, service: Service, now: float) -> list[Endpoint]:
    leases: dict[tuple[str, str], Lease] = {
        (lease.key.namespace, lease.key.name): lease for lease in snapshot.leases
    }
    out: list[Endpoint] = []
    for doc in snapshot.docs:
        if not isinstance(doc, Workload) or doc.namespace != service.namespace:
            continue
        if not selector_matches(service.spec.selector, doc.metadata.labels):
            continue
        lease = leases.get((doc.namespace, doc.name))
        healthy = lease is None or (lease.healthy and lease.expires_at >= now)
        for sp in service.spec.ports:
            target = sp.target_port if sp.target_port is not None else sp.port
            wport = doc.port_for(target)
            if wport is None:
                continue
            port = doc.spec.inbound.port if doc.spec.inbound is not None else wport.port
            out.append(
                Endpoint(
                    workload=doc.name,
                    address=doc.spec.address,
                    port=port,
                    service_port=sp.port,
                    healthy=healthy,
                    expires_at=lease.expires_at if lease else None,
                    static=lease is None,
                )
            )
    return out


def resource_names(service: Service) -> list[str]:
    """Listener, route and cluster names (the translator's) a node asks for to call `service`."""
    names: list[str] = []
    for sp in service.spec.ports:
        names.append(outbound_cluster_name(service.namespace, service.name, sp.port))
        names.append(route_config_name(service, sp.port))
        # The service's own namespace sees every spelling, short names included.
        names.extend(spellings(service, sp.port, service.namespace))
    return names


# Envoy's circuit-breaker defaults, which the sidecar applies to a limit left unset.
CIRCUIT_DEFAULTS = {
    "maxConnections": 1024,
    "maxPendingRequests": 1024,
    "maxRequests": 1024,
    "maxRetries": 3,
}


def destination_policy(snapshot: Snapshot, service: Service) -> DestinationPolicy | None:
    """The DestinationPolicy governing `service`: the oldest of those naming it (as the
    push context chooses, and Istio does)."""
    found = [
        d
        for d in snapshot.docs
        if isinstance(d, DestinationPolicy)
        and d.namespace == service.namespace
        and d.spec.service == service.name
    ]
    if not found:
        return None
    return min(found, key=lambda p: (p.metadata.creation_revision or 0, p.name))


def in_force(snapshot: Snapshot, service: Service) -> dict[str, object]:
    """What callers' sidecars apply to calls to `service`: the retry budget, circuit-breaker
    limits, outlier detection, load balancer and panic threshold, defaults filled in."""
    policy = destination_policy(snapshot, service)
    spec = policy.spec if policy is not None else DestinationPolicySpec(service=service.name)
    pool = spec.connection_pool or ConnectionPool()
    pool_set = pool.model_dump(by_alias=True, exclude_none=True)
    limits = {k: pool_set.get(k, v) for k, v in CIRCUIT_DEFAULTS.items()}
    lb = spec.load_balancer
    locality = lb.locality_lb_setting
    return {
        "destinationPolicy": f"{policy.namespace}/{policy.name}" if policy else None,
        "retryBudget": spec.retry_budget.model_dump(by_alias=True, mode="json"),
        "circuitBreakers": limits,
        "outlierDetection": (
            spec.outlier_detection.model_dump(by_alias=True, mode="json", exclude_none=True)
            if spec.outlier_detection is not None
            else None
        ),
        "loadBalancer": {
            "type": lb.type,
            "healthyPanicThreshold": lb.healthy_panic_threshold,
            "localityFailover": bool(locality is not None and locality.enabled),
        },
        "rateLimits": rate_limits(snapshot, service),
    }


def rate_limits(snapshot: Snapshot, service: Service) -> list[str]:
    """The RateLimitPolicies of `service`, oldest first, one line each:
    `NAME: inbound 20 per 1s (burst 20)` or `... outbound, route NS/NAME rule 0`."""
    found = sorted(
        (
            d
            for d in snapshot.docs
            if isinstance(d, RateLimitPolicy)
            and d.namespace == service.namespace
            and d.spec.service == service.name
        ),
        key=lambda p: (p.metadata.creation_revision or 0, p.name),
    )
    out = []
    for p in found:
        spec = p.spec
        where = ", ".join(
            f"route {r.namespace or p.namespace}/{r.name}"
            + (f" rule {r.rule}" if r.rule is not None else "")
            for r in spec.routes
        )
        out.append(
            f"{p.name}: {spec.side} {ratelimits.describe(spec.local)}"
            + (f", {where}" if where else "")
        )
    return out
