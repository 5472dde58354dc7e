"""Simulation: mesh YAML → the real translator → RouteTable → "where does this call go?".

Every RouteConfiguration here comes from `trellis.control.translate` for a
sidecar (or proxyless) node, is compiled with the proxy's own RouteTable and
then asked about requests, as Istio's simulation tests replay calls against
generated config.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import pytest
from tests.control.translate.translate_support import (
    FIXTURE,
    gen,
    inline_route_config,
    load_push,
    node,
    one,
)
from tests.routing.routing_support import select

from trellis.control.push.context import PushContext
from trellis.control.translate import LISTENER_TYPE, ROUTE_TYPE
from trellis.model.errors import InvalidDocuments
from trellis.routing import (
    DirectResponseAction,
    ForwardAction,
    NonForwardingAction,
    RedirectAction,
    Route,
    RouteTable,
)

# -- helpers ------------------------------------------------------------------------------


def cluster(name: str, port: int = 9080, namespace: str = "shop") -> str:
    return f"outbound|{port}||{name}.{namespace}.svc.mesh"


V1, V2, REVIEWS = cluster("reviews-v1"), cluster("reviews-v2"), cluster("reviews")
RATINGS = cluster("ratings", 50051)


def route_table(
    push: PushContext,
    service: str = "reviews",
    port: int = 9080,
    namespace: str = "shop",
    *,
    kind: str = "sidecar",
    client_namespace: str = "shop",
) -> RouteTable:
    n = node(kind, namespace=client_namespace)
    return RouteTable.compile(one(n, push, ROUTE_TYPE, f"{service}.{namespace}.svc.mesh:{port}"))


def call(
    table: RouteTable,
    path: str = "/",
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    authority: str = "reviews:9080",
) -> Route | None:
    """What the sidecar selects for the call (its path normalized first, as the proxy does)."""
    return select(table, path, method, authority, headers)


def goes_to(table: RouteTable, path: str = "/", r: float = 0.0, **kwargs: object) -> str | None:
    """The cluster a call is sent to (draw `r` for weighted splits); None: 404."""
    route = call(table, path, **kwargs)  # type: ignore[arg-type]
    if route is None:
        return None
    assert isinstance(route.action, ForwardAction), route
    return route.action.pick(r)


def rule(route: Route | None) -> str:
    """The rule name of a translated route (`ns/route/rule/match-N`)."""
    assert route is not None
    return route.name.split("/")[2]


@pytest.fixture(scope="module")
def mesh() -> PushContext:
    return load_push(FIXTURE.read_text())


# -- the fixture mesh ---------------------------------------------------------------------


ALL_SERVICE_PORTS = [
    ("reviews", "shop", 9080),
    ("reviews-v1", "shop", 9080),
    ("reviews-v2", "shop", 9080),
    ("ratings", "shop", 50051),
    ("frontend", "web", 80),
    ("frontend", "web", 9000),
]
INBOUND = {
    "sidecar": [
        "trellis/inbound?address=10.0.1.5:15006",
        "trellis/inbound?address=10.0.0.12:15006",
    ],
    "proxyless": ["trellis/inbound?address=0.0.0.0:50051"],
}


@pytest.mark.parametrize("kind", ["sidecar", "proxyless"])
@pytest.mark.parametrize("client_namespace", ["shop", "web"])
def test_every_generated_route_configuration_compiles(
    mesh: PushContext, kind: str, client_namespace: str
) -> None:
    n = node(kind, namespace=client_namespace, workload="frontend-a")
    names = [f"{s}.{ns}.svc.mesh:{p}" for s, ns, p in ALL_SERVICE_PORTS]
    generated = gen(n, mesh, ROUTE_TYPE, names)
    assert not generated.errors
    assert sorted(generated.resources) == sorted(names)
    for rc in generated.resources.values():
        table = RouteTable.compile(rc)
        assert table.clusters()
    listeners = gen(n, mesh, LISTENER_TYPE, INBOUND[kind])
    assert not listeners.errors
    for listener in listeners.resources.values():
        RouteTable.compile(inline_route_config(listener))


def test_inbound_routes(mesh: PushContext) -> None:
    sidecar = node("sidecar", namespace="web", workload="frontend-a")
    (listener,) = gen(sidecar, mesh, LISTENER_TYPE, INBOUND["sidecar"][:1]).resources.values()
    table = RouteTable.compile(inline_route_config(listener))
    assert goes_to(table, authority="frontend", headers={"x-trellis-target-port": "9000"}) == (
        "inbound|9000||"
    )
    assert goes_to(table, authority="10.0.1.5:15006") == "inbound|8080||"
    proxyless = node("proxyless", workload="ratings-a")
    (listener,) = gen(proxyless, mesh, LISTENER_TYPE, INBOUND["proxyless"]).resources.values()
    route = call(RouteTable.compile(inline_route_config(listener)), "/ratings.Ratings/Get")
    assert route is not None and isinstance(route.action, NonForwardingAction)


def test_every_spelling_of_the_service_finds_its_routes(mesh: PushContext) -> None:
    table = route_table(mesh)
    for authority in (
        "reviews",
        "reviews:9080",
        "reviews.shop",
        "REVIEWS.shop:9080",
        "reviews.shop.svc.mesh",
        "reviews.shop.svc.mesh:9080",
    ):
        assert call(table, authority=authority) is not None, authority
    assert call(table, authority="reviews:9081") is None
    assert call(table, authority="ratings:9080") is None
    # From another namespace, the short name is not one of the domains.
    web = route_table(mesh, client_namespace="web")
    assert call(web, authority="reviews") is None
    assert call(web, authority="reviews.shop:9080") is not None


def test_a_call_with_the_canary_header_goes_to_v2(mesh: PushContext) -> None:
    table = route_table(mesh)
    for r in (0.0, 0.5, 0.99):
        assert goes_to(table, headers={"x-canary": "1"}, r=r) == V2
    canary = call(table, headers={"x-canary": "1"})
    assert canary is not None
    assert canary.timeout == 30.0  # MeshConfig default
    assert canary.retry is None
    assert goes_to(table, headers={"x-canary": "2"}, r=0.0) == V1  # not the canary value


def test_debug_path_has_the_fault_and_wins_over_the_canary_header(mesh: PushContext) -> None:
    table = route_table(mesh)
    # Gateway API: the longer path match (/debug) beats a header match on `/`.
    debug = call(table, "/debug/x", headers={"x-canary": "1"})
    assert rule(debug) == "rule-1"
    assert goes_to(table, "/debug") == V1
    assert goes_to(table, "/debugger") == V1  # not /debug: the 80/20 split, r=0 → v1
    assert rule(call(table, "/debugger")) == "rule-2"
    assert debug is not None and debug.fault is not None
    f = debug.fault
    assert sum(f.abort_for(i / 1000) == 503 for i in range(1000)) == 500
    assert sum(f.delay_for(i / 1000) == pytest.approx(0.1) for i in range(1000)) == 100


def test_the_default_rule_splits_80_20(mesh: PushContext) -> None:
    table = route_table(mesh)
    n = 10_000
    split = Counter(goes_to(table, "/products", r=i / n) for i in range(n))
    assert split == {V1: 8000, V2: 2000}  # reviews (weight 0) never
    route = call(table, "/products")
    assert route is not None and isinstance(route.action, ForwardAction)
    assert REVIEWS not in route.action.cluster_names


def test_the_default_rule_policies(mesh: PushContext) -> None:
    route = call(route_table(mesh), "/products?v=2")
    assert route is not None
    assert route.name == "shop/reviews/rule-2/match-0"  # the query match comes first
    assert route.timeout == 5.0
    retry = route.retry
    assert retry is not None
    assert retry.retry_on == {"connect-failure", "reset", "retriable-status-codes"}
    assert retry.retriable_status_codes == {500, 503}
    assert retry.num_retries == 7
    assert retry.per_try_timeout == 1.0  # backendRequest
    assert retry.backoff_base == pytest.approx(0.05)
    assert retry.backoff_max == pytest.approx(0.5)
    assert retry.should_retry_status(503) and retry.should_retry_status(500)
    assert not retry.should_retry_status(502)
    assert retry.should_retry_reset(connect_failure=True)
    assert retry.should_retry_per_try_timeout()
    headers = route.apply_request_headers([("X-Debug", "1"), ("x-mesh", "old"), ("accept", "*/*")])
    assert headers == [("accept", "*/*"), ("x-mesh", "trellis")]


def test_consumer_route_applies_to_clients_in_its_namespace(mesh: PushContext) -> None:
    web = route_table(mesh, client_namespace="web")
    for path, headers in (("/", {"x-canary": "1"}), ("/debug", {}), ("/x?v=2", {})):
        assert goes_to(web, path, headers=headers, authority="reviews.shop", r=0.9) == V1
    route = call(web, authority="reviews.shop")
    assert route is not None and route.fault is None and route.timeout == 30.0


def test_grpc_route_methods_retries_and_ring_hash(mesh: PushContext) -> None:
    table = route_table(mesh, "ratings", 50051)
    grpc = {"content-type": "application/grpc"}
    get = call(table, "/ratings.Ratings/Get", "POST", grpc, authority="ratings:50051")
    assert rule(get) == "rule-0"
    assert get is not None and get.timeout == 2.0
    assert get.retry is not None
    assert get.retry.retry_on == {"connect-failure", "reset", "resource-exhausted", "unavailable"}
    assert get.retry.num_retries == 3
    assert get.retry.should_retry_grpc(14) and get.retry.should_retry_grpc(8)
    assert not get.retry.should_retry_grpc(13)
    (policy,) = get.hash_policies
    assert (policy.kind, policy.name) == ("header", "x-user")
    assert policy.key({"x-user": "alice"}) == "alice"
    assert rule(call(table, "/ratings.Ratings/List", "POST", grpc, "ratings:50051")) == "rule-1"
    assert call(table, "/other.Service/Get", "POST", grpc, "ratings:50051") is None
    assert call(table, "/ratings.Ratings", "POST", grpc, "ratings:50051") is None


def test_proxyless_flavour_of_the_same_routes(mesh: PushContext) -> None:
    ratings = route_table(mesh, "ratings", 50051, kind="proxyless")
    get = call(ratings, "/ratings.Ratings/Get", "POST", authority="ratings:50051")
    assert get is not None
    assert get.timeout is None and get.max_stream_duration == 2.0  # gRFC A31
    assert get.retry is not None and get.retry.retry_on == {"resource-exhausted", "unavailable"}
    reviews = route_table(mesh, kind="proxyless")
    names = [r.name for r in reviews.virtual_hosts[0].routes]
    assert "shop/reviews/rule-2/match-0" not in names  # the query match is dropped (A28)
    route = call(reviews, "/x?v=2")
    assert route is not None and route.name == "shop/reviews/rule-2/match-1"
    assert route.retry is not None and route.retry.retry_on == {"unavailable"}
    assert route.mirrors == ()


# -- Gateway API semantics through the translator -----------------------------------------

SERVICES = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
"""
VERSIONS = ["exact", "regex", "api", "api-long", "method", "one-header", "two-headers", "query"]
VERSIONS += ["root", "v1", "v2", "shadow", "a", "b"]
for _name in VERSIONS:
    SERVICES += f"""---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: {_name}, namespace: shop}}
spec:
  selector: {{app: reviews, version: {_name}}}
  ports: [{{name: http, port: 9080}}]
"""


