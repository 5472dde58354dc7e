"""RouteTable: virtual-host domains, route order, cluster lists, and where errors point."""

from __future__ import annotations

import pickle
from typing import Any

import pytest
from tests.routing.routing_support import (
    FAULT_TYPE,
    compile_doc,
    config_error,
    forward,
    route_error,
    select,
    table,
    vhost,
)

from trellis.routing import ForwardAction, RouteConfigError, RouteTable


def hosts(*domain_lists: list[str], **config: Any) -> RouteTable:
    """One vhost per domain list, named after its first domain, each with one route."""
    vhosts = [
        {"name": domains[0], "domains": domains, "routes": [forward(name=domains[0])]}
        for domains in domain_lists
    ]
    return compile_doc({"name": "rc", "virtual_hosts": vhosts, **config})


def vhost_for(t: RouteTable, authority: str) -> str | None:
    vh = t.virtual_host(authority)
    route = select(t, authority=authority)
    assert (route is None) == (vh is None)
    return None if vh is None else vh.name


# -- domains ------------------------------------------------------------------------------


def test_domain_precedence_exact_suffix_prefix_default() -> None:
    t = hosts(
        ["*"],
        ["*.foo.com"],
        ["*-bar.foo.com"],
        ["api.*"],
        ["api.foo.*"],
        ["api.foo.com", "www.foo.com"],
    )
    assert vhost_for(t, "api.foo.com") == "api.foo.com"  # exact first
    assert vhost_for(t, "www.foo.com") == "api.foo.com"
    assert vhost_for(t, "x-bar.foo.com") == "*-bar.foo.com"  # longest suffix
    assert vhost_for(t, "baz.foo.com") == "*.foo.com"
    assert vhost_for(t, "api.foo.org") == "api.foo.*"  # longest prefix, after suffixes
    assert vhost_for(t, "api.bar.org") == "api.*"
    assert vhost_for(t, "other") == "*"


def test_suffix_wildcards_beat_prefix_wildcards() -> None:
    t = hosts(["*.com"], ["api.*"])
    assert vhost_for(t, "api.com") == "*.com"


def test_a_wildcard_stands_for_at_least_one_character() -> None:
    t = hosts(["*.foo.com"], ["foo.*"])
    assert vhost_for(t, ".foo.com") is None
    assert vhost_for(t, "a.foo.com") == "*.foo.com"
    assert vhost_for(t, "foo.") is None
    assert vhost_for(t, "foo.x") == "foo.*"


def test_domains_match_case_insensitively() -> None:
    t = hosts(["Reviews.Shop"], ["*.Example.COM"])
    assert vhost_for(t, "REVIEWS.shop") == "Reviews.Shop"
    assert vhost_for(t, "a.example.com") == "*.Example.COM"


def test_no_default_host_means_no_route() -> None:
    t = hosts(["a"])
    assert vhost_for(t, "b") is None


def test_port_is_stripped_when_no_domain_has_one() -> None:
    t = hosts(["reviews", "reviews.shop"], ["*.svc.mesh"])
    assert vhost_for(t, "reviews:9080") == "reviews"
    assert vhost_for(t, "reviews.svc.mesh:80") == "*.svc.mesh"
    assert vhost_for(t, "[::1]:80") is None
    t6 = hosts(["[::1]"])
    assert vhost_for(t6, "[::1]:8080") == "[::1]"
    assert vhost_for(t6, "[::1]") == "[::1]"


def test_port_is_matched_when_a_domain_has_one() -> None:
    # Our control plane's shape: every spelling, with and without the port.
    t = hosts(["reviews", "reviews:9080"], ["frontend:9000"])
    assert vhost_for(t, "reviews:9080") == "reviews"
    assert vhost_for(t, "reviews") == "reviews"
    assert vhost_for(t, "reviews:1234") is None  # not another port's config
    assert vhost_for(t, "frontend:9000") == "frontend:9000"
    assert vhost_for(t, "frontend") is None


def test_ignore_port_in_host_matching() -> None:
    t = hosts(["reviews"], ["other:80"], ignore_port_in_host_matching=True)
    assert vhost_for(t, "reviews:9080") == "reviews"


def test_not_a_port_is_not_stripped() -> None:
    t = hosts(["host:abc"], ["*"])
    assert vhost_for(t, "host:abc") == "host:abc"
    assert vhost_for(hosts(["host"]), "host:") is None


