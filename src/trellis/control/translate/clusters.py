"""Cluster builder: one EDS-over-ADS cluster per service port, shaped by its DestinationPolicy.

Load balancing travels in `load_balancing_policy` only (never the legacy
`lb_policy`: grpcio NACKs LEAST_REQUEST there):
- LEAST_REQUEST (default) → WrrLocality{[LeastRequest(choice_count), RoundRobin]}:
  grpcio falls back to round robin with locality weights, our sidecar uses P2C;
- ROUND_ROBIN → WrrLocality{[RoundRobin]};
- RING_HASH → RingHash (XX_HASH, the only hash grpcio knows); the hash key
  comes from the route's `hash_policy`.
Circuit breakers come from connectionPool (every outbound cluster states
`max_retries`: unbounded unless set, as Istio's default), outlier detection from
outlierDetection (only the ejections the user asks for are enforced), the
panic threshold from loadBalancer.healthyPanicThreshold
(`common_lb_config.healthy_panic_threshold`).

The retry budget (Linkerd's rate-based shape: a share of the requests plus a
minimum rate, over a ttl) has no Envoy field: Envoy's
`circuit_breakers.thresholds.retry_budget` bounds *concurrent* retries, another
thing. It travels in the Cluster's `metadata.filter_metadata["trellis"]
["retryBudget"]` = `{percent, minRetriesPerSecond, ttl}` (ttl in seconds), which
only our sidecar reads (Envoy and grpcio ignore filter metadata they do not
know). Every outbound cluster carries one: the budget is on by default.
"""

from __future__ import annotations

from envoy.config.cluster.v3 import circuit_breaker_pb2, cluster_pb2, outlier_detection_pb2
from envoy.config.core.v3 import address_pb2, base_pb2, extension_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2, endpoint_pb2
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.round_robin.v3 import round_robin_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2
from google.protobuf.message import Message

from trellis.control.translate import pb
from trellis.model.duration import parse_duration
from trellis.model.policies import (
    ConnectionPool,
    DestinationPolicy,
    LoadBalancer,
    OutlierDetection,
    RetryBudget,
)
from trellis.wire import ENDPOINT_METADATA as METADATA_NAMESPACE
from trellis.wire import RETRY_BUDGET_KEY

LOCALHOST = "127.0.0.1"
# Also spelled in proxy/config/resources.py (the proxy cannot import the control plane):
# a candidate for trellis.wire.
UNBOUNDED_RETRIES = 2**32 - 1  # Istio's default for maxRetries: the budget bounds retries


def outbound_cluster(name: str, policy: DestinationPolicy | None) -> cluster_pb2.Cluster:
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.EDS,
        eds_cluster_config=cluster_pb2.Cluster.EdsClusterConfig(
            eds_config=pb.ads(), service_name=name
        ),
    )
    spec = policy.spec if policy is not None else None
    lb = spec.load_balancer if spec is not None else LoadBalancer()
    cluster.load_balancing_policy.CopyFrom(load_balancing_policy(lb))
    pool = spec.connection_pool if spec is not None else None
    cluster.circuit_breakers.CopyFrom(circuit_breakers(pool or ConnectionPool()))
    if spec is not None and spec.outlier_detection is not None:
        cluster.outlier_detection.CopyFrom(outlier_detection(spec.outlier_detection))
    if lb.healthy_panic_threshold != LoadBalancer().healthy_panic_threshold:
        cluster.common_lb_config.healthy_panic_threshold.value = float(lb.healthy_panic_threshold)
    budget = spec.retry_budget if spec is not None else RetryBudget()
    cluster.metadata.filter_metadata[METADATA_NAMESPACE].update(
        {RETRY_BUDGET_KEY: retry_budget(budget)}
    )
    return cluster


def retry_budget(budget: RetryBudget) -> dict[str, float]:
    """The budget as the Cluster's trellis metadata carries it (ttl in seconds)."""
    return {
        "percent": float(budget.percent),
        "minRetriesPerSecond": float(budget.min_retries_per_second),
        "ttl": parse_duration(budget.ttl),
    }


def inbound_cluster(name: str, port: int) -> cluster_pb2.Cluster:
    """A sidecar's local app: a STATIC cluster of 127.0.0.1:`port`."""
    endpoint = endpoint_components_pb2.LbEndpoint(
        endpoint=endpoint_components_pb2.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=LOCALHOST, port_value=port)
            )
        )
    )
    locality = endpoint_components_pb2.LocalityLbEndpoints(lb_endpoints=[endpoint])
    locality.load_balancing_weight.value = 1
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(cluster_name=name, endpoints=[locality]),
    )
    cluster.load_balancing_policy.CopyFrom(load_balancing_policy(LoadBalancer(type="ROUND_ROBIN")))
    return cluster


