"""The sidecar's decode of resilience settings: what the control plane translates from a
DestinationPolicy arrives in ClusterConfig (retry budget, circuit limits, outlier detection,
panic threshold, locality weights); bad values are NACKed with the field path and reason."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2
from google.protobuf import any_pb2
from tests.control.translate.test_translate_clusters import CLUSTER, SERVICE, policy
from tests.control.translate.translate_support import load_push, node, one

from trellis.control.translate import CLUSTER_TYPE
from trellis.proxy.config.resources import (
    CircuitLimits,
    ConfigError,
    OutlierConfig,
    RetryBudgetConfig,
    decode_assignment,
    decode_cluster,
)


def pack(message: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)  # type: ignore[arg-type]
    return out


def translated(text: str = "") -> cluster_pb2.Cluster:
    c = one(node("sidecar"), load_push(SERVICE + text), CLUSTER_TYPE, CLUSTER)
    assert isinstance(c, cluster_pb2.Cluster)
    return c


def decoded(text: str = "") -> object:
    name, config = decode_cluster(pack(translated(text)))
    assert name == CLUSTER
    return config


def test_default_budget_reaches_the_sidecar() -> None:
    config = decoded()
    assert config.retry_budget == RetryBudgetConfig(0.2, 10.0, 10.0)  # type: ignore[attr-defined]
    assert config.panic_threshold == 50.0  # type: ignore[attr-defined]
    assert config.locality_weighted  # type: ignore[attr-defined]  # WrrLocality


def test_policy_settings_reach_the_sidecar() -> None:
    spec = (
        "retryBudget: {percent: 50, minRetriesPerSecond: 2, ttl: 5s}, "
        "loadBalancer: {healthyPanicThreshold: 25}, "
        "connectionPool: {maxConnections: 2, maxPendingRequests: 3, maxRequests: 4, "
        "maxRetries: 1}, "
        "outlierDetection: {consecutiveGatewayErrors: 2, failurePercentageThreshold: 40, "
        "failurePercentageMinimumHosts: 3, failurePercentageRequestVolume: 10, "
        "interval: 1s, baseEjectionTime: 2s, maxEjectionPercent: 34}"
    )
    config = decoded(policy(spec))
    assert config.retry_budget == RetryBudgetConfig(0.5, 2.0, 5.0)  # type: ignore[attr-defined]
    assert config.panic_threshold == 25.0  # type: ignore[attr-defined]
    assert config.limits == CircuitLimits(2, 3, 4, 1)  # type: ignore[attr-defined]
    assert config.outlier == OutlierConfig(  # type: ignore[attr-defined]
        consecutive_5xx=None,
        consecutive_gateway=2,
        interval=1.0,
        base_ejection=2.0,
        max_ejection_percent=34,
        failure_percentage=40,
        failure_percentage_min_hosts=3,
        failure_percentage_volume=10,
    )


def test_a_cluster_without_budget_metadata_gets_the_default_budget() -> None:
    c = translated()
    c.ClearField("metadata")
    _, config = decode_cluster(pack(c))
    assert config.retry_budget == RetryBudgetConfig()


def _with_budget(**fields: object) -> cluster_pb2.Cluster:
    c = translated()
    budget = c.metadata.filter_metadata["trellis"].fields["retryBudget"].struct_value
    budget.update(fields)
    return c


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"percent": -5.0}, "retryBudget.percent: -5.0 is out of range"),
        ({"percent": "many"}, "retryBudget.percent: must be a number"),
        ({"ttl": 0.1}, "retryBudget.ttl: 0.1 must be between 1 and 60 seconds"),
        ({"ratio": 0.2}, "retryBudget: unknown field(s) ['ratio']"),
    ],
)
def test_bad_budgets_are_nacked_with_the_field(fields: dict[str, object], reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        decode_cluster(pack(_with_budget(**fields)))
    assert str(info.value).startswith(f"{CLUSTER}: metadata.filter_metadata[trellis].")
    assert reason in str(info.value)


def test_bad_panic_threshold_and_outlier_percentages_are_nacked() -> None:
    c = translated()
    c.common_lb_config.healthy_panic_threshold.value = 150.0
    with pytest.raises(ConfigError, match=r"common_lb_config\.healthy_panic_threshold: 150\.0"):
        decode_cluster(pack(c))
    c = translated(policy("outlierDetection: {failurePercentageThreshold: 40}"))
    c.outlier_detection.failure_percentage_threshold.value = 140
    with pytest.raises(ConfigError, match=r"outlier_detection\.failure_percentage_threshold"):
        decode_cluster(pack(c))


def test_failure_percentage_is_off_unless_enforced() -> None:
    c = translated(policy("outlierDetection: {failurePercentageThreshold: 40}"))
    c.outlier_detection.enforcing_failure_percentage.value = 0
    _, config = decode_cluster(pack(c))
    assert config.outlier is not None and config.outlier.failure_percentage is None


def test_eds_priority_and_locality_weight_are_decoded() -> None:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name="c")
    for priority, zone, weight in ((0, "z1", 3), (1, "z2", 7)):
        group = ec.LocalityLbEndpoints(priority=priority)
        group.locality.zone = zone
        group.load_balancing_weight.value = weight
        lb = group.lb_endpoints.add()
        lb.endpoint.address.socket_address.address = "10.0.0.1"
        lb.endpoint.address.socket_address.port_value = 8000 + priority
        cla.endpoints.append(group)
    _, endpoints = decode_assignment(pack(cla))
    assert [(e.port, e.locality, e.priority, e.locality_weight) for e in endpoints] == [
        (8000, "z1", 0, 3),
        (8001, "z2", 1, 7),
    ]
    cla.endpoints[1].priority = 500
    with pytest.raises(ConfigError, match=r"c.endpoints\[1\].priority: 500 is above 128"):
        decode_assignment(pack(cla))


def test_a_listener_with_the_rate_limit_filter_decodes_and_a_listener_wide_bucket_is_nacked() -> (
    None
):
    from envoy.config.listener.v3 import listener_pb2
    from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2
    from envoy.extensions.filters.network.http_connection_manager.v3 import (
        http_connection_manager_pb2 as hcm_pb2,
    )

    from trellis.proxy.config.resources import decode_listener

    text = SERVICE + (
        "---\napiVersion: trellis.dev/v1alpha1\nkind: RateLimitPolicy\n"
        "metadata: {name: rl, namespace: shop}\n"
        "spec: {service: reviews, side: outbound, local: {requests: 20}}\n"
    )
    listener = one(node("sidecar"), load_push(text), "type.googleapis.com/"
                   "envoy.config.listener.v3.Listener", "reviews:9080")  # fmt: skip
    assert isinstance(listener, listener_pb2.Listener)
    _, config = decode_listener(pack(listener))
    assert "envoy.filters.http.local_ratelimit" in config.http_filters
    hcm = hcm_pb2.HttpConnectionManager()
    assert listener.api_listener.api_listener.Unpack(hcm)
    wide = local_rate_limit_pb2.LocalRateLimit(stat_prefix="x")
    wide.token_bucket.max_tokens = 5
    wide.token_bucket.fill_interval.seconds = 1
    hcm.http_filters[1].typed_config.Pack(wide)
    listener.api_listener.api_listener.Pack(hcm)
    with pytest.raises(ConfigError) as info:
        decode_listener(pack(listener))
    assert str(info.value) == (
        "reviews:9080: api_listener.http_filters[1].typed_config.token_bucket: "
        "a listener-wide bucket is not supported: set it per virtual host or route"
    )
