"""Every resilience setting reaches real sidecars and is accepted (no NACK): a
DestinationPolicy with a retry budget, all four circuit-breaker limits, outlier detection
(gateway errors, failure percentage), a panic threshold and locality failover; an
HTTPRoute rule opting in to non-idempotent retries; RateLimitPolicies on both sides. The
caller's sidecar holds them as the control plane translated them (its /config_dump shows
what it accepted), the destination's inbound listener carries its limit, and traffic
flows. What the sidecars do with them is the stack's and the pool's (their own tests).
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.dataplane import Sidecar, client_sidecar, run_service
from tests.integration.harness import Mesh, wait_for
from tests.integration.traffic import SERVICE_PORT, service_yaml

pytestmark = pytest.mark.integration

URL = f"http://web:{SERVICE_PORT}"
CLUSTER = f"outbound|{SERVICE_PORT}||web.default.svc.mesh"
FILTER = "envoy.filters.http.local_ratelimit"
POLICIES = """
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: web}
spec:
  service: web
  retryBudget: {percent: 50, minRetriesPerSecond: 3, ttl: 5s}
  connectionPool: {maxConnections: 8, maxPendingRequests: 16, maxRequests: 32, maxRetries: 2}
  outlierDetection:
    consecutiveGatewayErrors: 3
    failurePercentageThreshold: 50
    failurePercentageMinimumHosts: 1
    failurePercentageRequestVolume: 10
    interval: 1s
  loadBalancer: {healthyPanicThreshold: 30, localityLbSetting: {enabled: true}}
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /orders}}]
    backendRefs: [{name: web}]
    retry: {codes: [503], attempts: 2, nonIdempotent: true}
  - backendRefs: [{name: web}]
---
apiVersion: trellis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: web-orders}
spec:
  service: web
  side: outbound
  routes: [{name: web, rule: 0}]
  local: {requests: 1000}
---
apiVersion: trellis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: web-in}
spec: {service: web, local: {requests: 1000}}
"""


def held(sidecar: Sidecar, kind: str) -> dict[str, Any]:
    """What the sidecar accepted of one xDS type; fails on a NACK."""
    dump = sidecar.config_dump()
    section = dump.get(kind) or {}
    assert not section.get("nack"), section.get("nack")
    return dict(section.get("resources") or {})


def test_every_setting_reaches_the_sidecars_and_is_accepted(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("web", {"app": "web"}) + POLICIES)
    member = run_service(mesh, "web", run_args=("--region", "r1", "--zone", "z1"))
    client = client_sidecar(mesh, "client")
    with client.client() as c:
        assert c.get(URL + "/orders").status_code == 200
        assert c.post(URL + "/orders", content=b"x").status_code == 200
    wait_for(lambda: CLUSTER in held(client, "CDS"), 10, "the cluster held")
    cluster = held(client, "CDS")[CLUSTER]
    assert cluster["metadata"]["filter_metadata"]["trellis"]["retryBudget"] == {
        "percent": 50.0,
        "minRetriesPerSecond": 3.0,
        "ttl": 5.0,
    }
    assert cluster["circuit_breakers"]["thresholds"][0] == {
        "max_connections": 8,
        "max_pending_requests": 16,
        "max_requests": 32,
        "max_retries": 2,
    }
    assert cluster["outlier_detection"]["enforcing_failure_percentage"] == 100
    assert cluster["common_lb_config"] == {"healthy_panic_threshold": {"value": 30.0}}
    (rds,) = [r for name, r in held(client, "RDS").items() if name.startswith("web.")]
    orders, rest = rds["virtual_hosts"][0]["routes"]
    assert orders["metadata"]["filter_metadata"]["trellis"] == {"retryNonIdempotent": True}
    assert FILTER in orders["typed_per_filter_config"]
    assert "rate_limited_retry_back_off" in orders["route"]["retry_policy"]
    assert "typed_per_filter_config" not in rest
    listeners = held(client, "LDS")
    (outbound,) = [v for k, v in listeners.items() if k.startswith("web")][:1]
    names = [f["name"] for f in outbound["api_listener"]["api_listener"]["http_filters"]]
    assert names[-2:] == [FILTER, "envoy.filters.http.router"]
    eds = held(client, "EDS")[CLUSTER]
    (group,) = eds["endpoints"]
    assert group["locality"] == {"region": "r1", "zone": "z1"}
    # The destination's inbound listener carries the inbound limit, accepted.
    inbound = next(
        v for k, v in held(member.sidecar, "LDS").items() if k.startswith("trellis/inbound")
    )
    chain = inbound["filter_chains"][0]["filters"][-1]["typed_config"]
    assert FILTER in [f["name"] for f in chain["http_filters"]]
    assert FILTER in chain["route_config"]["virtual_hosts"][0]["typed_per_filter_config"]
