"""Clusters and endpoints: load-balancing policies, limits, locality weights, health."""

from __future__ import annotations

from typing import Any

from tests.control.translate.translate_support import as_dict, gen, load_push, node, one

from trellis.control.translate import CLUSTER_TYPE, ENDPOINT_TYPE
from trellis.model.keys import ResourceKey
from trellis.store.base import Lease

SERVICE = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{port: 9080, targetPort: http}]
"""
CLUSTER = "outbound|9080||reviews.shop.svc.mesh"
WRR = "type.googleapis.com/envoy.extensions.load_balancing_policies.wrr_locality.v3.WrrLocality"


def policy(spec: str) -> str:
    return f"""
---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {{name: p, namespace: shop}}
spec: {{service: reviews, {spec}}}
"""


def cluster(text: str = "") -> dict[str, Any]:
    return as_dict(one(node(), load_push(SERVICE + text), CLUSTER_TYPE, CLUSTER))


def picking(c: dict[str, Any]) -> list[str]:
    (p,) = c["load_balancing_policy"]["policies"]
    config = p["typed_extension_config"]["typed_config"]
    assert config["@type"] == WRR
    return [
        q["typed_extension_config"]["typed_config"]["@type"].rsplit(".", 1)[-1]
        for q in config["endpoint_picking_policy"]["policies"]
    ]


def test_default_is_least_request_inside_wrr_locality_over_eds() -> None:
    c = cluster()
    assert c["type"] == "EDS"
    assert c["eds_cluster_config"] == {
        "eds_config": {"ads": {}, "resource_api_version": "V3"},
        "service_name": CLUSTER,
    }
    assert "lb_policy" not in c  # grpcio NACKs a legacy LEAST_REQUEST
    assert picking(c) == ["LeastRequest", "RoundRobin"]
    least = c["load_balancing_policy"]["policies"][0]["typed_extension_config"]["typed_config"]
    assert (
        least["endpoint_picking_policy"]["policies"][0]["typed_extension_config"]["typed_config"][
            "choice_count"
        ]
        == 2
    )


def test_round_robin_and_ring_hash() -> None:
    assert picking(cluster(policy("loadBalancer: {type: ROUND_ROBIN}"))) == ["RoundRobin"]
    ring = cluster(policy("loadBalancer: {type: RING_HASH, ringHash: {minimumRingSize: 64}}"))
    (p,) = ring["load_balancing_policy"]["policies"]
    config = p["typed_extension_config"]["typed_config"]
    assert config["@type"].endswith("ring_hash.v3.RingHash")
    assert config["hash_function"] == "XX_HASH"  # the only hash grpcio knows
    assert config["minimum_ring_size"] == "64"


def test_circuit_breakers_and_outlier_detection() -> None:
    spec = (
        "connectionPool: {maxRequests: 100, maxConnections: 5}, "
        "outlierDetection: {consecutiveGatewayErrors: 3, interval: 5s, baseEjectionTime: 1m}"
    )
    c = cluster(policy(spec))
    assert c["circuit_breakers"] == {
        "thresholds": [
            # max_retries unset: unbounded (Istio's default; the retry budget bounds retries)
            {"max_connections": 5, "max_requests": 100, "max_retries": 4294967295}
        ]
    }
    od = c["outlier_detection"]
    assert od["consecutive_gateway_failure"] == 3
    assert od["enforcing_consecutive_gateway_failure"] == 100
    assert od["enforcing_consecutive_5xx"] == 0  # only what the user asked for
    assert od["enforcing_success_rate"] == 0
    assert od["interval"] == "5s" and od["base_ejection_time"] == "60s"


WORKLOADS = """
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: a, namespace: shop, labels: {app: reviews}}
spec: {address: 10.0.0.1, ports: [{name: http, port: 8001}], proxyless: true, locality: {zone: z1}}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: b, namespace: shop, labels: {app: reviews}}
spec:
  {address: 10.0.0.2, ports: [{name: http, port: 8002}], proxyless: true, locality: {zone: z1},
   weight: 2}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: c, namespace: shop, labels: {app: reviews}}
spec:
  {address: 10.0.0.3, ports: [{name: http, port: 8003}], inbound: {port: 15006},
   locality: {zone: z2}}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: d, namespace: shop, labels: {app: reviews}}
spec: {address: 10.0.0.4, ports: [{name: http, port: 8004}], proxyless: true, locality: {zone: z3}}
"""


def test_endpoints_by_locality_with_weights_health_and_sidecar_metadata() -> None:
    leases = [Lease(ResourceKey("Workload", "shop", "d"), 10, expires_at=999.0, healthy=True)]
    push = load_push(SERVICE + WORKLOADS, leases, now=1000.0)
    cla = as_dict(one(node(), push, ENDPOINT_TYPE, CLUSTER))
    assert cla["cluster_name"] == CLUSTER
    zones = [(g["locality"]["zone"], g["load_balancing_weight"]) for g in cla["endpoints"]]
    assert zones == [("z1", 3), ("z2", 1)]  # d's lease expired: gone, z3 with it
    z1, z2 = cla["endpoints"]
    assert [
        (e["endpoint"]["address"]["socket_address"]["port_value"], e["health_status"])
        for e in z1["lb_endpoints"]
    ] == [(8001, "HEALTHY"), (8002, "HEALTHY")]
    (side,) = z2["lb_endpoints"]
    assert side["endpoint"]["address"]["socket_address"] == {
        "address": "10.0.0.3",
        "port_value": 15006,
    }
    assert side["metadata"]["filter_metadata"]["trellis"] == {
        "targetPort": 8003,
        "workload": "c.shop",
        # Its labels for its callers' metrics, in the peer header's format.
        "peer": "workload=c;namespace=shop;app=reviews;version=unknown;cs=reviews;cr=latest",
    }


def test_a_service_without_endpoints_has_an_empty_assignment_not_an_error() -> None:
    g = gen(node(), load_push(SERVICE), ENDPOINT_TYPE, [CLUSTER])
    assert g.errors == {}
    assert as_dict(g.resources[CLUSTER]) == {"cluster_name": CLUSTER}


def test_sidecar_inbound_clusters_are_static_localhost() -> None:
    n = node("sidecar")
    c = as_dict(one(n, load_push(SERVICE), CLUSTER_TYPE, "inbound|8080||"))
    assert c["type"] == "STATIC"
    (group,) = c["load_assignment"]["endpoints"]
    assert group["lb_endpoints"][0]["endpoint"]["address"]["socket_address"] == {
        "address": "127.0.0.1",
        "port_value": 8080,
    }
    assert gen(node("proxyless"), load_push(SERVICE), CLUSTER_TYPE, ["inbound|8080||"]).errors
