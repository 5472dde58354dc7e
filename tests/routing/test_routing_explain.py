"""RouteTable.explain: the same virtual host and route as `select`, with why each route tried
did not match.

The property holds `explain` to `select` over random route tables (every path specifier,
header and query matcher kind, gRPC, several virtual hosts) and random requests: the
chosen route is `select`'s, every route tried before it is one whose matcher refuses the
request (and says why), and nothing after it is tried."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.routing.routing_support import compile_doc, forward, table, vhost

from trellis.routing import RouteTable, parse_query, split_target

# -- random tables ------------------------------------------------------------------------

PREFIXES = ["", "/", "/a", "/a/", "/A", "/api"]
PATHS = ["/", "/a", "/a/b", "/api/v1"]
SEGMENT_PREFIXES = ["/a", "/api", "/A"]
REGEXES = ["/a.*", "/[a-z]+/[0-9]*", ".*b", "/api(/.*)?"]
NAMES = ["x-a", "x-b", ":method", ":path", ":authority", "content-type"]
VALUES = ["1", "v2", "GET", "POST", "a", "application/grpc", "q=1", "/a/b?q=1"]

string_matchers = st.one_of(
    st.builds(
        lambda kind, value, ic: {kind: value, "ignore_case": ic},
        st.sampled_from(["exact", "prefix", "suffix", "contains"]),
        st.sampled_from(VALUES),
        st.booleans(),
    ),
    st.builds(lambda r: {"safe_regex": {"regex": r}}, st.sampled_from(["[0-9]+", "v.", "G.*"])),
)
header_matchers = st.builds(
    lambda name, spec, invert, missing: {
        "name": name,
        **spec,
        "invert_match": invert,
        "treat_missing_header_as_empty": missing,
    },
    st.sampled_from(NAMES),
    st.one_of(
        st.builds(lambda m: {"string_match": m}, string_matchers),
        st.builds(lambda p: {"present_match": p}, st.booleans()),
        st.builds(lambda s: {"range_match": {"start": s, "end": s + 5}}, st.integers(-3, 3)),
        st.just({}),
    ),
    st.booleans(),
    st.booleans(),
)
query_matchers = st.builds(
    lambda name, spec: {"name": name, **spec},
    st.sampled_from(["q", "v"]),
    st.one_of(
        st.builds(lambda m: {"string_match": m}, string_matchers),
        st.builds(lambda p: {"present_match": p}, st.booleans()),
        st.just({}),
    ),
)
path_specifiers = st.one_of(
    st.builds(lambda p: {"prefix": p}, st.sampled_from(PREFIXES)),
    st.builds(lambda p: {"path": p}, st.sampled_from(PATHS)),
    st.builds(lambda p: {"path_separated_prefix": p}, st.sampled_from(SEGMENT_PREFIXES)),
    st.builds(lambda r: {"safe_regex": {"regex": r}}, st.sampled_from(REGEXES)),
)
matches = st.builds(
    lambda path, sensitive, headers, query, grpc: {
        **path,
        **({} if sensitive is None else {"case_sensitive": sensitive}),
        "headers": headers,
        "query_parameters": query,
        **({"grpc": {}} if grpc else {}),
    },
    path_specifiers,
    st.sampled_from([None, True, False]),
    st.one_of(st.just([]), st.lists(header_matchers, min_size=1, max_size=2)),
    st.lists(query_matchers, max_size=2),
    st.sampled_from([False, False, False, True]),
)


@st.composite
def tables(draw: Any) -> RouteTable:
    domain_sets = [["*"], ["a.example.com", "a.example.com:8080"], ["*.example.com"], ["b.*"]]
    chosen = draw(st.lists(st.sampled_from(range(len(domain_sets))), min_size=1, unique=True))
    vhosts = []
    for n, i in enumerate(chosen):
        routes = draw(st.lists(matches, min_size=1, max_size=5))
        vhosts.append(
            {
                "name": f"vh{n}",
                "domains": domain_sets[i],
                "routes": [
                    forward(m, cluster=f"c{n}-{j}", name=f"r{j}") for j, m in enumerate(routes)
                ],
            }
        )
    return compile_doc({"name": "rc", "virtual_hosts": vhosts})


requests = st.fixed_dictionaries(
    {
        "authority": st.sampled_from(
            ["a.example.com", "a.example.com:8080", "x.example.com", "b.org", "other", ""]
        ),
        "method": st.sampled_from(["GET", "POST"]),
        "path": st.sampled_from(
            ["/", "/a", "/a/b?q=1", "/A/b", "/api/v1?v=2&q", "/api", "/b?q=v2", "/apix", "/1"]
        ),
        "headers": st.dictionaries(
            st.sampled_from([*NAMES[3:], "x-a", "x-b"]), st.sampled_from(VALUES), max_size=3
        ),
    }
)


@settings(max_examples=400, deadline=None)
@given(tables(), st.lists(requests, min_size=1, max_size=5))
def test_explain_chooses_what_select_chooses(t: RouteTable, reqs: list[dict[str, Any]]) -> None:
    for r in reqs:
        args = (r["authority"], r["method"], r["path"], r["headers"])
        chosen = t.select(*args)
        selection = t.explain(*args)
        assert selection.route is chosen
        assert selection.virtual_host is t.virtual_host(r["authority"])
        if selection.virtual_host is None:
            assert selection.checks == () and selection.untried == 0
            continue
        routes = selection.virtual_host.routes
        checks = selection.checks
        assert [c.route for c in checks] == list(routes[: len(checks)])
        assert [c.index for c in checks] == list(range(len(checks)))
        *refused, last = checks
        assert all(not c.matched and c.reason for c in refused)
        if chosen is None:
            assert not last.matched and last.reason and len(checks) == len(routes)
        else:
            assert last.matched and last.route is chosen and last.reason == ""
        assert selection.untried == len(routes) - len(checks)


@settings(max_examples=200, deadline=None)
@given(tables(), requests)
def test_explain_takes_headers_as_select_does_from_a_builder(
    t: RouteTable, r: dict[str, Any]
) -> None:
    """A header builder (the proxy's request head) gives the same answer as a dict."""
    built = lambda: r["headers"]  # noqa: E731
    args = (r["authority"], r["method"], r["path"])
    assert t.explain(*args, built).route is t.select(*args, r["headers"])


@settings(max_examples=400, deadline=None)
@given(tables(), requests)
def test_a_reason_is_given_exactly_when_the_matcher_refuses(
    t: RouteTable, r: dict[str, Any]
) -> None:
    """`mismatch` (the words) agrees with `matches` (the decision) for every route."""
    just_path, query_text = split_target(r["path"])
    query = parse_query(query_text)
    for vh in t.virtual_hosts:
        for route in vh.routes:
            args = (just_path, r["method"], r["path"], r["authority"], r["headers"], query)
            assert (route.match.mismatch(*args) is None) == route.match.matches(*args)


def test_path_header_matchers_see_the_query_in_explain_too() -> None:
    t = table(
        forward({"prefix": "/", "headers": [{"name": ":path", "string_match": {"suffix": "q=1"}}]}),
        forward({"prefix": "/", "query_parameters": [{"name": "q", "present_match": True}]}),
        forward({"prefix": "/"}, name="rest"),
    )
    queries_only = table(
        forward({"prefix": "/", "query_parameters": [{"name": "q", "present_match": True}]}),
        forward({"prefix": "/"}, name="rest"),
    )
    for target in ("/a?q=1", "/a?q=2", "/a?q", "/a"):
        for each in (t, queries_only):
            assert each.explain("h", "GET", target, {}).route is each.select("h", "GET", target, {})


# -- what the reasons say -----------------------------------------------------------------


def reasons(t: RouteTable, path: str = "/", method: str = "GET", **headers: str) -> list[str]:
    return [c.reason for c in t.explain("example.com", method, path, headers).checks]


def test_each_refusal_names_the_condition_and_what_the_request_had() -> None:
    t = table(
        forward({"prefix": "/api"}, name="api"),
        forward(
            {"prefix": "/", "headers": [{"name": "x-version", "string_match": {"exact": "v2"}}]}
        ),
        forward({"prefix": "/", "headers": [{"name": ":method", "exact_match": "POST"}]}),
        forward(
            {"prefix": "/", "query_parameters": [{"name": "v", "string_match": {"exact": "2"}}]}
        ),
        forward({"prefix": "/", "grpc": {}}),
        forward({"path": "/exact", "case_sensitive": False}),
    )
    assert reasons(t, "/web?v=3", **{"x-version": "v3"}) == [
        "path '/web' is not prefix '/api'",
        "header x-version exact 'v2': 'v3'",
        "header :method exact 'POST': 'GET'",
        "query parameter v exact '2': '3'",
        "not a gRPC request (content-type absent)",
        "path '/web' is not exact '/exact' ignoring case",
    ]
    assert reasons(t, "/web")[1] == "header x-version exact 'v2': absent"
    assert reasons(t, "/web")[3] == "query parameter v exact '2': absent"


def header_route(**matcher: Any) -> dict[str, Any]:
    return forward({"prefix": "/", "headers": [matcher]})


def test_matcher_kinds_in_words() -> None:
    t = table(
        forward({"safe_regex": {"regex": "/a/[0-9]+"}}),
        forward({"path_separated_prefix": "/seg"}),
        header_route(name="x-a", present_match=True, invert_match=True),
        header_route(name="x-r", range_match={"start": 1, "end": 5}),
        header_route(name="x-s", string_match={"suffix": "Z", "ignore_case": True}),
        forward({"prefix": "/", "query_parameters": [{"name": "p"}]}),
        header_route(name="x-m", treat_missing_header_as_empty=True, string_match={"exact": "x"}),
    )
    got = reasons(t, "/b", **{"x-a": "1", "x-r": "9", "x-s": "a"})
    assert got == [
        "path '/b' is not regex '/a/[0-9]+'",
        "path '/b' is not segment prefix '/seg'",
        "header not (x-a present): '1'",
        "header x-r in [1, 5): '9'",
        "header x-s suffix 'Z' ignoring case: 'a'",
        "query parameter p present: absent",
        "header x-m exact 'x' (missing read as empty): absent",
    ]


def test_the_chosen_route_ends_the_trail_and_the_rest_are_untried() -> None:
    t = table(
        forward({"prefix": "/a"}, name="a"),
        forward({"prefix": "/"}, name="all"),
        forward({"prefix": "/b"}, name="b"),
    )
    s = t.explain("example.com", "GET", "/x", {})
    assert [(c.route.name, c.matched) for c in s.checks] == [("a", False), ("all", True)]
    assert s.route is not None and s.route.name == "all" and s.untried == 1


def test_no_virtual_host_for_the_authority() -> None:
    t = compile_doc({"name": "rc", "virtual_hosts": [vhost(forward(), domains=("web", "web:80"))]})
    s = t.explain("other:80", "GET", "/", {})
    assert s.virtual_host is None and s.route is None and s.checks == ()
    assert s.host == "other:80"  # a domain carries a port: the authority is matched as given
    s = t.explain("WEB:80", "GET", "/", {})
    assert s.virtual_host is not None and s.host == "web:80"
