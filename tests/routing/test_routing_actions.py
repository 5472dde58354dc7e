"""Actions: weighted picks, redirects and their Location, direct responses, path rewrites."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pytest
from tests.routing.routing_support import forward, only, route_error

from trellis.routing import (
    DirectResponseAction,
    ForwardAction,
    NonForwardingAction,
    RedirectAction,
)

# -- forward ------------------------------------------------------------------------------


def weighted(*clusters: tuple[str, int]) -> dict[str, Any]:
    return {
        "match": {"prefix": "/"},
        "route": {
            "weighted_clusters": {"clusters": [{"name": n, "weight": w} for n, w in clusters]}
        },
    }


def picks(action: ForwardAction, n: int = 1000) -> Counter[str]:
    return Counter(action.pick(i / n) for i in range(n))


def test_single_cluster() -> None:
    action = only(forward(cluster="reviews")).action
    assert isinstance(action, ForwardAction)
    assert action.clusters == (("reviews", 1),)
    assert action.cluster_names == frozenset({"reviews"})
    assert action.pick(0.0) == action.pick(0.999) == "reviews"


def test_weighted_pick_is_proportional_over_deterministic_draws() -> None:
    action = only(weighted(("v1", 80), ("v2", 20))).action
    assert isinstance(action, ForwardAction)
    assert action.clusters == (("v1", 80), ("v2", 20))
    assert picks(action) == {"v1": 800, "v2": 200}
    assert action.pick(0.0) == "v1"
    assert action.pick(0.7999) == "v1"
    assert action.pick(0.8) == "v2"  # intervals are [0, 80) and [80, 100)
    assert action.pick(0.99999999) == "v2"


def test_weight_zero_clusters_are_never_picked() -> None:
    action = only(weighted(("zero-a", 0), ("a", 1), ("zero-b", 0), ("b", 3), ("zero-c", 0))).action
    assert isinstance(action, ForwardAction)
    assert picks(action) == {"a": 250, "b": 750}
    assert action.cluster_names == {"zero-a", "a", "zero-b", "b", "zero-c"}


@pytest.mark.parametrize("r", [-0.5, 1.0, 1.5, math.nan, math.inf, -math.inf])
def test_out_of_range_draws_are_clamped(r: float) -> None:
    action = ForwardAction([("zero", 0), ("a", 1), ("b", 1), ("tail", 0)])
    assert action.pick(r) in ("a", "b")


def test_three_way_split() -> None:
    action = ForwardAction([("a", 1), ("b", 1), ("c", 2)])
    assert picks(action, 400) == {"a": 100, "b": 100, "c": 200}


# -- redirect -----------------------------------------------------------------------------


def redirect(match: dict[str, Any] | None = None, **fields: Any) -> RedirectAction:
    route = {"match": match or {"prefix": "/"}, "redirect": fields}
    action = only(route).action
    assert isinstance(action, RedirectAction)
    return action


@pytest.mark.parametrize(
    ("fields", "req", "location"),
    [
        ({}, ("http", "a.com", "/x?q=1"), "http://a.com/x?q=1"),
        ({"host_redirect": "b.com"}, ("http", "a.com:8080", "/x"), "http://b.com/x"),
        ({"port_redirect": 8443}, ("http", "a.com:8080", "/x"), "http://a.com:8443/x"),
        ({"port_redirect": 8443}, ("http", "a.com", "/x"), "http://a.com:8443/x"),
        (
            {"host_redirect": "b.com", "port_redirect": 81},
            ("http", "a.com:80", "/"),
            "http://b.com:81/",
        ),
        # Changing the scheme drops the old scheme's default port, and only that one.
        ({"scheme_redirect": "https"}, ("http", "a.com:80", "/x"), "https://a.com/x"),
        ({"scheme_redirect": "https"}, ("http", "a.com:9080", "/x"), "https://a.com:9080/x"),
        ({"https_redirect": True}, ("http", "a.com", "/x"), "https://a.com/x"),
        ({"scheme_redirect": "http"}, ("https", "a.com:443", "/"), "http://a.com/"),
        ({"scheme_redirect": "HTTPS"}, ("https", "a.com:443", "/"), "https://a.com:443/"),
        ({"scheme_redirect": "https"}, ("http", "[::1]:80", "/"), "https://[::1]/"),
        ({"port_redirect": 8080}, ("http", "[::1]:80", "/"), "http://[::1]:8080/"),
        ({"port_redirect": 8080}, ("http", "[::1]", "/"), "http://[::1]:8080/"),
        # path_redirect keeps the request's query unless it has its own
        ({"path_redirect": "/new"}, ("http", "a", "/old?q=1"), "http://a/new?q=1"),
        ({"path_redirect": "/new?x=2"}, ("http", "a", "/old?q=1"), "http://a/new?x=2"),
        (
            {"path_redirect": "/new?x=2", "strip_query": True},
            ("http", "a", "/old?q=1"),
            "http://a/new?x=2",
        ),
        ({"path_redirect": "/new", "strip_query": True}, ("http", "a", "/o?q=1"), "http://a/new"),
        ({"strip_query": True}, ("http", "a", "/o?q=1"), "http://a/o"),
        ({"path_redirect": "rel"}, ("http", "a", "/o"), "http://a/rel"),
    ],
)
def test_location(fields: dict[str, Any], req: tuple[str, str, str], location: str) -> None:
    assert redirect(**fields).location(*req) == location


def test_prefix_rewrite_replaces_the_matched_prefix() -> None:
    action = redirect({"prefix": "/old"}, prefix_rewrite="/new")
    assert action.location("http", "a", "/old/x?q=1") == "http://a/new/x?q=1"
    sep = redirect({"path_separated_prefix": "/old"}, prefix_rewrite="/new")
    assert sep.location("http", "a", "/old/x") == "http://a/new/x"


def test_prefix_rewrite_on_a_regex_or_exact_route_replaces_the_whole_path() -> None:
    action = redirect({"safe_regex": {"regex": "/old(/.*)?"}}, prefix_rewrite="/new")
    assert action.location("http", "a", "/old/x?q=1") == "http://a/new?q=1"
    exact = redirect({"path": "/old"}, prefix_rewrite="/new")
    assert exact.location("http", "a", "/old?q=1") == "http://a/new?q=1"


def test_regex_rewrite_redirect() -> None:
    action = redirect(
        regex_rewrite={"pattern": {"regex": "^/v1/(.*)$"}, "substitution": "/v2/\\1"},
    )
    assert action.location("http", "a", "/v1/x?q") == "http://a/v2/x?q"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (None, 301),
        ("MOVED_PERMANENTLY", 301),
        ("FOUND", 302),
        ("SEE_OTHER", 303),
        ("TEMPORARY_REDIRECT", 307),
        ("PERMANENT_REDIRECT", 308),
    ],
)
def test_redirect_status(code: str | None, status: int) -> None:
    fields: dict[str, Any] = {} if code is None else {"response_code": code}
    assert redirect(**fields).status == status


def test_redirect_has_no_upstream_policies() -> None:
    route = only({"match": {"prefix": "/"}, "redirect": {"host_redirect": "x"}})
    assert route.timeout is None and route.retry is None and route.mirrors == ()


# -- direct response and non-forwarding ---------------------------------------------------


def test_direct_response() -> None:
    route = only({"match": {"prefix": "/"}, "direct_response": {"status": 503}})
    assert isinstance(route.action, DirectResponseAction)
    assert (route.action.status, route.action.body) == (503, b"")
    route = only(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_string": "hé"}},
        }
    )
    assert isinstance(route.action, DirectResponseAction)
    assert route.action.body == "hé".encode()
    route = only(
        {
            "match": {"prefix": "/"},
            "direct_response": {"status": 200, "body": {"inline_bytes": "AAE="}},
        }
    )
    assert isinstance(route.action, DirectResponseAction)
    assert route.action.body == b"\x00\x01"


def test_direct_response_errors() -> None:
    err = route_error({"match": {"prefix": "/"}, "direct_response": {"status": 100}})
    assert err.path.endswith("direct_response.status")
    big = {"inline_string": "x" * 4097}
    err = route_error({"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": big}})
    assert err.path.endswith("direct_response.body") and "4096" in err.reason
    err = route_error(
        {"match": {"prefix": "/"}, "direct_response": {"status": 200, "body": {"filename": "/x"}}}
    )
    assert err.path.endswith("direct_response.body.filename")


def test_max_direct_response_body_size() -> None:
    big = {
        "match": {"prefix": "/"},
        "direct_response": {"status": 200, "body": {"inline_string": "x" * 5000}},
    }
    route = only(big, max_direct_response_body_size_bytes=8192)
    assert isinstance(route.action, DirectResponseAction)
    assert len(route.action.body) == 5000


def test_non_forwarding_action() -> None:
    route = only({"match": {"prefix": "/"}, "non_forwarding_action": {}})
    assert isinstance(route.action, NonForwardingAction)


# -- rewrites -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "action", "path", "rewritten"),
    [
        ({"prefix": "/api"}, {"prefix_rewrite": "/v2"}, "/api/x?q=1", "/v2/x?q=1"),
        ({"prefix": "/api/"}, {"prefix_rewrite": "/"}, "/api/x", "/x"),
        ({"prefix": "/api"}, {"prefix_rewrite": "/"}, "/api/x", "//x"),  # Envoy does not tidy up
        ({"prefix": "/API", "case_sensitive": False}, {"prefix_rewrite": "/b"}, "/api/x", "/b/x"),
        ({"path": "/a"}, {"prefix_rewrite": "/b"}, "/a?q", "/b?q"),
        ({"safe_regex": {"regex": "/a/.*"}}, {"prefix_rewrite": "/b"}, "/a/x?q", "/b?q"),
        ({"path_separated_prefix": "/a"}, {"prefix_rewrite": "/b"}, "/a/x", "/b/x"),
        (
            {"prefix": "/"},
            {
                "regex_rewrite": {
                    "pattern": {"regex": "^/svc/([^/]+)(/.*)$"},
                    "substitution": "\\2/i/\\1",
                }
            },
            "/svc/a/b?q=/svc/x/y",
            "/b/i/a?q=/svc/x/y",  # the query is neither matched nor rewritten
        ),
        (
            {"prefix": "/"},
            {"regex_rewrite": {"pattern": {"regex": "o"}, "substitution": "0"}},
            "/foo/boo",
            "/f00/b00",  # every match (RE2 GlobalReplace)
        ),
        (
            {"prefix": "/"},
            {"regex_rewrite": {"pattern": {"regex": "^/foo(/.*)?$"}, "substitution": "/bar\\1"}},
            "/foo",
            "/bar",  # an optional group that did not match is empty
        ),
        ({"prefix": "/"}, {}, "/same?q", "/same?q"),
    ],
)
def test_rewrite_path(
    match: dict[str, Any], action: dict[str, Any], path: str, rewritten: str
) -> None:
    route = only({"match": match, "route": {"cluster": "c", **action}})
    assert route.rewrite_path(path) == rewritten


def test_host_rewrite_literal() -> None:
    assert only(forward(host_rewrite_literal="backend.internal")).host_rewrite == "backend.internal"
    assert only(forward()).host_rewrite is None


def test_regex_rewrite_errors() -> None:
    err = route_error(forward(regex_rewrite={"pattern": {"regex": "(a)"}, "substitution": "\\2"}))
    assert err.path == "virtual_hosts[0].routes[0].route.regex_rewrite.substitution"
    err = route_error(forward(regex_rewrite={"substitution": "x"}))
    assert err.path == "virtual_hosts[0].routes[0].route.regex_rewrite.pattern"