def routes(rules: str, **kwargs: object) -> RouteTable:
    text = (
        SERVICES
        + f"""---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: r, namespace: shop}}
spec:
  parentRefs: [{{name: reviews, port: 9080}}]
  rules:
{rules}"""
    )
    return route_table(load_push(text), **kwargs)  # type: ignore[arg-type]


def to(name: str) -> str:
    return cluster(name)


PRECEDENCE = """
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: root}]
    - matches: [{path: {type: PathPrefix, value: /api}}]
      backendRefs: [{name: api}]
    - matches: [{path: {type: PathPrefix, value: /api/v1}}]
      backendRefs: [{name: api-long}]
    - matches: [{path: {type: RegularExpression, value: "/api/[0-9]+"}}]
      backendRefs: [{name: regex}]
    - matches: [{path: {type: Exact, value: /api}}]
      backendRefs: [{name: exact}]
    - matches: [{path: {type: PathPrefix, value: /api}, method: GET}]
      backendRefs: [{name: method}]
    - matches:
        - {path: {type: PathPrefix, value: /api}, method: GET, headers: [{name: a, value: '1'}]}
      backendRefs: [{name: one-header}]
    - matches:
        - path: {type: PathPrefix, value: /api}
          method: GET
          headers: [{name: a, value: '1'}, {name: b, value: '2'}]
      backendRefs: [{name: two-headers}]
    - matches:
        - path: {type: PathPrefix, value: /api}
          method: GET
          headers: [{name: a, value: '1'}, {name: b, value: '2'}]
          queryParams: [{name: q, value: x}]
      backendRefs: [{name: query}]
"""


