"""Resilience settings of a DestinationPolicy in the Cluster: retry budget (trellis metadata),
circuit breakers, outlier detection (failure percentage, gateway errors), panic threshold."""

from __future__ import annotations

from typing import Any

from tests.control.translate.test_translate_clusters import CLUSTER, cluster, policy

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
