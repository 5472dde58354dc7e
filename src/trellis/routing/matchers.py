"""Request matchers: RouteMatch → one compiled `RouteMatcher` per route, built once.

Owns Envoy's matching semantics (route_components.proto):
- path specifiers `prefix`, `path`, `safe_regex` (RE2, full match), `path_separated_prefix`,
  against the path without its query string (and fragment); `case_sensitive`
  (default true) applies to prefix/path, not to regexes;
- HeaderMatcher: `string_match` (exact/prefix/suffix/contains/safe_regex,
  `ignore_case`), `present_match`, `range_match` ([start, end)), the legacy
  `exact_match`/`safe_regex_match`/`prefix_match`/`suffix_match`/`contains_match`,
  `invert_match`, `treat_missing_header_as_empty`. A missing header matches only
  `present_match: false` (or an inverted `present_match: true`). No specifier
  means "present". `:method`, `:path` (with query) and `:authority` come from
  the request line, the rest from the lower-cased header mapping (repeated
  headers already joined with ",");
- QueryParameterMatcher on the percent-decoded query: the first value of a
  name counts; a name without `=` has the value ""; `present_match` or
  `string_match`, neither means "present";
- `grpc: {}` matches `content-type: application/grpc[+...|;...]`.
The per-request path touches no protobuf: plain attributes, tuples and
precompiled regexes. Must not know about actions, vhosts or I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import unquote

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.pb import check_fields
from trellis.routing.regex import Regex, compile_regex


class HeaderLookup(Protocol):
    """A request's header values by lower-case name, repeated ones joined with ",": a
    dict, or the proxy's request head, which finds one name without building a map (a
    route looks up one or two, and a request carries a handful)."""

    def get(self, name: str, /) -> str | None: ...


StringTest = Callable[[str], bool]

_INT = re.compile(r"\s*[+-]?[0-9]+\s*")  # what absl::SimpleAtoi accepts
_STRING_FIELDS = ("exact", "prefix", "suffix", "contains", "safe_regex", "ignore_case")
_HEADER_FIELDS = (
    "name",
    "exact_match",
    "safe_regex_match",
    "range_match",
    "present_match",
    "prefix_match",
    "suffix_match",
    "contains_match",
    "string_match",
    "invert_match",
    "treat_missing_header_as_empty",
)
_MATCH_FIELDS = (
    "prefix",
    "path",
    "safe_regex",
    "path_separated_prefix",
    "case_sensitive",
    "headers",
    "query_parameters",
    "grpc",
)
# Where a header matcher's value comes from: the header mapping, or the request line.
_HEADER, _METHOD, _PATH, _AUTHORITY = 0, 1, 2, 3
_PSEUDO = {":method": _METHOD, ":path": _PATH, ":authority": _AUTHORITY}


# -- strings ------------------------------------------------------------------------------


def _always(_: str) -> bool:
    return True


def string_test(matcher: Any, path: str) -> StringTest:
    """An envoy.type.matcher.v3.StringMatcher as a predicate (ignore_case: not for regexes)."""
    check_fields(matcher, path, applied=_STRING_FIELDS)
    kind = matcher.WhichOneof("match_pattern")
    if kind is None:
        raise RouteConfigError(path, "a string matcher needs exact, prefix, suffix, ...")
    if kind == "safe_regex":
        return regex_test(compile_regex(matcher.safe_regex, field(path, "safe_regex")))
    return literal_test(kind, getattr(matcher, kind), matcher.ignore_case, field(path, kind))


def describe_string(matcher: Any) -> str:
    """A StringMatcher in words, for explanations (`exact "v2"`, `regex "/a.*"`)."""
    kind = matcher.WhichOneof("match_pattern")
    if kind is None:
        return "(nothing)"
    value = matcher.safe_regex.regex if kind == "safe_regex" else getattr(matcher, kind)
    words = "regex" if kind == "safe_regex" else kind
    return f"{words} {value!r}" + (" ignoring case" if matcher.ignore_case else "")


def regex_test(pattern: Regex) -> StringTest:
    """Full match, as RE2 does for Envoy's safe_regex (RE2 itself: regex.py)."""
    return pattern.fullmatch


