"""Matchers: paths, headers, query parameters, gRPC (regexes themselves: test_routing_regex.py)."""

from __future__ import annotations

from typing import Any

import pytest
from tests.routing.routing_support import matches, route_error

from trellis.routing import parse_query, split_target


def regex(value: str) -> dict[str, Any]:
    return {"regex": value}


# -- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "path", "expected"),
    [
        ({"prefix": "/api"}, "/api", True),
        ({"prefix": "/api"}, "/api/v1", True),
        ({"prefix": "/api"}, "/apiary", True),  # a plain prefix is not segment-aware
        ({"prefix": "/api"}, "/API", False),
        ({"prefix": "/api"}, "/ap", False),
        ({"prefix": ""}, "/anything", True),
        ({"path": "/api"}, "/api", True),
        ({"path": "/api"}, "/api/", False),
        ({"path": "/api"}, "/api?x=1", True),  # the query is not part of the path
        ({"path": "/api"}, "/api#frag", True),
        ({"safe_regex": regex("/api/[0-9]+")}, "/api/42", True),
        ({"safe_regex": regex("/api/[0-9]+")}, "/api/42/x", False),  # full match, not search
        ({"safe_regex": regex("/api/[0-9]+")}, "/x/api/42", False),
        ({"safe_regex": regex("/api/[0-9]+")}, "/api/42?q=a", True),
        ({"path_separated_prefix": "/foo"}, "/foo", True),
        ({"path_separated_prefix": "/foo"}, "/foo/bar", True),
        ({"path_separated_prefix": "/foo"}, "/foo?x", True),
        ({"path_separated_prefix": "/foo"}, "/foobar", False),
        ({"path_separated_prefix": "/foo"}, "/fo", False),
    ],
)
def test_path_specifiers(match: dict[str, Any], path: str, expected: bool) -> None:
    assert matches(match, path) is expected


@pytest.mark.parametrize(
    ("match", "path", "expected"),
    [
        ({"prefix": "/Api", "case_sensitive": False}, "/aPI/x", True),
        ({"path": "/Api", "case_sensitive": False}, "/API", True),
        ({"path": "/Api", "case_sensitive": False}, "/APIs", False),
        ({"path_separated_prefix": "/Foo", "case_sensitive": False}, "/FOO/x", True),
        ({"path_separated_prefix": "/Foo", "case_sensitive": False}, "/FOOx", False),
        ({"prefix": "/Api", "case_sensitive": True}, "/api", False),
        # case_sensitive has no effect on regexes (Envoy): use (?i) instead.
        ({"safe_regex": regex("/api"), "case_sensitive": False}, "/API", False),
        ({"safe_regex": regex("(?i)/api")}, "/API", True),
    ],
)
def test_case_sensitivity(match: dict[str, Any], path: str, expected: bool) -> None:
    assert matches(match, path) is expected


def test_split_target() -> None:
    assert split_target("/a/b") == ("/a/b", "")
    assert split_target("/a?x=1&y") == ("/a", "x=1&y")
    assert split_target("/a?x=1#frag") == ("/a", "x=1")
    assert split_target("/a#frag?x=1") == ("/a", "")
    assert split_target("/a?") == ("/a", "")


# -- headers ------------------------------------------------------------------------------


def header(**matcher: Any) -> dict[str, Any]:
    return {"prefix": "/", "headers": [{"name": "x-h", **matcher}]}


