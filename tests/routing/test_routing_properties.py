"""Properties: picks respect weights, selection never raises, parsers never raise."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from tests.routing.routing_support import compile_doc, forward, vhost

from trellis.routing import (
    ForwardAction,
    HeaderMutation,
    HeaderToAdd,
    RouteConfigError,
    parse_query,
)
from trellis.routing.regex import compile_pattern, unsupported

weights = st.lists(st.integers(min_value=0, max_value=1000), min_size=1, max_size=8).filter(
    lambda ws: sum(ws) > 0
)
draws = st.floats(min_value=0.0, max_value=1.0, exclude_max=True)


@given(weights, draws)
def test_pick_never_returns_a_zero_weight_cluster(ws: list[int], r: float) -> None:
    action = ForwardAction([(f"c{i}", w) for i, w in enumerate(ws)])
    picked = action.pick(r)
    assert dict(action.clusters)[picked] > 0


@given(weights, st.floats(allow_nan=True, allow_infinity=True))
def test_pick_never_fails_on_any_float(ws: list[int], r: float) -> None:
    action = ForwardAction([(f"c{i}", w) for i, w in enumerate(ws)])
    assert dict(action.clusters)[action.pick(r)] > 0


@given(weights, draws, draws)
def test_pick_is_monotonic_in_r(ws: list[int], a: float, b: float) -> None:
    """Clusters own consecutive intervals in list order."""
    action = ForwardAction([(f"c{i}", w) for i, w in enumerate(ws)])
    lo, hi = sorted((a, b))
    assert int(action.pick(lo)[1:]) <= int(action.pick(hi)[1:])


TABLE = compile_doc(
    {
        "name": "rc",
        "virtual_hosts": [
            vhost(
                forward(
                    {
                        "safe_regex": {"regex": "/api/[a-z]+/[0-9]*"},
                        "headers": [
                            {"name": "x-r", "range_match": {"start": 0, "end": 10}},
                            {"name": ":method", "string_match": {"exact": "GET"}},
                        ],
                    },
                    cluster="a",
                ),
                forward(
                    {
                        "prefix": "/Q",
                        "case_sensitive": False,
                        "query_parameters": [
                            {"name": "v", "string_match": {"safe_regex": {"regex": "[0-9]+"}}},
                            {"name": "p", "present_match": True},
                        ],
                    },
                    cluster="b",
                    prefix_rewrite="/x",
                ),
                forward(
                    {
                        "path_separated_prefix": "/seg",
                        "headers": [
                            {"name": "x-s", "string_match": {"suffix": "Z", "ignore_case": True}},
                            {"name": "x-p", "present_match": False, "invert_match": True},
                        ],
                    },
                    cluster="c",
                    regex_rewrite={"pattern": {"regex": "^/seg"}, "substitution": "/s"},
                ),
                forward({"prefix": "/"}, cluster="d"),
                domains=("*.example.com", "api.*", "exact.host:8080", "exact.host"),
            ),
            vhost(forward({"path": "/"}, cluster="e"), domains=("*",)),
        ],
    }
)

header_names = st.sampled_from(["x-r", "x-s", "x-p", "content-type", ":method", "other"])
text = st.text(max_size=40)


@settings(max_examples=300)
@given(text, text, text, st.dictionaries(header_names, text, max_size=5))
def test_select_never_raises(
    authority: str, method: str, path: str, headers: dict[str, str]
) -> None:
    route = TABLE.select(authority, method, path, headers)
    if route is not None:
        route.rewrite_path(path)
        route.apply_request_headers(list(headers.items()))


@settings(max_examples=300)
@given(
    st.from_regex(r"/[a-zA-Z0-9/%?&=#+.-]{0,30}", fullmatch=True),
    st.dictionaries(header_names, st.from_regex(r"[ -~]{0,8}", fullmatch=True), max_size=4),
)
def test_select_on_realistic_targets(path: str, headers: dict[str, str]) -> None:
    route = TABLE.select("a.example.com", "GET", path, headers)
    assert route is not None  # the `/` catch-all of the first virtual host
    if route.match.prefix_length is not None:
        assert route.rewrite_path(path).endswith(path[route.match.prefix_length :])


@given(st.text())
def test_query_parsing_never_raises(query: str) -> None:
    parsed = parse_query(query)
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in parsed.items())


@given(st.text(max_size=30))
def test_regex_compilation_fails_only_with_route_config_error(text_: str) -> None:
    unsupported(text_)
    try:
        compile_pattern(text_, "p")
    except RouteConfigError as e:
        assert e.path == "p"


mutations = st.lists(
    st.builds(
        HeaderToAdd,
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["1", "2", ""]),
        st.sampled_from(["append", "add_if_absent", "overwrite", "overwrite_if_exists"]),
        st.booleans(),
    ),
    max_size=6,
)
header_lists = st.lists(
    st.tuples(st.sampled_from(["a", "A", "b", "c", "d"]), st.sampled_from(["x", "y"])), max_size=6
)


@given(header_lists, st.sets(st.sampled_from(["a", "B", "d"])), mutations)
def test_header_mutation_invariants(
    headers: list[tuple[str, str]], remove: set[str], adds: list[HeaderToAdd]
) -> None:
    out = HeaderMutation(remove, adds).apply(headers)
    added = {h.name for h in adds if h.value or h.keep_empty}
    for name in {r.lower() for r in remove} - added:
        assert all(n.lower() != name for n, _ in out)
    removed = {r.lower() for r in remove}
    present = {n.lower() for n, _ in headers} - removed
    last_overwrite = {
        h.name: h
        for h in adds
        if (h.value or h.keep_empty)
        and (h.action == "overwrite" or (h.action == "overwrite_if_exists" and h.name in present))
    }
    for name, h in last_overwrite.items():
        values = [v for n, v in out if n.lower() == name]
        assert values[0] == h.value  # the last overwrite wins; appends come after it
    untouched = {"d"} - {r.lower() for r in remove} - added
    for name in untouched:
        assert [v for n, v in out if n == name] == [v for n, v in headers if n == name]