def literal_test(kind: str, value: str, ignore_case: bool, path: str) -> StringTest:
    """exact / prefix / suffix / contains of `value`, optionally ASCII case-insensitive."""
    if kind in ("prefix", "suffix", "contains") and not value:
        raise RouteConfigError(path, f"a {kind} match needs a non-empty value")
    if ignore_case:
        v = value.lower()
        tests: dict[str, StringTest] = {
            "exact": lambda s: s.lower() == v,
            "prefix": lambda s: s[: len(v)].lower() == v,
            "suffix": lambda s: len(s) >= len(v) and s[len(s) - len(v) :].lower() == v,
            "contains": lambda s: v in s.lower(),
        }
    else:
        tests = {
            "exact": lambda s: s == value,
            "prefix": lambda s: s.startswith(value),
            "suffix": lambda s: s.endswith(value),
            "contains": lambda s: value in s,
        }
    return tests[kind]


# -- headers ------------------------------------------------------------------------------


class HeaderMatcher:
    """One compiled envoy.config.route.v3.HeaderMatcher."""

    __slots__ = ("invert", "name", "present", "source", "test", "text", "treat_missing_as_empty")

    def __init__(
        self,
        name: str,
        test: StringTest | None,
        *,
        present: bool = True,
        invert: bool = False,
        treat_missing_as_empty: bool = False,
        text: str = "",
    ) -> None:
        self.name = name
        self.text = text or name  # the matcher in words, for explanations
        self.source = _PSEUDO.get(name, _HEADER)
        self.test = test  # None: a presence match, whose answer is `present`
        self.present = present
        self.invert = invert
        self.treat_missing_as_empty = treat_missing_as_empty

    def matches(self, value: str | None) -> bool:
        """Envoy's HeaderUtility::matchHeaders for one header value (None: absent)."""
        if value is None:
            if not self.treat_missing_as_empty:
                return self.test is None and self.present == self.invert
            value = ""
        matched = self.present if self.test is None else self.test(value)
        return matched != self.invert

    def matches_request(
        self, method: str, path: str, authority: str, headers: HeaderLookup
    ) -> bool:
        source = self.source
        if source == _HEADER:
            return self.matches(headers.get(self.name))
        return self.matches(method if source == _METHOD else path if source == _PATH else authority)

    def value(self, method: str, path: str, authority: str, headers: HeaderLookup) -> str | None:
        """The value `matches_request` tests (None: absent), for explanations."""
        source = self.source
        if source == _HEADER:
            return headers.get(self.name)
        return method if source == _METHOD else path if source == _PATH else authority

    def __repr__(self) -> str:
        return f"HeaderMatcher({self.name!r}, invert={self.invert})"


def compile_header(matcher: Any, path: str) -> HeaderMatcher:
    check_fields(matcher, path, applied=_HEADER_FIELDS)
    name = matcher.name.lower()
    if not name:
        raise RouteConfigError(field(path, "name"), "a header matcher needs a name")
    kind = matcher.WhichOneof("header_match_specifier")
    where = field(path, kind or "name")
    test: StringTest | None = None
    present = True
    if kind == "string_match":
        test = string_test(matcher.string_match, where)
        words = describe_string(matcher.string_match)
    elif kind == "exact_match":
        value = matcher.exact_match
        test = _always if not value else literal_test("exact", value, False, where)
        words = f"exact {value!r}" if value else "present"
    elif kind in ("prefix_match", "suffix_match", "contains_match"):
        test = literal_test(kind.removesuffix("_match"), getattr(matcher, kind), False, where)
        words = f"{kind.removesuffix('_match')} {getattr(matcher, kind)!r}"
    elif kind == "safe_regex_match":
        test = regex_test(compile_regex(matcher.safe_regex_match, where))
        words = f"regex {matcher.safe_regex_match.regex!r}"
    elif kind == "range_match":
        test = _range_test(matcher.range_match.start, matcher.range_match.end)
        words = f"in [{matcher.range_match.start}, {matcher.range_match.end})"
    elif kind == "present_match":
        present = matcher.present_match
        words = "present" if present else "absent"
    else:
        words = "present"
    text = f"{name} {words}"
    if matcher.invert_match:
        text = f"not ({text})"
    if matcher.treat_missing_header_as_empty:
        text += " (missing read as empty)"
    return HeaderMatcher(
        name,
        test,
        present=present,
        invert=matcher.invert_match,
        treat_missing_as_empty=matcher.treat_missing_header_as_empty,
        text=text,
    )