@pytest.mark.parametrize(
    ("method", "path", "headers", "expected"),
    [
        ("GET", "/api", {"a": "1", "b": "2"}, "exact"),  # exact beats everything
        ("GET", "/api/42", {"a": "1"}, "regex"),  # regex beats any prefix
        ("GET", "/api/v1/x", {"a": "1", "b": "2"}, "api-long"),  # longest prefix next
        ("GET", "/api/x?q=x", {"a": "1", "b": "2"}, "query"),
        ("GET", "/api/x?q=y", {"a": "1", "b": "2"}, "two-headers"),
        ("GET", "/api/x", {"a": "1"}, "one-header"),
        ("GET", "/api/x", {"a": "2"}, "method"),
        ("POST", "/api/x", {"a": "1", "b": "2"}, "api"),
        ("POST", "/apix", {}, "root"),  # PathPrefix /api does not match /apix
        ("GET", "/", {}, "root"),
    ],
)
def test_gateway_api_precedence(
    method: str, path: str, headers: dict[str, str], expected: str
) -> None:
    assert goes_to(routes(PRECEDENCE), path, method=method, headers=headers) == to(expected)


@pytest.mark.parametrize("prefix", ["/foo", "/foo/"])
@pytest.mark.parametrize(
    ("path", "matched"),
    [
        ("/foo", True),
        ("/foo/", True),
        ("/foo/x/y", True),
        ("/foo?x=1", True),
        ("/foobar", False),
        ("/fo", False),
        ("/FOO", False),
    ],
)
def test_path_prefix_matches_whole_segments(prefix: str, path: str, matched: bool) -> None:
    table = routes(f"    - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n")
    assert (call(table, path) is not None) is matched


