"""Safe retries and Retry-After, from the HTTPRoute to the compiled RetryPolicy.

An HTTPRoute retry's `nonIdempotent: true` (Trellis extension) reaches sidecars as the
route's `metadata.filter_metadata.trellis.retryNonIdempotent` and becomes
`RetryPolicy.non_idempotent`; proxyless routes never carry it. Every sidecar retry policy
has `rate_limited_retry_back_off` (Retry-After in seconds, up to 10 s), compiled into
`RetryPolicy.retry_after_max`. Bad values are config errors naming the field.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.control.translate.test_translate_routes import GRPC_RDS, RDS, SERVICES, http_route
from tests.control.translate.translate_support import load_push, node, one, routes_of
from tests.routing.routing_support import forward, only, route_error

from trellis.control.translate import ROUTE_TYPE
from trellis.routing import RouteTable

RULE = """\
  - backendRefs: [{name: v1, port: 9080}]
    retry: {codes: [503], attempts: 2%s}
"""


def sidecar_table(extra: str = "") -> RouteTable:
    push = load_push(SERVICES + http_route(RULE % extra))
    return RouteTable.compile(one(node("sidecar"), push, ROUTE_TYPE, RDS))


def test_retries_are_safe_by_default_and_honour_retry_after_up_to_10s() -> None:
    (route,) = sidecar_table().virtual_hosts[0].routes
    assert route.retry is not None
    assert route.retry.non_idempotent is False
    assert route.retry.retry_after_max == 10.0
    assert route.retry.num_retries == 2


def test_the_route_opts_in_to_non_idempotent_retries() -> None:
    (route,) = sidecar_table(", nonIdempotent: true").virtual_hosts[0].routes
    assert route.retry is not None and route.retry.non_idempotent is True
    assert route.retry.retry_after_max == 10.0  # the copy keeps the rest
    assert route.retry.retriable_status_codes == frozenset({503})


def test_sidecar_route_carries_the_opt_in_and_proxyless_never_does() -> None:
    push = load_push(SERVICES + http_route(RULE % ", nonIdempotent: true"))
    (sidecar,) = routes_of(node("sidecar"), push, RDS)
    assert sidecar["metadata"] == {"filter_metadata": {"trellis": {"retryNonIdempotent": True}}}
    back_off = sidecar["route"]["retry_policy"]["rate_limited_retry_back_off"]
    assert back_off == {
        "reset_headers": [{"name": "retry-after"}],  # format SECONDS (0) is the default
        "max_interval": "10s",
    }
    (proxyless,) = routes_of(node("proxyless"), push, RDS)
    assert "metadata" not in proxyless
    assert "rate_limited_retry_back_off" not in proxyless["route"].get("retry_policy", {})
    # A route with no retry carries neither.
    push = load_push(SERVICES + http_route("  - backendRefs: [{name: v1, port: 9080}]\n"))
    (plain,) = routes_of(node("sidecar"), push, RDS)
    assert "metadata" not in plain and "retry_policy" not in plain["route"]
    assert GRPC_RDS  # (the gRPC port's routes are GRPCRoutes': no HTTP opt-in there)


def _retry(**fields: Any) -> dict[str, Any]:
    return {"retry_on": "5xx", **fields}


def test_retry_after_is_ignored_unless_the_reset_header_is_retry_after_seconds() -> None:
    limited = {"reset_headers": [{"name": "x-ratelimit-reset", "format": "UNIX_TIMESTAMP"}]}
    route = only(forward(retry_policy=_retry(rate_limited_retry_back_off=limited)))
    assert route.retry is not None and route.retry.retry_after_max == 0.0
    seconds = {"reset_headers": [{"name": "Retry-After"}]}
    route = only(forward(retry_policy=_retry(rate_limited_retry_back_off=seconds)))
    assert route.retry is not None and route.retry.retry_after_max == 300.0  # Envoy's default
    assert only(forward(retry_policy=_retry())).retry.retry_after_max == 0.0  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("back_off", "where", "reason"),
    [
        ({"max_interval": "1s"}, "rate_limited_retry_back_off.reset_headers", "at least one"),
        (
            {"reset_headers": [{"name": "retry-after"}], "max_interval": "0s"},
            "rate_limited_retry_back_off.max_interval",
            "must be positive",
        ),
    ],
)
def test_bad_rate_limited_back_off(back_off: dict[str, Any], where: str, reason: str) -> None:
    error = route_error(forward(retry_policy=_retry(rate_limited_retry_back_off=back_off)))
    assert where in str(error) and reason in str(error), str(error)


def test_opt_in_metadata_must_be_a_boolean() -> None:
    route = forward(retry_policy=_retry())
    route["metadata"] = {"filter_metadata": {"trellis": {"retryNonIdempotent": "yes"}}}
    error = route_error(route)
    assert "metadata.filter_metadata[trellis].retryNonIdempotent" in str(error)
    assert "must be a boolean" in str(error)
    # Metadata of other namespaces is no concern of the proxy.
    route["metadata"] = {"filter_metadata": {"other": {"x": 1}}}
    compiled = only(route)
    assert compiled.retry is not None and not compiled.retry.non_idempotent