def _range_test(start: int, end: int) -> StringTest:
    def test(value: str) -> bool:
        return _INT.fullmatch(value) is not None and start <= int(value) < end

    return test


# -- query parameters ---------------------------------------------------------------------


def parse_query(query: str) -> dict[str, str]:
    """`a=1&b&a=2` → {"a": "1", "b": ""}: names and values percent-decoded, first value wins.

    `+` stays `+` and malformed escapes stay as they are, as in Envoy's
    parseAndDecodeQueryString.
    """
    out: dict[str, str] = {}
    for piece in query.split("&"):
        if not piece:
            continue
        name, _, value = piece.partition("=")
        name = unquote(name) if "%" in name else name
        if name not in out:
            out[name] = unquote(value) if "%" in value else value
    return out


class QueryMatcher:
    """One compiled envoy.config.route.v3.QueryParameterMatcher."""

    __slots__ = ("name", "present", "test", "text")

    def __init__(
        self, name: str, test: StringTest | None, present: bool = True, text: str = ""
    ) -> None:
        self.name = name
        self.test = test
        self.present = present
        self.text = text or f"{name} present"  # the matcher in words, for explanations

    def matches(self, query: Mapping[str, str]) -> bool:
        value = query.get(self.name)
        if value is None:
            return False
        return self.present if self.test is None else self.test(value)

    def __repr__(self) -> str:
        return f"QueryMatcher({self.name!r})"


def compile_query(matcher: Any, path: str) -> QueryMatcher:
    check_fields(matcher, path, applied=("name", "string_match", "present_match"))
    if not matcher.name:
        raise RouteConfigError(field(path, "name"), "a query parameter matcher needs a name")
    kind = matcher.WhichOneof("query_parameter_match_specifier")
    if kind == "string_match":
        test = string_test(matcher.string_match, field(path, kind))
        text = f"{matcher.name} {describe_string(matcher.string_match)}"
        return QueryMatcher(matcher.name, test, text=text)
    if kind == "present_match":
        words = "present" if matcher.present_match else "absent (never matches)"
        return QueryMatcher(matcher.name, None, matcher.present_match, f"{matcher.name} {words}")
    return QueryMatcher(matcher.name, None)


# -- paths --------------------------------------------------------------------------------


def path_end(path: str) -> int:
    """Where the path of a request target ends: at its query (`?`) or fragment (`#`)."""
    q = path.find("?")
    h = path.find("#", 0, q if q >= 0 else len(path))
    if h >= 0:
        return h
    return q if q >= 0 else len(path)


def compile_path(match: Any, path: str) -> tuple[StringTest, int | None]:
    """The path predicate of a RouteMatch, and how much of the path a prefix rewrite replaces.

    The length is that of the matched prefix, or None for the whole path
    (exact paths and regexes), as Envoy's prefix_rewrite does.
    """
    kind = match.WhichOneof("path_specifier")
    where = field(path, kind or "path_specifier")
    sensitive = match.case_sensitive.value if match.HasField("case_sensitive") else True
    if kind == "prefix":
        prefix = match.prefix
        test = literal_test("prefix", prefix, not sensitive, where) if prefix else _always
        return test, len(prefix)
    if kind == "path":
        return literal_test("exact", match.path, not sensitive, where), None
    if kind == "safe_regex":
        return regex_test(compile_regex(match.safe_regex, where)), None
    if kind == "path_separated_prefix":
        return _separated_prefix(match.path_separated_prefix, sensitive, where)
    raise RouteConfigError(
        where, "a route needs a prefix, path, safe_regex or path_separated_prefix"
    )


def describe_path(match: Any) -> str:
    """A RouteMatch's path specifier in words, for explanations (`prefix '/api'`)."""
    kind = match.WhichOneof("path_specifier")
    if kind is None:
        return "(no path)"
    value = match.safe_regex.regex if kind == "safe_regex" else getattr(match, kind)
    words = {"safe_regex": "regex", "path": "exact", "path_separated_prefix": "segment prefix"}
    text = f"{words.get(kind, kind)} {value!r}"
    if kind != "safe_regex" and match.HasField("case_sensitive") and not match.case_sensitive.value:
        text += " ignoring case"
    return text