@pytest.mark.parametrize(
    ("matcher", "value", "expected"),
    [
        ({"string_match": {"exact": "abc"}}, "abc", True),
        ({"string_match": {"exact": "abc"}}, "ABC", False),
        ({"string_match": {"exact": "abc", "ignore_case": True}}, "ABC", True),
        ({"string_match": {"prefix": "ab"}}, "abc", True),
        ({"string_match": {"prefix": "AB", "ignore_case": True}}, "abc", True),
        ({"string_match": {"prefix": "ab"}}, "cab", False),
        ({"string_match": {"suffix": "bc"}}, "abc", True),
        ({"string_match": {"suffix": "BC", "ignore_case": True}}, "abc", True),
        ({"string_match": {"suffix": "BC", "ignore_case": True}}, "c", False),
        ({"string_match": {"contains": "b"}}, "abc", True),
        ({"string_match": {"contains": "B", "ignore_case": True}}, "abc", True),
        ({"string_match": {"contains": "z"}}, "abc", False),
        ({"string_match": {"safe_regex": regex("a.c")}}, "abc", True),
        ({"string_match": {"safe_regex": regex("a.c")}}, "abcd", False),
        # ignore_case has no effect on regexes
        ({"string_match": {"safe_regex": regex("a.c"), "ignore_case": True}}, "ABC", False),
        ({"exact_match": "abc"}, "abc", True),
        ({"exact_match": "abc"}, "abd", False),
        ({"exact_match": ""}, "anything", True),  # legacy: an empty exact value matches any
        ({"prefix_match": "ab"}, "abc", True),
        ({"suffix_match": "bc"}, "abc", True),
        ({"contains_match": "b"}, "abc", True),
        ({"safe_regex_match": regex("[a-c]+")}, "abc", True),
        ({"safe_regex_match": regex("[a-c]+")}, "abcd", False),
        ({"range_match": {"start": 10, "end": 20}}, "10", True),
        ({"range_match": {"start": 10, "end": 20}}, "19", True),
        ({"range_match": {"start": 10, "end": 20}}, "20", False),  # end is exclusive
        ({"range_match": {"start": -5, "end": 0}}, "-3", True),
        ({"range_match": {"start": 10, "end": 20}}, " 15 ", True),
        ({"range_match": {"start": 10, "end": 20}}, "1_5", False),
        ({"range_match": {"start": 10, "end": 20}}, "15.0", False),
        ({"range_match": {"start": 10, "end": 20}}, "abc", False),
        ({"present_match": True}, "", True),
        ({"present_match": False}, "x", False),
        ({}, "x", True),  # no specifier: present
        ({"string_match": {"exact": "abc"}, "invert_match": True}, "abc", False),
        ({"string_match": {"exact": "abc"}, "invert_match": True}, "abd", True),
        ({"present_match": True, "invert_match": True}, "x", False),
    ],
)
def test_header_matchers_on_a_present_header(
    matcher: dict[str, Any], value: str, expected: bool
) -> None:
    assert matches(header(**matcher), headers={"x-h": value}) is expected


@pytest.mark.parametrize(
    ("matcher", "expected"),
    [
        ({"string_match": {"exact": "abc"}}, False),
        ({"string_match": {"exact": "abc"}, "invert_match": True}, False),  # absent never matches
        ({"string_match": {"exact": ""}, "invert_match": True}, False),
        ({"exact_match": ""}, False),
        ({"present_match": True}, False),
        ({"present_match": False}, True),
        ({"present_match": True, "invert_match": True}, True),
        ({"present_match": False, "invert_match": True}, False),
        ({}, False),
        ({"range_match": {"start": 0, "end": 9}}, False),
        # treat_missing_header_as_empty: matched as ""
        ({"string_match": {"exact": ""}, "treat_missing_header_as_empty": True}, True),
        ({"string_match": {"prefix": "a"}, "treat_missing_header_as_empty": True}, False),
        (
            {
                "string_match": {"prefix": "a"},
                "invert_match": True,
                "treat_missing_header_as_empty": True,
            },
            True,
        ),
    ],
)
def test_header_matchers_on_an_absent_header(matcher: dict[str, Any], expected: bool) -> None:
    assert matches(header(**matcher), headers={"other": "x"}) is expected


def test_header_names_are_case_insensitive_and_all_matchers_must_match() -> None:
    match = {
        "prefix": "/",
        "headers": [
            {"name": "X-A", "string_match": {"exact": "1"}},
            {"name": "x-b", "present_match": True},
        ],
    }
    assert matches(match, headers={"x-a": "1", "x-b": ""})
    assert not matches(match, headers={"x-a": "1"})
    assert not matches(match, headers={"x-a": "2", "x-b": "y"})


def test_repeated_headers_arrive_joined_and_match_as_one_value() -> None:
    match = header(string_match={"exact": "a,b"})
    assert matches(match, headers={"x-h": "a,b"})
    assert not matches(header(string_match={"exact": "a"}), headers={"x-h": "a,b"})


def test_pseudo_headers_come_from_the_request_line() -> None:
    def on(name: str, **string_match: str) -> dict[str, Any]:
        return {"prefix": "/", "headers": [{"name": name, "string_match": string_match}]}

    assert matches(on(":method", exact="POST"), method="POST")
    assert not matches(on(":method", exact="POST"), method="GET")
    # `:method` is not looked up in the header mapping
    assert not matches(on(":method", exact="POST"), method="GET", headers={":method": "POST"})
    assert matches(on(":path", exact="/a?b=1"), path="/a?b=1")  # :path includes the query
    assert not matches(on(":path", exact="/a"), path="/a?b=1")
    assert matches(on(":authority", exact="Svc:80"), authority="Svc:80")
    assert matches(on(":scheme", exact="https"), headers={":scheme": "https"})