def test_exact_path_ignores_the_query() -> None:
    table = routes("    - matches: [{path: {type: Exact, value: /x}}]\n")
    assert call(table, "/x?a=1") is not None
    assert call(table, "/x/") is None


def test_method_and_query_matches() -> None:
    table = routes(
        """
    - matches: [{method: POST, queryParams: [{name: version, value: '2'}]}]
      backendRefs: [{name: v2}]
    - matches:
        - queryParams: [{name: id, type: RegularExpression, value: "[0-9]+"}]
      backendRefs: [{name: a}]
    - matches: [{method: GET}]
      backendRefs: [{name: v1}]
"""
    )
    assert goes_to(table, "/?version=2", method="POST") == to("v2")
    assert goes_to(table, "/?version=%32", method="POST") == to("v2")  # decoded
    assert goes_to(table, "/?version=3", method="POST") is None  # attached: no catch-all
    assert goes_to(table, "/?version=2", method="GET") == to("v1")
    assert goes_to(table, "/?id=123", method="PUT") == to("a")
    assert goes_to(table, "/?id=12x", method="PUT") is None
    assert goes_to(table, "/", method="DELETE") is None


def test_header_matches_exact_and_regex() -> None:
    table = routes(
        """
    - matches: [{headers: [{name: X-Env, type: RegularExpression, value: "stag(e|ing)"}]}]
      backendRefs: [{name: a}]
    - matches: [{headers: [{name: x-user, value: Alice}]}]
      backendRefs: [{name: b}]
"""
    )
    assert goes_to(table, headers={"x-env": "staging"}) == to("a")
    assert goes_to(table, headers={"x-env": "prestaging"}) is None  # full match
    assert goes_to(table, headers={"x-user": "Alice"}) == to("b")
    assert goes_to(table, headers={"x-user": "alice"}) is None  # values are case-sensitive