def test_only_a_default_host_takes_everything() -> None:
    t = hosts(["*"])
    for authority in ("", "a", "a:1", "[::1]:2", "ÄÖ"):
        assert vhost_for(t, authority) == "*"


@pytest.mark.parametrize(
    ("domains", "path", "reason"),
    [
        ([["a"], ["b", "A"]], "virtual_hosts[1].domains[1]", "duplicate domain 'A'"),
        ([["*"], ["*"]], "virtual_hosts[1].domains[0]", "duplicate domain '*'"),
        ([["a"], []], "virtual_hosts[1].domains", "at least one domain"),
        ([["a", ""]], "virtual_hosts[0].domains[1]", "empty domain"),
    ],
)
def test_domain_errors(domains: list[list[str]], path: str, reason: str) -> None:
    vhosts = [{"name": f"v{i}", "domains": d} for i, d in enumerate(domains)]
    err = config_error({"name": "rc", "virtual_hosts": vhosts})
    assert err.path == path
    assert reason in err.reason


# -- routes -------------------------------------------------------------------------------


def test_routes_are_tried_in_order_first_match_wins() -> None:
    t = table(
        forward({"prefix": "/a"}, name="a"),
        forward({"path": "/a/exact"}, name="exact-after-prefix"),
        forward({"prefix": "/"}, name="root"),
        forward({"prefix": "/b"}, name="unreachable"),
    )
    assert [r.name for r in t.virtual_hosts[0].routes] == [
        "a",
        "exact-after-prefix",
        "root",
        "unreachable",
    ]
    assert select(t, "/a/exact").name == "a"  # type: ignore[union-attr]
    assert select(t, "/b").name == "root"  # type: ignore[union-attr]


def test_no_matching_route_is_none() -> None:
    t = table(forward({"path": "/only"}))
    assert select(t, "/other") is None
    assert select(t, "/only") is not None


def test_empty_virtual_host_has_no_routes() -> None:
    t = compile_doc({"virtual_hosts": [{"name": "v", "domains": ["*"]}]})
    assert select(t) is None


def test_clusters_lists_every_forward_and_mirror_cluster() -> None:
    t = table(
        forward({"path": "/a"}, cluster="a"),
        {
            "match": {"prefix": "/"},
            "route": {
                "weighted_clusters": {
                    "clusters": [{"name": "b", "weight": 1}, {"name": "c", "weight": 0}]
                },
                "request_mirror_policies": [{"cluster": "m"}],
            },
        },
        {"match": {"prefix": "/r"}, "redirect": {"host_redirect": "x"}},
    )
    assert t.clusters() == ("a", "b", "c", "m")


def test_a_route_is_plain_data_after_compile() -> None:
    (route,) = table(forward()).virtual_hosts[0].routes
    assert isinstance(route.action, ForwardAction)
    assert not hasattr(route, "__dict__")  # __slots__
    assert route.virtual_host == "vh"


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("route", "path", "reason"),
    [
        ({"match": {"prefix": "/"}}, "action", "needs an action"),
        ({"route": {"cluster": "c"}}, "match", "needs a match"),
        ({"match": {"prefix": "/"}, "route": {}}, "route.cluster_specifier", "cluster or weighted"),
        ({"match": {"prefix": "/"}, "route": {"cluster": ""}}, "route.cluster", "empty cluster"),
        (
            {"match": {"prefix": "/"}, "route": {"cluster_header": "x-cluster"}},
            "route.cluster_header",
            "not supported",
        ),
        (
            {
                "match": {"prefix": "/"},
                "route": {"weighted_clusters": {"clusters": [{"name": "a", "weight": 0}]}},
            },
            "route.weighted_clusters.clusters",
            "total weight is 0",
        ),
        (
            {"match": {"prefix": "/"}, "route": {"weighted_clusters": {}}},
            "route.weighted_clusters.clusters",
            "no clusters",
        ),
        (
            {
                "match": {"prefix": "/"},
                "route": {
                    "weighted_clusters": {
                        "clusters": [{"name": "a", "weight": 1, "host_rewrite_literal": "h"}]
                    }
                },
            },
            "route.weighted_clusters.clusters[0].host_rewrite_literal",
            "not supported",
        ),
        (
            {"match": {"prefix": "/"}, "route": {"cluster": "c", "metadata_match": {}}},
            "route.metadata_match",
            "not supported",
        ),
        (
            {
                "match": {"prefix": "/"},
                "route": {"cluster": "c"},
                "typed_per_filter_config": {
                    "envoy.filters.http.fault": {
                        "@type": "type.googleapis.com/envoy.config.route.v3.Route"
                    }
                },
            },
            "typed_per_filter_config[envoy.filters.http.fault]",
            "expected envoy.extensions.filters.http.fault.v3.HTTPFault",
        ),
        (
            {
                "match": {"prefix": "/"},
                "route": {"cluster": "c"},
                "typed_per_filter_config": {
                    "envoy.filters.http.fault": {
                        "@type": FAULT_TYPE,
                        "abort": {"http_status": 99, "percentage": {"numerator": 1}},
                    }
                },
            },
            "typed_per_filter_config[envoy.filters.http.fault].abort.http_status",
            "not in [200, 600)",
        ),
        (
            {
                "match": {"prefix": "/"},
                "route": {"cluster": "c", "prefix_rewrite": "/x", "regex_rewrite": {}},
            },
            "route",
            "not both",
        ),
    ],
)
def test_route_errors_name_the_field(route: dict[str, Any], path: str, reason: str) -> None:
    err = route_error(route)
    assert err.path == f"virtual_hosts[0].routes[0].{path}"
    assert reason in err.reason