def test_grpc_match_needs_a_grpc_content_type() -> None:
    match = {"prefix": "/", "grpc": {}}
    assert matches(match, headers={"content-type": "application/grpc"})
    assert matches(match, headers={"content-type": "application/grpc+proto"})
    assert not matches(match, headers={"content-type": "application/json"})
    assert not matches(match)


# -- query parameters ---------------------------------------------------------------------


def test_parse_query() -> None:
    assert parse_query("") == {}
    assert parse_query("a=1&b=2") == {"a": "1", "b": "2"}
    assert parse_query("a=1&a=2") == {"a": "1"}  # the first value counts
    assert parse_query("flag&x=") == {"flag": "", "x": ""}
    assert parse_query("n%20m=a%26b") == {"n m": "a&b"}
    assert parse_query("a=1+2") == {"a": "1+2"}  # `+` is not a space here
    assert parse_query("a=%zz%") == {"a": "%zz%"}  # malformed escapes stay
    assert parse_query("&&a=1&") == {"a": "1"}
    assert parse_query("a=b=c") == {"a": "b=c"}


@pytest.mark.parametrize(
    ("matcher", "path", "expected"),
    [
        ({"string_match": {"exact": "2"}}, "/?v=2", True),
        ({"string_match": {"exact": "2"}}, "/?v=3", False),
        ({"string_match": {"exact": "2"}}, "/?x=2", False),
        ({"string_match": {"exact": "2"}}, "/", False),
        ({"string_match": {"exact": "2"}}, "/?v=2&v=3", True),
        ({"string_match": {"exact": "2"}}, "/?v=3&v=2", False),  # only the first value
        ({"string_match": {"exact": "a b"}}, "/?v=a%20b", True),  # percent-decoded
        ({"string_match": {"exact": "A", "ignore_case": True}}, "/?v=a", True),
        ({"string_match": {"safe_regex": regex("[0-9]+")}}, "/?v=123", True),
        ({"string_match": {"safe_regex": regex("[0-9]+")}}, "/?v=12a", False),
        ({"present_match": True}, "/?v", True),
        ({"present_match": True}, "/?w=1", False),
        ({"present_match": False}, "/?v=1", False),
        ({"present_match": False}, "/", False),  # absent never matches (Envoy)
        ({}, "/?v=anything", True),
        ({"string_match": {"exact": ""}}, "/?v", True),  # present without a value: ""
    ],
)
def test_query_parameter_matchers(matcher: dict[str, Any], path: str, expected: bool) -> None:
    match = {"prefix": "/", "query_parameters": [{"name": "v", **matcher}]}
    assert matches(match, path) is expected


def test_query_names_are_case_sensitive() -> None:
    match = {"prefix": "/", "query_parameters": [{"name": "V", "present_match": True}]}
    assert not matches(match, "/?v=1")
    assert matches(match, "/?V=1")


# -- errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("match", "path", "reason"),
    [
        ({"safe_regex": regex("(")}, "match.safe_regex", "bad regex '('"),
        ({"safe_regex": regex("(?=a)b")}, "match.safe_regex", "lookahead"),
        (
            {"prefix": "/", "headers": [{"name": "a", "safe_regex_match": regex("(a)\\1")}]},
            "match.headers[0].safe_regex_match",
            "backreferences",
        ),
        (
            {"prefix": "/", "headers": [{"name": "a", "string_match": {"safe_regex": regex("[")}}]},
            "match.headers[0].string_match.safe_regex",
            "bad regex",
        ),
        (
            {"prefix": "/", "query_parameters": [{"name": "q", "string_match": {}}]},
            "match.query_parameters[0].string_match",
            "a string matcher needs",
        ),
        ({"prefix": "/", "headers": [{"name": ""}]}, "match.headers[0].name", "needs a name"),
        (
            {"prefix": "/", "headers": [{"name": "a", "string_match": {"prefix": ""}}]},
            "match.headers[0].string_match.prefix",
            "non-empty",
        ),
        ({"connect_matcher": {}}, "match.connect_matcher", "not supported"),
        ({}, "match.path_specifier", "a route needs a prefix"),
        ({"path_separated_prefix": "/foo/"}, "match.path_separated_prefix", "not end with '/'"),
        (
            {"prefix": "/", "runtime_fraction": {"default_value": {"numerator": 1}}},
            "match.runtime_fraction",
            "not supported",
        ),
    ],
)
def test_match_errors_name_the_field(match: dict[str, Any], path: str, reason: str) -> None:
    err = route_error({"name": "r", "match": match, "route": {"cluster": "c"}})
    assert err.path == f"virtual_hosts[0].routes[0].{path}"
    assert reason in err.reason
    assert str(err) == f"{err.path}: {err.reason}"