def test_weighted_split_80_20() -> None:
    table = routes("    - backendRefs: [{name: v1, weight: 80}, {name: v2, weight: 20}]\n")
    split = Counter(goes_to(table, "/", r=i / 1000) for i in range(1000))
    assert split == {to("v1"): 800, to("v2"): 200}


@pytest.mark.parametrize(
    ("match", "modifier", "path", "rewritten"),
    [
        (
            "/foo",
            "{type: ReplacePrefixMatch, replacePrefixMatch: /bar}",
            "/foo/x?q=1",
            "/bar/x?q=1",
        ),
        ("/foo", "{type: ReplacePrefixMatch, replacePrefixMatch: /bar}", "/foo", "/bar"),
        ("/foo", "{type: ReplacePrefixMatch, replacePrefixMatch: /bar/}", "/foo/x", "/bar/x"),
        ("/foo", "{type: ReplacePrefixMatch, replacePrefixMatch: /}", "/foo/x", "/x"),
        ("/foo", "{type: ReplacePrefixMatch, replacePrefixMatch: /}", "/foo", "/"),
        ("/foo/", "{type: ReplacePrefixMatch, replacePrefixMatch: /bar}", "/foo/x", "/bar/x"),
        ("/", "{type: ReplacePrefixMatch, replacePrefixMatch: /v2}", "/x?q", "/v2/x?q"),
        ("/", "{type: ReplacePrefixMatch, replacePrefixMatch: /v2}", "/", "/v2/"),
        ("/foo", "{type: ReplaceFullPath, replaceFullPath: /new}", "/foo/x?q=1", "/new?q=1"),
    ],
)
def test_url_rewrite(match: str, modifier: str, path: str, rewritten: str) -> None:
    table = routes(
        f"""
    - matches: [{{path: {{type: PathPrefix, value: {match}}}}}]
      filters:
        - type: URLRewrite
          urlRewrite: {{hostname: internal.example, path: {modifier}}}
"""
    )
    route = call(table, path)
    assert route is not None
    assert route.rewrite_path(path) == rewritten
    assert route.host_rewrite == "internal.example"


def redirect_route(redirect: str, match: str = "/old") -> RedirectAction:
    table = routes(
        f"""
    - matches: [{{path: {{type: PathPrefix, value: {match}}}}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {redirect}
"""
    )
    route = call(table, "/old/page?q=1")
    assert route is not None and isinstance(route.action, RedirectAction)
    return route.action


def test_redirect_filter() -> None:
    action = redirect_route(
        "{scheme: https, hostname: new.example, port: 8443, statusCode: 301,"
        " path: {type: ReplaceFullPath, replaceFullPath: /new}}"
    )
    assert action.status == 301
    assert action.location("http", "reviews:9080", "/old/page?q=1") == (
        "https://new.example:8443/new?q=1"
    )
    assert redirect_route("{hostname: other}").location("http", "reviews:9080", "/old?q=1") == (
        "http://other:9080/old?q=1"
    )
    default = redirect_route("{port: 8080}")
    assert default.status == 302  # Gateway API's default
    assert default.location("http", "reviews:9080", "/old") == "http://reviews:8080/old"


def test_redirect_replace_prefix_match_keeps_the_rest_of_the_path() -> None:
    action = redirect_route("{path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}")
    # No scheme and no port: Gateway API's listener port, the service port in a mesh.
    assert action.location("http", "reviews", "/old/page?q=1") == "http://reviews:9080/new/page?q=1"


def test_redirect_to_https_uses_port_443() -> None:
    action = redirect_route("{scheme: https}")
    location = action.location("http", "reviews:9080", "/old")
    assert location in ("https://reviews/old", "https://reviews:443/old")


