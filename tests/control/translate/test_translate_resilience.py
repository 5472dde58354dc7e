"""Resilience settings of a DestinationPolicy in the Cluster: retry budget (trellis metadata),
circuit breakers, outlier detection (failure percentage, gateway errors), panic threshold;
and in EDS: locality weights and failover priorities from the caller's locality."""

from __future__ import annotations

from typing import Any

from tests.control.translate.test_translate_clusters import CLUSTER, SERVICE, cluster, policy
from tests.control.translate.translate_support import as_dict, gen, load_push, node, one

from trellis.control.translate import ENDPOINT_TYPE
from trellis.model.policies import DestinationPolicySpec


def budget(c: dict[str, Any]) -> Any:
    return c["metadata"]["filter_metadata"]["trellis"]["retryBudget"]


def test_every_outbound_cluster_carries_linkerds_default_budget_without_a_policy() -> None:
    c = cluster()
    assert c["name"] == CLUSTER
    assert budget(c) == {"percent": 20.0, "minRetriesPerSecond": 10.0, "ttl": 10.0}


def test_a_policy_sets_the_budget() -> None:
    c = cluster(policy("retryBudget: {percent: 50, minRetriesPerSecond: 3, ttl: 1m}"))
    assert budget(c) == {"percent": 50.0, "minRetriesPerSecond": 3.0, "ttl": 60.0}
    # A policy that says nothing of the budget keeps the default one.
    assert budget(cluster(policy("loadBalancer: {type: ROUND_ROBIN}")))["percent"] == 20.0


def test_all_four_connection_pool_limits_reach_the_circuit_breakers() -> None:
    spec = (
        "connectionPool: {maxConnections: 5, maxPendingRequests: 7, maxRequests: 100, "
        "maxRetries: 0}"
    )
    assert cluster(policy(spec))["circuit_breakers"] == {
        "thresholds": [
            {
                "max_connections": 5,
                "max_pending_requests": 7,
                "max_requests": 100,
                "max_retries": 0,
            }
        ]
    }


def test_failure_percentage_and_gateway_errors_are_enforced() -> None:
    spec = (
        "outlierDetection: {consecutive5xxErrors: 4, consecutiveGatewayErrors: 2, "
        "failurePercentageThreshold: 40, failurePercentageMinimumHosts: 3, "
        "failurePercentageRequestVolume: 10, maxEjectionPercent: 34}"
    )
    od = cluster(policy(spec))["outlier_detection"]
    assert od["consecutive_5xx"] == 4 and od["enforcing_consecutive_5xx"] == 100
    assert od["consecutive_gateway_failure"] == 2
    assert od["enforcing_consecutive_gateway_failure"] == 100
    assert od["failure_percentage_threshold"] == 40
    assert od["enforcing_failure_percentage"] == 100
    assert od["failure_percentage_minimum_hosts"] == 3
    assert od["failure_percentage_request_volume"] == 10
    assert od["max_ejection_percent"] == 34
    assert od["enforcing_success_rate"] == 0


def test_panic_threshold_in_common_lb_config() -> None:
    assert "common_lb_config" not in cluster()  # Envoy's default, 50%
    c = cluster(policy("loadBalancer: {healthyPanicThreshold: 0}"))
    assert c["common_lb_config"] == {"healthy_panic_threshold": {}}  # set, 0: panic off
    c = cluster(policy("loadBalancer: {healthyPanicThreshold: 30}"))
    assert c["common_lb_config"] == {"healthy_panic_threshold": {"value": 30.0}}


def test_model_defaults_are_linkerds_and_envoys() -> None:
    spec = DestinationPolicySpec(service="reviews")
    assert spec.retry_budget.percent == 20
    assert spec.retry_budget.min_retries_per_second == 10
    assert spec.retry_budget.ttl == "10s"
    assert spec.load_balancer.healthy_panic_threshold == 50


LOCALITY_WORKLOADS = """
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: client, namespace: shop, labels: {app: client}}
spec: {address: 10.0.9.1, proxyless: true, locality: {region: r1, zone: z1}}
"""
for _name, _region, _zone, _i in (
    ("near", "r1", "z1", 1),
    ("same-region", "r1", "z2", 2),
    ("far", "r2", "z9", 3),
):
    LOCALITY_WORKLOADS += f"""
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: {_name}, namespace: shop, labels: {{app: reviews}}}}
spec:
  address: 10.0.0.{_i}
  ports: [{{name: http, port: 8000}}]
  proxyless: true
  locality: {{region: {_region}, zone: {_zone}}}
  weight: {_i}
"""
FAILOVER = policy("loadBalancer: {localityLbSetting: {enabled: true}}")


def priorities(text: str, workload: str = "client") -> list[tuple[str, int, int]]:
    push = load_push(SERVICE + LOCALITY_WORKLOADS + text)
    cla = as_dict(one(node(workload=workload), push, ENDPOINT_TYPE, CLUSTER))
    return [
        (g["locality"]["zone"], g.get("priority", 0), g["load_balancing_weight"])
        for g in cla["endpoints"]
    ]


def test_without_failover_every_locality_is_priority_0_weighted() -> None:
    assert priorities("") == [("z1", 0, 1), ("z2", 0, 2), ("z9", 0, 3)]


def test_failover_prefers_the_callers_zone_then_its_region() -> None:
    assert priorities(FAILOVER) == [("z1", 0, 1), ("z2", 1, 2), ("z9", 2, 3)]


def test_priorities_are_dense_and_a_caller_without_locality_prefers_nothing() -> None:
    # A caller in r2/z5: nothing in its zone, z9 in its region, the rest elsewhere.
    other = LOCALITY_WORKLOADS.replace("name: client", "name: client-2").replace(
        "{region: r1, zone: z1}}\n", "{region: r2, zone: z5}}\n", 1
    )
    push = load_push(SERVICE + other + FAILOVER)
    cla = as_dict(one(node(workload="client-2"), push, ENDPOINT_TYPE, CLUSTER))
    got = [(g["locality"]["zone"], g.get("priority", 0)) for g in cla["endpoints"]]
    assert got == [("z1", 1), ("z2", 1), ("z9", 0)]
    # Not registered (yet): no preference.
    assert priorities(FAILOVER, workload="unregistered") == [
        ("z1", 0, 1),
        ("z2", 0, 2),
        ("z9", 0, 3),
    ]


def test_eds_is_shared_per_caller_locality() -> None:
    push = load_push(SERVICE + LOCALITY_WORKLOADS + FAILOVER)
    a = gen(node(workload="client"), push, ENDPOINT_TYPE, [CLUSTER]).packed[CLUSTER]
    b = gen(node(workload="unregistered"), push, ENDPOINT_TYPE, [CLUSTER]).packed[CLUSTER]
    c = gen(node(workload="unknown-2"), push, ENDPOINT_TYPE, [CLUSTER]).packed[CLUSTER]
    assert a is not b and b is c  # same locality (none): one generation, shared