def passthrough_cluster(name: str) -> cluster_pb2.Cluster:
    """Hosts outside the registry, reached at the address the request names (ALLOW_ANY)."""
    cluster = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.ORIGINAL_DST)
    cluster.load_balancing_policy.CopyFrom(load_balancing_policy(LoadBalancer(type="ROUND_ROBIN")))
    return cluster


def blackhole_cluster(name: str) -> cluster_pb2.Cluster:
    """Hosts outside the registry, refused (REGISTRY_ONLY): a cluster with no endpoints."""
    cluster = cluster_pb2.Cluster(
        name=name,
        type=cluster_pb2.Cluster.STATIC,
        load_assignment=endpoint_pb2.ClusterLoadAssignment(cluster_name=name),
    )
    cluster.load_balancing_policy.CopyFrom(load_balancing_policy(LoadBalancer(type="ROUND_ROBIN")))
    return cluster


def _policy(name: str, config: Message) -> cluster_pb2.LoadBalancingPolicy.Policy:
    return cluster_pb2.LoadBalancingPolicy.Policy(
        typed_extension_config=extension_pb2.TypedExtensionConfig(
            name=name, typed_config=pb.pack(config)
        )
    )


def load_balancing_policy(lb: LoadBalancer) -> cluster_pb2.LoadBalancingPolicy:
    if lb.type == "RING_HASH":
        ring = ring_hash_pb2.RingHash(hash_function=ring_hash_pb2.RingHash.XX_HASH)
        if lb.ring_hash is not None:
            ring.minimum_ring_size.value = lb.ring_hash.minimum_ring_size
            ring.maximum_ring_size.value = lb.ring_hash.maximum_ring_size
        policies = [_policy("envoy.load_balancing_policies.ring_hash", ring)]
        return cluster_pb2.LoadBalancingPolicy(policies=policies)
    picking = []
    if lb.type == "LEAST_REQUEST":
        least = least_request_pb2.LeastRequest()
        least.choice_count.value = lb.choice_count
        picking.append(_policy("envoy.load_balancing_policies.least_request", least))
    picking.append(
        _policy("envoy.load_balancing_policies.round_robin", round_robin_pb2.RoundRobin())
    )
    wrr = wrr_locality_pb2.WrrLocality(
        endpoint_picking_policy=cluster_pb2.LoadBalancingPolicy(policies=picking)
    )
    return cluster_pb2.LoadBalancingPolicy(
        policies=[_policy("envoy.load_balancing_policies.wrr_locality", wrr)]
    )


def circuit_breakers(pool: ConnectionPool) -> circuit_breaker_pb2.CircuitBreakers:
    """The DEFAULT-priority thresholds. A limit left unset is Envoy's default (1024
    connections, pending and active requests), except `max_retries`: Envoy's 3 retries in
    flight per destination refused retries that the retry budget allowed (a SIGKILLed
    endpoint under 200 rps: 1% of calls failed 503 UO,UF), so, as Istio does for
    DestinationRule `maxRetries`, unset means 2^32-1 — the retry budget is what bounds
    retries."""
    t = circuit_breaker_pb2.CircuitBreakers.Thresholds(priority=base_pb2.RoutingPriority.DEFAULT)
    if pool.max_connections is not None:
        t.max_connections.value = pool.max_connections
    if pool.max_pending_requests is not None:
        t.max_pending_requests.value = pool.max_pending_requests
    if pool.max_requests is not None:
        t.max_requests.value = pool.max_requests
    t.max_retries.value = pool.max_retries if pool.max_retries is not None else UNBOUNDED_RETRIES
    return circuit_breaker_pb2.CircuitBreakers(thresholds=[t])


def outlier_detection(od: OutlierDetection) -> outlier_detection_pb2.OutlierDetection:
    """Envoy enables consecutive-5xx and success-rate ejection by default; we enable only
    what the user sets (gRFC A50 reads the same enforcing_* fields)."""
    out = outlier_detection_pb2.OutlierDetection(
        interval=pb.duration(od.interval),
        base_ejection_time=pb.duration(od.base_ejection_time),
    )
    out.max_ejection_percent.value = od.max_ejection_percent
    out.enforcing_success_rate.value = 0
    if od.consecutive_5xx_errors is not None:
        out.consecutive_5xx.value = od.consecutive_5xx_errors
        out.enforcing_consecutive_5xx.value = 100
    else:
        out.enforcing_consecutive_5xx.value = 0
    if od.consecutive_gateway_errors is not None:
        out.consecutive_gateway_failure.value = od.consecutive_gateway_errors
        out.enforcing_consecutive_gateway_failure.value = 100
    if od.failure_percentage_threshold is not None:
        out.failure_percentage_threshold.value = od.failure_percentage_threshold
        out.enforcing_failure_percentage.value = 100
        out.failure_percentage_minimum_hosts.value = od.failure_percentage_minimum_hosts
        out.failure_percentage_request_volume.value = od.failure_percentage_request_volume
    return out