def test_mirror_and_response_header_filters() -> None:
    table = routes(
        """
    - backendRefs: [{name: v1}]
      filters:
        - type: RequestMirror
          requestMirror: {backendRef: {name: shadow}, percent: 25}
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            add: [{name: X-Served-By, value: mesh}]
            remove: [server]
"""
    )
    route = call(table, "/")
    assert route is not None
    assert route.mirrors == ((to("shadow"), 0.25),)
    assert to("shadow") in table.clusters()
    assert route.apply_response_headers([("Server", "app"), ("x-served-by", "a")]) == [
        ("x-served-by", "a"),
        ("x-served-by", "mesh"),
    ]


@pytest.mark.parametrize(
    ("policy", "retry_on", "codes", "num", "per_try"),
    [
        (
            "timeouts: {request: 10s, backendRequest: 2s}\n"
            "      retry: {codes: [502, 503], attempts: 3, backoff: 100ms}",
            {"connect-failure", "reset", "retriable-status-codes"},
            {502, 503},
            3,
            2.0,
        ),
        (
            "timeouts: {request: 10s}\n      retry: {attempts: 2}",
            {"connect-failure", "reset"},
            set(),
            2,
            None,
        ),
        ("timeouts: {request: 10s, backendRequest: 10s}", set(), set(), 0, 10.0),
    ],
)
def test_timeouts_and_retries(
    policy: str, retry_on: set[str], codes: set[int], num: int, per_try: float | None
) -> None:
    route = call(routes(f"    - backendRefs: [{{name: v1}}]\n      {policy}\n"), "/")
    assert route is not None
    assert route.timeout == 10.0
    retry = route.retry
    assert retry is not None
    assert retry.retry_on == retry_on
    assert retry.retriable_status_codes == codes
    assert (retry.num_retries, retry.per_try_timeout) == (num, per_try)
    assert retry.should_retry_status(503) is (503 in codes)
    assert retry.should_retry_status(500) is False


def test_retry_backoff_from_the_route() -> None:
    route = call(routes("    - retry: {codes: [503], attempts: 1, backoff: 100ms}\n"))
    assert route is not None and route.retry is not None
    assert route.retry.backoff_base == pytest.approx(0.1)
    assert route.retry.backoff_max == pytest.approx(1.0)


def test_no_route_attached_forwards_everything_without_a_timeout() -> None:
    table = route_table(load_push(SERVICES))
    route = call(table, "/any/path?x=1", "DELETE")
    assert route is not None
    assert route.name == "default"
    assert goes_to(table, "/x") == REVIEWS
    assert route.timeout is None  # `0s`: no timeout (Envoy's default would be 15 s)
    assert route.retry is None


def test_grpc_route_service_and_regex_method_matches() -> None:
    text = (
        SERVICES
        + """---
apiVersion: trellis.dev/v1alpha1
kind: GRPCRoute
metadata: {name: g, namespace: shop}
spec:
  parentRefs: [{name: reviews, port: 9080}]
  rules:
    - matches: [{method: {service: pkg.Svc, method: Get}}]
      backendRefs: [{name: a}]
    - matches: [{method: {type: RegularExpression, service: "pkg\\\\.S.*", method: "List.*"}}]
      backendRefs: [{name: b}]
    - matches: [{method: {service: pkg.Svc}}]
      backendRefs: [{name: v1}]
"""
    )
    table = route_table(load_push(text))
    assert goes_to(table, "/pkg.Svc/Get", method="POST") == to("a")
    assert goes_to(table, "/pkg.Svc/ListAll", method="POST") == to("b")
    assert goes_to(table, "/pkg.Svc/Delete", method="POST") == to("v1")
    assert goes_to(table, "/pkg.Other/Get", method="POST") is None


@pytest.mark.parametrize("kind", ["sidecar", "proxyless"])
def test_a_rule_with_only_zero_weights_answers_500(kind: str) -> None:
    table = routes("    - backendRefs: [{name: v1, weight: 0}]\n", kind=kind)
    route = call(table, "/")
    assert route is not None and isinstance(route.action, DirectResponseAction)
    assert route.action.status == 500


def test_a_regex_re2_rejects_is_refused_when_the_route_is_applied() -> None:
    with pytest.raises(InvalidDocuments):
        routes("    - matches: [{path: {type: RegularExpression, value: '/a(?=b).*'}}]\n")
