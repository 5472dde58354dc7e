"""Routes: precedence, weights, retries, timeouts, faults, hashing — per client kind."""

from __future__ import annotations

import re
from typing import Any

from tests.control.translate.translate_support import load_push, node, routes_of

from trellis.control.push.context import PushContext
from trellis.model.loader import load_documents
from trellis.store.base import Snapshot

SERVICES = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}, {name: grpc, port: 50051}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: v1, namespace: shop}
spec:
  selector: {app: reviews, version: v1}
  ports: [{name: http, port: 9080}, {name: grpc, port: 50051}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: v2, namespace: shop}
spec:
  selector: {app: reviews, version: v2}
  ports: [{port: 8000}]
"""
RDS = "reviews.shop.svc.mesh:9080"
GRPC_RDS = "reviews.shop.svc.mesh:50051"
V1 = "outbound|9080||v1.shop.svc.mesh"


def http_route(rules: str, name: str = "r", namespace: str = "shop") -> str:
    return f"""
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: {name}, namespace: {namespace}}}
spec:
  parentRefs: [{{name: reviews, namespace: shop, port: 9080}}]
  rules:
{rules}"""


def grpc_route(rules: str) -> str:
    return f"""
---
apiVersion: trellis.dev/v1alpha1
kind: GRPCRoute
metadata: {{name: g, namespace: shop}}
spec:
  parentRefs: [{{name: reviews, port: 50051}}]
  rules:
{rules}"""


def routes(text: str, kind: str = "proxyless", rds: str = RDS) -> list[dict[str, Any]]:
    return routes_of(node(kind), load_push(SERVICES + text), rds)


def test_no_route_attached_means_one_default_route() -> None:
    (only,) = routes("")
    assert only["match"] == {"prefix": "/"}
    assert only["route"]["cluster"] == "outbound|9080||reviews.shop.svc.mesh"
    assert "timeout" not in only["route"]
    (side,) = routes("", kind="sidecar")
    assert side["route"]["timeout"] == "0s"  # explicit: Envoy's default is 15 s


def test_attached_routes_have_no_catch_all() -> None:
    out = routes(http_route("    - matches: [{headers: [{name: X-Canary, value: '1'}]}]"))
    assert len(out) == 1
    assert out[0]["match"]["headers"] == [{"name": "x-canary", "string_match": {"exact": "1"}}]
    # No backendRefs: the parent service itself (GAMMA).
    assert out[0]["route"]["cluster"] == "outbound|9080||reviews.shop.svc.mesh"


def test_gateway_api_precedence() -> None:
    rules = """
    - name: root
      matches: [{path: {type: PathPrefix, value: /}}]
    - name: api
      matches: [{path: {type: PathPrefix, value: /api}}]
    - name: api-long
      matches: [{path: {type: PathPrefix, value: /api/v1}}]
    - name: exact
      matches: [{path: {type: Exact, value: /api}}]
    - name: method
      matches: [{path: {type: PathPrefix, value: /api}, method: GET}]
    - name: one-header
      matches:
        - {path: {type: PathPrefix, value: /api}, method: GET, headers: [{name: a, value: '1'}]}
    - name: two-headers
      matches:
        - path: {type: PathPrefix, value: /api}
          method: GET
          headers: [{name: a, value: '1'}, {name: b, value: '2'}]
    - name: query
      matches:
        - path: {type: PathPrefix, value: /api}
          method: GET
          headers: [{name: a, value: '1'}, {name: b, value: '2'}]
          queryParams: [{name: q, value: x}]
"""
    order = [r["name"].split("/")[2] for r in routes(http_route(rules), kind="sidecar")]
    assert order == [
        "exact",
        "api-long",
        "query",
        "two-headers",
        "one-header",
        "method",
        "api",
        "root",
    ]


def test_ties_go_to_the_oldest_route_then_namespace_and_name() -> None:
    docs = load_documents(
        SERVICES
        + http_route("    - backendRefs: [{name: v1}]", name="b-new")
        + http_route("    - backendRefs: [{name: v1}]", name="a-new")
        + http_route("    - backendRefs: [{name: v2, port: 8000}]", name="z-old")
    )
    revisions = {"b-new": 7, "a-new": 7, "z-old": 3}
    aged = [
        d.model_copy(
            update={
                "metadata": d.metadata.model_copy(update={"creation_revision": revisions[d.name]})
            }
        )
        if d.name in revisions
        else d
        for d in docs
    ]
    push = PushContext.build(Snapshot(revision=9, docs=tuple(aged), leases=()), now=0)
    names = [r["name"].split("/")[1] for r in routes_of(node(), push, RDS)]
    assert names == ["z-old", "a-new", "b-new"]


def test_weighted_clusters_leave_out_weight_zero() -> None:
    rules = """
    - backendRefs: [{name: v1, weight: 80}, {name: v2, weight: 20}, {name: reviews, weight: 0}]
    - matches: [{path: {type: Exact, value: /one}}]
      backendRefs: [{name: v1, weight: 5}, {name: v2, weight: 0}]
