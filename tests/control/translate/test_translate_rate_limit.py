"""RateLimitPolicy → Envoy's local rate limit, for sidecars only: on the outbound virtual
host (a limit on the whole service), on the routes of a rule (a limit per route), or on
the inbound virtual host of the service's members (side inbound, the default); and the
filter in the HCMs that need it. Compiled back by the sidecar's route table: a vhost-level
limit is ONE TokenBucket shared by every route under it."""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from tests.control.translate.test_translate_routes import RDS, SERVICES
from tests.control.translate.translate_support import (
    as_dict,
    hcm_of,
    inline_route_config,
    load_push,
    node,
    one,
    routes_of,
)

from trellis.control.push.context import PushContext
from trellis.control.translate import LISTENER_TYPE, ROUTE_TYPE
from trellis.routing import RouteTable
from trellis.routing.ratelimit import TokenBucket

FILTER = "envoy.filters.http.local_ratelimit"
LRL_TYPE = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
ROUTE = """
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: r, namespace: shop}
spec:
  parentRefs: [{name: reviews, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /a}}, {path: {type: PathPrefix, value: /b}}]
    backendRefs: [{name: v1, port: 9080}]
  - backendRefs: [{name: v1, port: 9080}]
"""


def limit(spec: str, name: str = "rl") -> str:
    return f"""
---
apiVersion: trellis.dev/v1alpha1
kind: RateLimitPolicy
metadata: {{name: {name}, namespace: shop}}
spec: {{service: reviews, {spec}}}
"""


def push_of(text: str) -> PushContext:
    return load_push(SERVICES + ROUTE + text)


def vhost(push: PushContext, kind: str = "sidecar") -> dict[str, Any]:
    rc = as_dict(one(node(kind), push, ROUTE_TYPE, RDS))
    return dict(rc["virtual_hosts"][0])


def test_an_outbound_service_limit_sits_on_the_virtual_host() -> None:
    push = push_of(limit("side: outbound, local: {requests: 20, per: 1s}"))
    config = vhost(push)["typed_per_filter_config"][FILTER]
    assert config == {
        "@type": LRL_TYPE,
        "stat_prefix": "http_local_rate_limiter",
        "token_bucket": {"max_tokens": 20, "tokens_per_fill": 20, "fill_interval": "1s"},
        "filter_enabled": {
            "default_value": {"numerator": 100},
            "runtime_key": "local_rate_limit_enabled",
        },
        "filter_enforced": {
            "default_value": {"numerator": 100},
            "runtime_key": "local_rate_limit_enforced",
        },
        "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
    }
    # The sidecar's table: one bucket for every route of the service.
    table = RouteTable.compile(one(node("sidecar"), push, ROUTE_TYPE, RDS))
    buckets = {id(r.rate_limit) for r in table.virtual_hosts[0].routes}
    (route, *others) = table.virtual_hosts[0].routes
    assert len(others) == 2 and len(buckets) == 1
    assert isinstance(route.rate_limit, TokenBucket)
    assert (route.rate_limit.max_tokens, route.rate_limit.tokens_per_fill) == (20, 20)
    # The outbound listeners of the service carry the filter, before the router.
    listener = one(node("sidecar"), push, LISTENER_TYPE, "reviews.shop:9080")
    names = [f.name for f in hcm_of(listener).http_filters]
    assert names == ["envoy.filters.http.fault", FILTER, "envoy.filters.http.router"]


def test_proxyless_clients_get_no_rate_limit() -> None:
    push = push_of(limit("side: outbound, local: {requests: 20}"))
    assert "typed_per_filter_config" not in vhost(push, "proxyless")
    listener = one(node("proxyless"), push, LISTENER_TYPE, "reviews.shop:9080")
    assert FILTER not in [f.name for f in hcm_of(listener).http_filters]


def test_a_rule_limit_sits_on_each_route_of_the_rule() -> None:
    push = push_of(
        limit("side: outbound, routes: [{name: r, rule: 0}], local: {requests: 5, burst: 8}")
    )
    routes = routes_of(node("sidecar"), push, RDS)
    limited = [r["name"] for r in routes if FILTER in r.get("typed_per_filter_config", {})]
    assert limited == ["shop/r/rule-0/match-0", "shop/r/rule-0/match-1"]
    bucket = routes[0]["typed_per_filter_config"][FILTER]["token_bucket"]
    assert bucket == {"max_tokens": 8, "tokens_per_fill": 5, "fill_interval": "1s"}
    assert "typed_per_filter_config" not in vhost(push)
    table = RouteTable.compile(one(node("sidecar"), push, ROUTE_TYPE, RDS))
    a, b, rest = table.virtual_hosts[0].routes
    assert a.rate_limit is not None and b.rate_limit is not None
    assert a.rate_limit is not b.rate_limit  # a route's own bucket (Envoy's per-route model)
    assert rest.rate_limit is None
    # Every rule of the route when no rule is named; an inbound policy adds nothing here.
    push = push_of(limit("side: outbound, routes: [{name: r}], local: {requests: 5}"))
    assert all(
        FILTER in r["typed_per_filter_config"] for r in routes_of(node("sidecar"), push, RDS)
    )
    assert "typed_per_filter_config" not in vhost(push_of(limit("local: {requests: 5}")))


def test_the_oldest_service_policy_wins() -> None:
    first = limit("side: outbound, local: {requests: 7}", name="a")
    second = limit("side: outbound, local: {requests: 9}", name="b")
    push = push_of(first + second)
    bucket = vhost(push)["typed_per_filter_config"][FILTER]["token_bucket"]
    assert bucket["max_tokens"] == 7  # same revision: by name


WORKLOAD = """
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: reviews-a, namespace: shop, labels: {app: reviews, version: v1}}
spec: {address: 10.0.0.1, ports: [{name: http, port: 9080}], inbound: {port: 15006}}
"""
INBOUND = "trellis/inbound?address=10.0.0.1:15006"


def inbound_filters(listener: Any) -> list[str]:
    hcm = hcm_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(hcm)
    return [f.name for f in hcm.http_filters]


def test_an_inbound_limit_sits_on_the_members_inbound_virtual_host() -> None:
    push = push_of(WORKLOAD + limit("local: {requests: 20, per: 500ms}"))
    member = node("sidecar", workload="reviews-a")
    listener = one(member, push, LISTENER_TYPE, INBOUND)
    assert inbound_filters(listener) == [FILTER, "envoy.filters.http.router"]
    rc = as_dict(inline_route_config(listener))
    (inbound,) = rc["virtual_hosts"]
    bucket = inbound["typed_per_filter_config"][FILTER]["token_bucket"]
    assert bucket == {"max_tokens": 20, "tokens_per_fill": 20, "fill_interval": "0.500s"}
    # Without a policy the inbound listener is as before: no filter, no config.
    plain = one(member, push_of(WORKLOAD), LISTENER_TYPE, INBOUND)
    assert inbound_filters(plain) == ["envoy.filters.http.router"]
    # An outbound policy does not limit the inbound side.
    outbound = push_of(WORKLOAD + limit("side: outbound, local: {requests: 20}"))
    listener = one(member, outbound, LISTENER_TYPE, INBOUND)
    assert FILTER not in inbound_filters(listener)
