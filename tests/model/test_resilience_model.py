"""Validation of the resilience settings: retry budget, panic threshold, locality failover,
the route's opt-in to non-idempotent retries. Each error names the field path and reason."""

from __future__ import annotations

import pytest

from trellis.model import DestinationPolicy, HTTPRoute, RateLimitPolicy
from trellis.model.errors import InvalidDocuments
from trellis.model.keys import ResourceKey
from trellis.model.loader import load_documents
from trellis.model.references import check_references, key_of


def policy(spec: str) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {{name: p, namespace: shop}}
spec: {{service: reviews, {spec}}}
"""


def errors_of(text: str) -> list[str]:
    with pytest.raises(InvalidDocuments) as info:
        load_documents(text, source="mesh.yaml")
    return [str(p) for p in info.value.problems]


def test_retry_budget_parses_and_defaults() -> None:
    (doc,) = load_documents(policy("retryBudget: {percent: 25}"))
    assert isinstance(doc, DestinationPolicy)
    budget = doc.spec.retry_budget
    assert (budget.percent, budget.min_retries_per_second, budget.ttl) == (25, 10, "10s")
    assert doc.to_dict()["spec"]["retryBudget"] == {  # type: ignore[index]
        "percent": 25,
        "minRetriesPerSecond": 10,
        "ttl": "10s",
    }


@pytest.mark.parametrize(
    ("spec", "where", "reason"),
    [
        ("retryBudget: {percent: -1}", "spec.retryBudget.percent", "greater than or equal to 0"),
        ("retryBudget: {percent: 0.5}", "spec.retryBudget.percent", "integer"),
        ("retryBudget: {ttl: 100ms}", "spec.retryBudget.ttl", "between 1s and 60s"),
        ("retryBudget: {ttl: 2m}", "spec.retryBudget.ttl", "between 1s and 60s"),
        ("retryBudget: {minRetriesPerSecond: -3}", "spec.retryBudget.minRetriesPerSecond", ""),
        ("retryBudget: {ratio: 0.2}", "spec.retryBudget.ratio", "unknown field"),
        (
            "loadBalancer: {healthyPanicThreshold: 101}",
            "spec.loadBalancer.healthyPanicThreshold",
            "less than or equal to 100",
        ),
        (
            "loadBalancer: {localityLbSetting: {enabled: yes-please}}",
            "spec.loadBalancer.localityLbSetting.enabled",
            "",
        ),
        (
            "outlierDetection: {failurePercentageThreshold: 120}",
            "spec.outlierDetection.failurePercentageThreshold",
            "less than or equal to 100",
        ),
        (
            "connectionPool: {maxPendingRequests: 0}",
            "spec.connectionPool.maxPendingRequests",
            "greater than or equal to 1",
        ),
    ],
)
def test_bad_values_name_field_and_reason(spec: str, where: str, reason: str) -> None:
    (err,) = errors_of(policy(spec))
    assert where in err and reason in err, err


def test_locality_failover_is_off_unless_enabled() -> None:
    (doc,) = load_documents(policy("loadBalancer: {localityLbSetting: {enabled: true}}"))
    assert isinstance(doc, DestinationPolicy)
    setting = doc.spec.load_balancer.locality_lb_setting
    assert setting is not None and setting.enabled
    (plain,) = load_documents(policy("loadBalancer: {type: ROUND_ROBIN}"))
    assert isinstance(plain, DestinationPolicy)
    assert plain.spec.load_balancer.locality_lb_setting is None


ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{name: reviews}]
  rules:
  - backendRefs: [{name: reviews}]
    retry: {codes: [503], attempts: 2, nonIdempotent: %s}
"""


def test_route_retry_opts_in_to_non_idempotent_retries() -> None:
    (doc,) = load_documents(ROUTE % "true")
    assert isinstance(doc, HTTPRoute)
    retry = doc.spec.rules[0].retry
    assert retry is not None and retry.non_idempotent
    (err,) = errors_of(ROUTE % '"yes"')
    assert "spec.rules[0].retry.nonIdempotent" in err and "boolean" in err, err


SERVICE = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""


def rate_limit(spec: str) -> str:
    return f"""
---
apiVersion: trellis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: rl, namespace: shop}}
spec: {{service: reviews, {spec}}}
"""


def test_rate_limit_policy_parses_with_defaults() -> None:
    (doc,) = load_documents(rate_limit("local: {requests: 20}"))
    assert isinstance(doc, RateLimitPolicy)
    assert doc.spec.side == "inbound" and doc.spec.local.per == "1s"
    assert doc.spec.local.max_tokens == 20  # burst defaults to requests
    (doc,) = load_documents(rate_limit("local: {requests: 20, burst: 50}"))
    assert isinstance(doc, RateLimitPolicy) and doc.spec.local.max_tokens == 50


@pytest.mark.parametrize(
    ("spec", "where", "reason"),
    [
        ("local: {requests: 0}", "spec.local.requests", "greater than or equal to 1"),
        ("local: {requests: 5, per: 10ms}", "spec.local.per", "between 50ms"),
        ("local: {requests: 5, burst: 0}", "spec.local.burst", "greater than or equal to 1"),
        ("side: sideways, local: {requests: 5}", "spec.side", "'inbound' or 'outbound'"),
        ("routes: [{name: r}], local: {requests: 5}", "spec", "set side: outbound"),
        ("side: outbound, local: {requests: 5}, routes: [{name: r, rule: -1}]", "rule", ""),
        ("side: outbound", "spec.local", "Field required"),
    ],
)
def test_bad_rate_limits_name_field_and_reason(spec: str, where: str, reason: str) -> None:
    (err,) = errors_of(rate_limit(spec))
    assert where in err and reason in err, err


def test_rate_limit_references_are_checked() -> None:
    route = """
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{name: reviews}]
  rules: [{backendRefs: [{name: reviews}]}]
"""
    docs = load_documents(
        SERVICE
        + route
        + rate_limit(
            "side: outbound, local: {requests: 5}, "
            "routes: [{name: r, rule: 0}, {name: r, rule: 3}, {name: nosuch}]"
        )
    )
    world = {key_of(d): d for d in docs}
    (problem,) = check_references(world, [ResourceKey("RateLimitPolicy", "shop", "rl")])
    text = str(problem)
    assert "spec.routes[1].rule: HTTPRoute shop/r has 1 rule(s)" in text
    assert "spec.routes[2].name: unknown HTTPRoute shop/nosuch" in text
    assert "spec.routes[0]" not in text
    lonely = load_documents(rate_limit("local: {requests: 5}"))
    (problem,) = check_references(
        {key_of(d): d for d in lonely}, [ResourceKey("RateLimitPolicy", "shop", "rl")]
    )
    assert "spec.service: unknown service shop/reviews" in str(problem)