"""
    one_, split = routes(http_route(rules))
    assert one_["route"]["cluster"] == V1
    assert split["route"]["weighted_clusters"]["clusters"] == [
        {"name": V1, "weight": 80},
        # v2 does not declare 9080: its only port.
        {"name": "outbound|8000||v2.shop.svc.mesh", "weight": 20},
    ]


def test_backend_that_no_longer_exists_still_gets_a_cluster_name() -> None:
    (r,) = routes(http_route("    - backendRefs: [{name: gone}]"))
    assert r["route"]["cluster"] == "outbound|9080||gone.shop.svc.mesh"


RETRY = """
    - backendRefs: [{name: v1}]
      retry: {codes: [500, 502, 503, 504], attempts: 7, backoff: 50ms}
      timeouts: {request: 5s, backendRequest: 2s}
    - matches: [{path: {type: Exact, value: /no-grpc-codes}}]
      retry: {codes: [500, 429], attempts: 2}
"""


def test_proxyless_retry_maps_http_codes_to_grpc_and_caps_attempts() -> None:
    no_codes, main = routes(http_route(RETRY))
    policy = main["route"]["retry_policy"]
    assert policy["retry_on"] == "unavailable"
    assert policy["num_retries"] == 4  # at most 5 attempts (gRFC A44)
    assert policy["retry_back_off"] == {"base_interval": "0.050s", "max_interval": "0.500s"}
    assert main["route"]["max_stream_duration"] == {"max_stream_duration": "5s"}
    assert "timeout" not in main["route"]
    assert "retry_policy" not in no_codes["route"]


def test_sidecar_retry_uses_http_status_codes_and_per_try_timeout() -> None:
    no_codes, main = routes(http_route(RETRY), kind="sidecar")
    policy = main["route"]["retry_policy"]
    assert policy["retry_on"] == "connect-failure,reset,retriable-status-codes"
    assert policy["retriable_status_codes"] == [500, 502, 503, 504]
    assert policy["num_retries"] == 7
    assert policy["per_try_timeout"] == "2s"
    assert main["route"]["timeout"] == "5s"
    assert no_codes["route"]["retry_policy"]["retriable_status_codes"] == [429, 500]
    assert no_codes["route"]["timeout"] == "0s"


def test_grpc_route_retry_codes() -> None:
    text = grpc_route(
        "    - retry: {codes: [UNAVAILABLE, CANCELLED, DEADLINE_EXCEEDED], attempts: 2}\n"
    )
    (p,) = routes(text, rds=GRPC_RDS)
    assert p["route"]["retry_policy"] == {
        "retry_on": "cancelled,deadline-exceeded,unavailable",
        "num_retries": 2,
    }
    (s,) = routes(text, kind="sidecar", rds=GRPC_RDS)
    assert s["route"]["retry_policy"]["retry_on"] == (
        "connect-failure,reset,cancelled,deadline-exceeded,unavailable"
    )


def test_mesh_defaults_apply_where_rules_set_none() -> None:
    mesh = """
---
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  defaults:
    timeouts: {request: 10s}
    retry: {codes: [503], attempts: 2}
"""
    own = http_route(
        "    - timeouts: {request: 1s}\n      matches: [{path: {type: Exact, value: /x}}]\n"
    )
    own += http_route("    - matches: [{path: {type: Exact, value: /y}}]\n", name="s")
    x, y = routes(mesh + own, kind="sidecar")
    assert x["route"]["timeout"] == "1s"
    assert y["route"]["timeout"] == "10s"
    assert x["route"]["retry_policy"]["retriable_status_codes"] == [503]
    (default,) = routes(mesh, kind="sidecar")
    assert default["route"]["timeout"] == "10s"


def test_proxyless_drops_query_matches_and_rules_left_without_matches() -> None:
    rules = """
    - name: mixed
      matches: [{queryParams: [{name: a, value: '1'}]}, {path: {type: Exact, value: /x}}]
    - name: query-only
      matches: [{queryParams: [{name: b, value: '2'}]}]
"""
    assert [r["name"] for r in routes(http_route(rules))] == ["shop/r/mixed/match-1"]
    sidecar = routes(http_route(rules), kind="sidecar")
    assert len(sidecar) == 3
    assert {"name": "b", "string_match": {"exact": "2"}} in sidecar[2]["match"]["query_parameters"]


def test_path_prefix_keeps_segment_semantics() -> None:
    rules = "    - matches: [{path: {type: PathPrefix, value: /foo/}}]\n"
    (r,) = routes(http_route(rules))
    regex = r["match"]["safe_regex"]["regex"]
    assert re.fullmatch(regex, "/foo") and re.fullmatch(regex, "/foo/bar")
    assert not re.fullmatch(regex, "/foobar")


def test_method_is_a_method_header() -> None:
    (r,) = routes(http_route("    - matches: [{method: POST}]\n"))
    assert r["match"]["headers"] == [{"name": ":method", "string_match": {"exact": "POST"}}]


def test_grpc_method_matches_become_paths() -> None:
    rules = """
    - matches:
        - method: {service: pkg.Svc, method: Get}
        - method: {service: pkg.Svc}
        - method: {method: Get}
        - method: {type: RegularExpression, service: 'pkg\\..*', method: 'Get|List'}