def _separated_prefix(prefix: str, sensitive: bool, path: str) -> tuple[StringTest, int]:
    if not prefix.startswith("/") or prefix.endswith("/") or "?" in prefix or "#" in prefix:
        raise RouteConfigError(
            path, f"{prefix!r}: must start with '/', not end with '/', have no '?' or '#'"
        )
    n = len(prefix)
    want = prefix if sensitive else prefix.lower()

    def test(p: str) -> bool:
        head = p[:n] if sensitive else p[:n].lower()
        return head == want and (len(p) == n or p[n] == "/")

    return test, n


# -- a whole RouteMatch -------------------------------------------------------------------


def is_grpc(headers: HeaderLookup) -> bool:
    """Envoy's Grpc::Common::isGrpcRequestHeaders, on the content-type."""
    ct = headers.get("content-type") or ""
    return ct == "application/grpc" or ct.startswith(("application/grpc+", "application/grpc;"))


class RouteMatcher:
    """A compiled RouteMatch: path, then headers, then query parameters, then gRPC."""

    __slots__ = ("grpc", "headers", "path", "path_text", "prefix_length", "query")

    def __init__(
        self,
        path: StringTest,
        prefix_length: int | None,
        headers: tuple[HeaderMatcher, ...] = (),
        query: tuple[QueryMatcher, ...] = (),
        grpc: bool = False,
        path_text: str = "",
    ) -> None:
        self.path = path
        self.prefix_length = prefix_length  # what a prefix rewrite replaces; None: the path
        self.headers = headers
        self.query = query
        self.grpc = grpc
        self.path_text = path_text  # the path specifier in words, for explanations

    def matches(
        self,
        path: str,
        method: str,
        full_path: str,
        authority: str,
        headers: HeaderLookup,
        query: Mapping[str, str],
    ) -> bool:
        """`path` without its query; `full_path` with it (what `:path` matchers see)."""
        if not self.path(path):
            return False
        for h in self.headers:
            if not h.matches_request(method, full_path, authority, headers):
                return False
        for q in self.query:
            if not q.matches(query):
                return False
        return not self.grpc or is_grpc(headers)

    def mismatch(
        self,
        path: str,
        method: str,
        full_path: str,
        authority: str,
        headers: HeaderLookup,
        query: Mapping[str, str],
    ) -> str | None:
        """Why `matches` refuses the request: the first condition that fails, in the order
        `matches` tests them and with the same compiled tests, in words; None when it
        matches. For explanations only (`matches` is the request path's)."""
        if not self.path(path):
            return f"path {path!r} is not {self.path_text or 'the route path'}"
        for h in self.headers:
            if not h.matches_request(method, full_path, authority, headers):
                value = h.value(method, full_path, authority, headers)
                seen = "absent" if value is None else repr(value)
                return f"header {h.text}: {seen}"
        for q in self.query:
            if not q.matches(query):
                value = query.get(q.name)
                seen = "absent" if value is None else repr(value)
                return f"query parameter {q.text}: {seen}"
        if self.grpc and not is_grpc(headers):
            ct = headers.get("content-type")
            return f"not a gRPC request (content-type {'absent' if ct is None else repr(ct)})"
        return None


def compile_match(match: Any, path: str) -> RouteMatcher:
    """An envoy.config.route.v3.RouteMatch; fields we cannot apply are errors."""
    check_fields(match, path, applied=_MATCH_FIELDS)
    test, prefix_length = compile_path(match, path)
    headers = tuple(compile_header(h, f"{path}.headers[{i}]") for i, h in enumerate(match.headers))
    query = tuple(
        compile_query(q, f"{path}.query_parameters[{i}]")
        for i, q in enumerate(match.query_parameters)
    )
    if match.HasField("grpc"):
        check_fields(match.grpc, field(path, "grpc"), applied=())
    grpc = match.HasField("grpc")
    return RouteMatcher(test, prefix_length, headers, query, grpc, describe_path(match))


def split_target(target: str) -> tuple[str, str]:
    """A request target → (path without query or fragment, raw query string)."""
    end = path_end(target)
    if end == len(target) or target[end] == "#":
        return target[:end], ""
    fragment = target.find("#", end)
    return target[:end], target[end + 1 : fragment if fragment >= 0 else len(target)]