def test_error_paths_count_virtual_hosts_and_routes() -> None:
    bad = {"match": {"safe_regex": {"regex": "("}}, "route": {"cluster": "c"}}
    err = config_error(
        {
            "name": "rc",
            "virtual_hosts": [
                vhost(forward(), domains=("a",)),
                vhost(forward(), forward(), bad, domains=("b",)),
            ],
        }
    )
    assert err.path == "virtual_hosts[1].routes[2].match.safe_regex"
    assert str(err).startswith("virtual_hosts[1].routes[2].match.safe_regex: bad regex '('")


def test_config_level_errors() -> None:
    err = config_error({"name": "rc", "vhds": {}})
    assert err.path == "vhds"
    err = config_error({"name": "rc", "request_headers_to_remove": [":path"]})
    assert err.path == "request_headers_to_remove[0]"
    err = config_error({"virtual_hosts": [{"name": "v", "domains": ["*"], "require_tls": "ALL"}]})
    assert err.path == "virtual_hosts[0].require_tls"
    err = config_error({"virtual_hosts": [{"domains": ["*"]}]})
    assert err.path == "virtual_hosts[0].name"


def test_route_config_error_is_an_exception_with_path_and_reason() -> None:
    err = RouteConfigError("virtual_hosts[0].routes[2].match.safe_regex", "bad regex")
    assert isinstance(err, Exception)
    assert str(err) == "virtual_hosts[0].routes[2].match.safe_regex: bad regex"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.path, copy.reason) == (err.path, err.reason)


def test_ignorable_fields_compile() -> None:
    t = compile_doc(
        {
            "name": "rc",
            "validate_clusters": False,
            "internal_only_headers": ["x-internal"],
            "virtual_hosts": [
                vhost(
                    {
                        "name": "r",
                        "match": {"prefix": "/"},
                        "route": {"cluster": "c", "idle_timeout": "5s", "priority": "HIGH"},
                        "decorator": {"operation": "op"},
                        "stat_prefix": "s",
                    },
                    include_request_attempt_count=True,
                )
            ],
        }
    )
    assert select(t) is not None


def test_headers_are_built_only_for_a_virtual_host_that_matches_on_them() -> None:
    built: list[str] = []

    def headers() -> dict[str, str]:
        built.append("built")
        return {"x-canary": "1", "content-type": "application/grpc"}

    by_path = table(forward({"prefix": "/a"}, name="a"), forward(name="rest"))
    by_header = table(
        forward(
            {"prefix": "/", "headers": [{"name": "x-canary", "present_match": True}]}, name="c"
        ),
        forward(name="rest"),
    )
    grpc_only = table(forward({"prefix": "/", "grpc": {}}, name="g"))
    route = by_path.select("h", "GET", "/a/b", headers)
    assert route is not None and route.name == "a" and built == []
    route = by_header.select("h", "GET", "/", headers)
    assert route is not None and route.name == "c" and built == ["built"]
    route = grpc_only.select("h", "POST", "/svc/M", headers)
    assert route is not None and route.name == "g" and built == ["built", "built"]
    assert grpc_only.select("h", "POST", "/svc/M", dict) is None  # no content-type: no match