"""
    out = routes(grpc_route(rules), rds=GRPC_RDS)
    by_match = [r["match"] for r in out]
    assert by_match[0] == {"path": "/pkg.Svc/Get"}
    assert {"prefix": "/pkg.Svc/"} in by_match
    regexes = [m["safe_regex"]["regex"] for m in by_match if "safe_regex" in m]
    assert any(
        re.fullmatch(x, "/any.Thing/Get") and not re.fullmatch(x, "/a/List") for x in regexes
    )
    assert any(
        re.fullmatch(x, "/pkg.X/List") and not re.fullmatch(x, "/other.X/Get") for x in regexes
    )


def test_fault_goes_in_the_per_route_filter_config() -> None:
    rules = """
    - fault:
        delay: {fixedDelay: 250ms, percent: 12.5}
        abort: {grpcStatus: 14, percent: 100}
"""
    (r,) = routes(http_route(rules))
    fault = r["typed_per_filter_config"]["envoy.filters.http.fault"]
    assert fault["@type"].endswith("envoy.extensions.filters.http.fault.v3.HTTPFault")
    assert fault["delay"] == {
        "fixed_delay": "0.250s",
        "percentage": {"numerator": 125000, "denominator": "MILLION"},
    }
    assert fault["abort"] == {
        "grpc_status": 14,
        "percentage": {"numerator": 1000000, "denominator": "MILLION"},
    }


RING = """
---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: v1, namespace: shop}
spec: {service: v1, loadBalancer: {type: RING_HASH, ringHash: {header: X-User}}}
---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: reviews, namespace: shop}
spec: {service: reviews, loadBalancer: {type: RING_HASH}}
"""


def test_ring_hash_adds_a_route_hash_policy() -> None:
    text = RING + http_route("    - backendRefs: [{name: v1}]")
    (r,) = routes(text)
    assert r["route"]["hash_policy"] == [{"header": {"header_name": "x-user"}}]
    (default,) = routes(RING)  # no header: hash the channel / the source address
    assert default["route"]["hash_policy"] == [{"filter_state": {"key": "io.grpc.channel_id"}}]
    (side,) = routes(RING, kind="sidecar")
    assert side["route"]["hash_policy"] == [{"connection_properties": {"source_ip": True}}]


def test_header_modifiers_redirect_rewrite_and_mirror() -> None:
    rules = """
    - matches: [{path: {type: Exact, value: /old}}]
      filters:
        - type: RequestRedirect
          requestRedirect:
            hostname: new.example
            statusCode: 301
            path: {type: ReplaceFullPath, replaceFullPath: /new}
    - matches: [{path: {type: PathPrefix, value: /v1}}]
      filters:
        - type: URLRewrite
          urlRewrite:
            hostname: internal
            path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
        - type: RequestMirror
          requestMirror: {backendRef: {name: v2}, percent: 10}
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{name: X-Set, value: a}]
            add: [{name: X-Add, value: b}]
            remove: [X-Gone]
      backendRefs: [{name: v1}]
"""
    redirect, rewrite = routes(http_route(rules), kind="sidecar")
    assert redirect["redirect"] == {
        "host_redirect": "new.example",
        "path_redirect": "/new",
        "port_redirect": 9080,  # no port, no scheme: the service port (Gateway API)
    }  # MOVED_PERMANENTLY is the enum's zero value
    action = rewrite["route"]
    assert action["host_rewrite_literal"] == "internal"
    pattern = action["regex_rewrite"]["pattern"]["regex"]
    sub = action["regex_rewrite"]["substitution"].replace("\\1", "\\g<1>")
    assert re.sub(pattern, sub, "/v1/items") == "/v2/items"
    assert re.sub(pattern, sub, "/v1") == "/v2"
    assert action["request_mirror_policies"] == [
        {
            "cluster": "outbound|8000||v2.shop.svc.mesh",
            "runtime_fraction": {"default_value": {"numerator": 10}},
        }
    ]
    assert rewrite["request_headers_to_add"] == [
        {"header": {"key": "x-set", "value": "a"}, "append_action": "OVERWRITE_IF_EXISTS_OR_ADD"},
        {"header": {"key": "x-add", "value": "b"}},  # APPEND_IF_EXISTS_OR_ADD is the zero value
    ]
    assert rewrite["request_headers_to_remove"] == ["x-gone"]
    # gRPC has no mirrors.
    _, proxyless = routes(http_route(rules))
    assert "request_mirror_policies" not in proxyless["route"]
