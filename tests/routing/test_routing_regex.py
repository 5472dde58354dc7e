"""Regexes as Envoy runs them: RE2 full matches, GlobalReplace rewrites, RE2's own syntax,
the program-size limit (refused with the field path, and NACKed by the proxy's config
state), request bytes (latin-1 strings) matched as bytes, and no RE2 without regexes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from envoy.config.route.v3 import route_pb2
from google.protobuf import any_pb2
from google.protobuf.json_format import ParseDict
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.routing.routing_support import forward, matches, only, route_error, select, table

import trellis
from trellis.control.translate import ROUTE_TYPE
from trellis.proxy.config.state import ConfigState
from trellis.routing import Route, RouteConfigError
from trellis.routing.regex import (
    MAX_PROGRAM_SIZE,
    compile_pattern,
    regex_problem,
    substitution_pieces,
    unsupported,
)

R = "virtual_hosts[0].routes[0]"


def wire(text: str) -> str:
    """How the proxy holds a request string sent as UTF-8: its bytes decoded as latin-1."""
    return text.encode().decode("latin-1")


def fullmatch(pattern: str, text: str) -> bool:
    return compile_pattern(pattern, "p").fullmatch(text)


def name_of(route: Route | None) -> str | None:
    return None if route is None else route.name


def rewrite(pattern: str, substitution: str, path: str) -> str:
    regex_rewrite = {"pattern": {"regex": pattern}, "substitution": substitution}
    return only(forward(regex_rewrite=regex_rewrite)).rewrite_path(path)


# -- what stalled a sidecar ---------------------------------------------------------------


@pytest.mark.timeout(60)  # Python's `re` needs ~2**40 steps here: this bound is the failure
def test_nested_quantifiers_answer_at_once_on_a_path_that_does_not_match() -> None:
    t = table(forward({"safe_regex": {"regex": "/(a+)+"}}, name="regex"), forward(name="rest"))
    evil = "/" + "a" * 40 + "!"
    assert name_of(select(t, evil)) == "rest"
    assert name_of(select(t, "/" + "a" * 40)) == "regex"
    header = {"prefix": "/", "headers": [{"name": "x", "safe_regex_match": {"regex": "(a|aa)+"}}]}
    assert not matches(header, "/", headers={"x": "a" * 40 + "!"})
    assert rewrite("(a+)+$", "b", "/" + "a" * 40 + "!") == "/" + "a" * 40 + "!"


# -- full-match semantics -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("/api/[0-9]+", "/api/42", True),
        ("/api/[0-9]+", "/api/42/x", False),  # the whole text, not a prefix
        ("/api/[0-9]+", "/x/api/42", False),  # not a search
        ("/a|/b", "/b", True),  # the alternation is anchored as a whole
        ("a|ab", "ab", True),  # leftmost-first would stop at `a`: a full match must not
        ("(?i)/api", "/API", True),
        ("/a$", "/a", True),
        ("/a.", "/a\n", False),  # `.` is not a newline
        ("(?s)/a.", "/a\n", True),
        ("", "", True),
    ],
)
def test_full_match(pattern: str, text: str, expected: bool) -> None:
    assert fullmatch(pattern, text) is expected


@pytest.mark.parametrize(
    "text",
    [
        "a+?b*?c??",
        "x{2,3}?y{4}",
        "[]a]",
        "[^]a]+",
        "[a\\]b]",
        "(?i:abc)",
        "(?ims)a",
        "(?:a|b)+",
        "\\.\\*\\+",
        "a\\+\\+",
        "[+*?]+",
        "\\d\\w\\s\\b",
        "/[^/]+/(?:Get)",
    ],
)
def test_everyday_syntax_compiles(text: str) -> None:
    assert regex_problem(text) is None and unsupported(text) is None


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("\\p{Greek}+", wire("αβγ")),  # Unicode classes (`\\pL` alone is 1200 instructions)
        ("\\Q.*\\E", ".*"),  # literal text
        ("(?<n>a)b", "ab"),  # named groups, both spellings
        ("(?P<n>a)b", "ab"),
        ("a\\z", "a"),
        ("[[:alpha:]]+", "abc"),  # POSIX classes
        ("(?U)a+", "aa"),  # ungreedy
        ("\\x{41}", "A"),
        ("[a&&b]+", "a&b"),  # `&&` is plain text in RE2
    ],
)
def test_re2_syntax_that_re_lacks_is_accepted(pattern: str, text: str) -> None:
    assert fullmatch(pattern, text)


def test_classes_are_ascii_and_case_folding_is_unicode_as_in_re2() -> None:
    assert fullmatch("\\d+", "123")
    assert not fullmatch("\\d+", "١٢٣".encode().decode("latin-1"))  # not \d in RE2
    assert fullmatch("(?i)é", "É".encode().decode("latin-1"))


# -- request bytes --------------------------------------------------------------------------


def test_request_strings_are_matched_as_their_bytes_with_the_pattern_in_utf8() -> None:
    assert wire("/café") == "/caf\xc3\xa9"
    assert fullmatch("/café", wire("/café"))
    assert fullmatch("/caf.", wire("/café"))  # é is one character, two bytes
    assert not fullmatch("/caf..", wire("/café"))
    assert fullmatch("/caf\\C\\C", wire("/café"))  # \C is one byte
    # A byte that is not UTF-8 (latin-1 é, 0xE9) is no character: only \C matches it.
    assert not fullmatch("/caf.", "/caf\xe9")
    assert not fullmatch("/café", "/caf\xe9")
    assert not fullmatch("/.*", "/caf\xe9")
    assert fullmatch("/caf\\C", "/caf\xe9")
    # A str that cannot be request bytes (chars above U+00FF) is matched as UTF-8.
    assert fullmatch("/→.", "/→é")


def test_non_ascii_paths_through_a_route_table() -> None:
    t = table(forward({"safe_regex": {"regex": "/caf(é|e)/[^/]+"}}, cluster="cafe"))
    assert select(t, wire("/café/menü")) is not None
    assert select(t, "/cafe/x") is not None
    assert select(t, "/caf\xe9/x") is None  # latin-1 é on the wire is not UTF-8 é
    assert select(t, wire("/café/")) is None


# -- substitutions (RE2::GlobalReplace) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "substitution", "path", "rewritten"),
    [
        ("^/v1/(.*)$", "/v2/\\1", "/v1/x/y?q", "/v2/x/y?q"),
        ("o", "0", "/foo/boo", "/f00/b00"),  # every match
        ("^/foo(/.*)?$", "/bar\\1", "/foo", "/bar"),  # a group that took no part: empty
        ("/(a)(b)?", "[\\0|\\1|\\2]", "/a/ab", "[/a|a|][/ab|a|b]"),
        ("a", "\\\\", "/a", "/\\"),  # `\\` is one backslash
        ("^/a", "/b", "/a/a", "/b/a"),  # `^` is the start of the path, not of the rest
        ("x*", "-", "/abxd", "-/-a-b-d-"),  # no empty match right after a match (re: -a-b--d-)
        ("", "-", wire("/é"), wire("-/-é-")),  # steps over a whole UTF-8 character
        ("", "-", "/\xe9", "-/-\xe9-"),  # and over one byte that is none
        ("/é", "/ü", wire("/é/x"), wire("/ü/x")),  # UTF-8 in, UTF-8 out
        ("/x", "/→", "/x", wire("/→")),  # the substitution's bytes, as Envoy writes them
    ],
)
def test_regex_rewrite_replaces_as_re2(
    pattern: str, substitution: str, path: str, rewritten: str
) -> None:
    assert rewrite(pattern, substitution, path) == rewritten


def test_redirect_and_hash_policy_rewrites_use_the_same_substitution() -> None:
    redirect = {
        "match": {"prefix": "/"},
        "redirect": {
            "regex_rewrite": {"pattern": {"regex": "^/old/(.*)$"}, "substitution": "/new/\\1"}
        },
    }
    action = only(redirect).action
    assert action.location("http", "a", "/old/x?q") == "http://a/new/x?q"  # type: ignore[attr-defined]
    hashed = forward(
        hash_policy=[
            {
                "header": {
                    "header_name": "x-user",
                    "regex_rewrite": {"pattern": {"regex": "-[0-9]+$"}, "substitution": ""},
                }
            }
        ]
    )
    (policy,) = only(hashed).hash_policies
    assert policy.key({"x-user": "alice-42"}) == "alice"


def test_substitution_syntax() -> None:
    assert substitution_pieces("/x\\1/\\0", 1, "p") == (b"/x", 1, b"/", 0)
    assert substitution_pieces("a\\\\b", 0, "p") == (b"a\\b",)
    assert substitution_pieces("é", 0, "p") == ("é".encode(),)
    with pytest.raises(RouteConfigError, match="group \\\\2"):
        substitution_pieces("\\2", 1, "p")
    with pytest.raises(RouteConfigError, match="must be followed by a digit"):
        substitution_pieces("\\n", 0, "p")
    with pytest.raises(RouteConfigError, match="must be followed by a digit"):
        substitution_pieces("trailing\\", 0, "p")


# -- invalid regexes: RE2 decides, the error says why ---------------------------------------------


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("a(?=b)", "lookahead"),
        ("a(?!b)", "negative lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("(?<!a)b", "negative lookbehind"),
        ("(a)\\1", "backreferences"),
        ("(?P<x>a)(?P=x)", "named backreference"),
        ("(a)?(?(1)b|c)", "conditional"),
        ("(?>ab)", "atomic group"),
        ("a(?#note)", "comment"),
        ("a++", "possessive"),
        ("a*+", "possessive"),
        ("a{2}+", "possessive"),
        ("abc\\Z", "\\Z"),
        ("(?x)a b", "inline flags"),
        ("(?u)a", "inline flags"),
        ("(a", "missing )"),
        ("[a", "missing ]"),
        ("a{1001}", "repetition"),  # RE2's own limit on counts
        ("[[:foo:]]", "invalid character class"),
    ],
)
def test_what_re2_refuses_is_refused_with_its_reason(text: str, why: str) -> None:
    with pytest.raises(RouteConfigError) as info:
        compile_pattern(text, "p")
    assert info.value.path == "p"
    assert info.value.reason.startswith(f"bad regex {text!r}: ")
    assert why in info.value.reason


def test_hints_name_only_what_re2_lacks() -> None:
    assert unsupported("[(?=]a") is None  # inside a class
    assert unsupported("\\(?=a\\)") is None  # escaped
    assert unsupported("[[:alpha:]](?i)a+?b{2}?") is None


# -- the program-size limit -------------------------------------------------------------------

AT_LIMIT = "/" + "a" * (MAX_PROGRAM_SIZE - 5)  # RE2 counts 5 instructions besides the literal
OVER = AT_LIMIT + "a"


def test_the_limit_is_the_program_size_re2_reports() -> None:
    assert compile_pattern(AT_LIMIT, "p").program_size == MAX_PROGRAM_SIZE
    assert regex_problem(AT_LIMIT) is None
    reason = f"regex program size {MAX_PROGRAM_SIZE + 1} exceeds the limit {MAX_PROGRAM_SIZE}"
    assert regex_problem(OVER) == reason
    with pytest.raises(RouteConfigError) as info:
        compile_pattern(OVER, "p")
    assert info.value.reason.endswith(reason)
    assert f"({len(OVER)} characters)" in info.value.reason  # not the whole regex
    # Size is not length: a short regex can be over.
    assert regex_problem("[a-z]{1,500}") is not None


BIG = {"regex": OVER}
SUB = {"pattern": BIG, "substitution": ""}


@pytest.mark.parametrize(
    ("route", "where"),
    [
        (forward({"safe_regex": BIG}), "match.safe_regex"),
        (
            forward({"prefix": "/", "headers": [{"name": "x", "safe_regex_match": BIG}]}),
            "match.headers[0].safe_regex_match",
        ),
        (
            forward(
                {"prefix": "/", "headers": [{"name": "x", "string_match": {"safe_regex": BIG}}]}
            ),
            "match.headers[0].string_match.safe_regex",
        ),
        (
            forward(
                {
                    "prefix": "/",
                    "query_parameters": [{"name": "q", "string_match": {"safe_regex": BIG}}],
                }
            ),
            "match.query_parameters[0].string_match.safe_regex",
        ),
        (forward(regex_rewrite=SUB), "route.regex_rewrite.pattern"),
        (
            forward(hash_policy=[{"header": {"header_name": "x", "regex_rewrite": SUB}}]),
            "route.hash_policy[0].header.regex_rewrite.pattern",
        ),
        (
            {"match": {"prefix": "/"}, "redirect": {"regex_rewrite": SUB}},
            "redirect.regex_rewrite.pattern",
        ),
    ],
)
def test_every_regex_field_is_refused_over_the_limit_with_its_path(
    route: dict[str, Any], where: str
) -> None:
    err = route_error(route)
    assert err.path == f"{R}.{where}"
    assert "exceeds the limit" in err.reason


def test_the_proxy_nacks_a_route_config_with_a_regex_over_the_limit() -> None:
    """Config from any control plane: the sidecar's xDS state refuses it and keeps the last."""
    state = ConfigState()

    def response(version: str, regex: str) -> str | None:
        doc = {
            "name": "web:80",
            "virtual_hosts": [
                {
                    "name": "web",
                    "domains": ["*"],
                    "routes": [forward({"safe_regex": {"regex": regex}})],
                }
            ],
        }
        resource = any_pb2.Any()
        resource.Pack(ParseDict(doc, route_pb2.RouteConfiguration()))
        return state.on_response(ROUTE_TYPE, version, [resource], {})

    assert response("1", "/(a+)+") is None
    reason = response("2", OVER)
    assert reason is not None
    assert f"{R}.match.safe_regex" in reason and "exceeds the limit" in reason
    assert state.versions[ROUTE_TYPE] == "1"


# -- the literal prefix checked before RE2 ----------------------------------------------------

PATTERNS = [
    "/foo(/.*)?",
    "/fo[o0](/.*)?",
    "(?i)/foo/k",
    "(?i)/\u017f",  # long s folds to s and S: two bytes, one byte
    "/a|/ab|/b",
    "(?:/api)?/x",
    "/(a+)+",
    "/x{2,3}y*",
    "^/foo$",
    "/é.",
    ".*/z",
    "\\b/x",
    "/[^/]+/(?:Get|Put)",
    "",
]
TEXTS = st.text(alphabet=st.sampled_from("/fo0kKSsxyzabp\u212a\xc3\xa9\xc5\xbf\u017f"), max_size=8)


@settings(max_examples=400)
@given(st.sampled_from(PATTERNS), TEXTS)
def test_the_prefix_check_never_changes_an_answer(pattern: str, text: str) -> None:
    import re2  # type: ignore[import-untyped]

    data = text.encode("latin-1") if max(text, default="\0") <= "\xff" else text.encode()
    expected = re2.fullmatch(pattern.encode(), data) is not None
    assert compile_pattern(pattern, "p").fullmatch(text) is expected


@pytest.mark.parametrize(
    ("pattern", "text", "expected"),
    [
        ("(?i)/foo/k", wire("/FOO/\u212a"), True),  # Kelvin sign: three bytes for a `k`
        ("(?i)/\u017f", "/S", True),
        ("(?i)/s", wire("/\u017f"), True),
        ("/foo(/.*)?", "/foo", True),
        ("/foo(/.*)?", "/fo", False),
        ("/foo(/.*)?", "/web/foo", False),
        ("(?:/api)?/x", "/x", True),
    ],
)
def test_the_prefix_check_on_known_cases(pattern: str, text: str, expected: bool) -> None:
    assert compile_pattern(pattern, "p").fullmatch(text) is expected


@given(st.text(max_size=30))
def test_any_text_compiles_or_fails_with_a_route_config_error(text_: str) -> None:
    unsupported(text_)
    try:
        compile_pattern(text_, "p")
    except RouteConfigError as e:
        assert e.path == "p"


# -- no RE2 without regexes ---------------------------------------------------------------------


def test_a_config_without_regexes_never_loads_re2() -> None:
    """Not at import, not to compile or route: only the first regex loads it."""
    script = """
import sys
from tests.routing.routing_support import forward, select, table
t = table(forward({"prefix": "/api"}), forward({"path": "/x"}), forward())
assert select(t, "/api/1") is not None and select(t, "/y") is not None
assert "re2" not in sys.modules, "re2 loaded without a regex"
table(forward({"safe_regex": {"regex": "/a.*"}}))
assert "re2" in sys.modules
"""
    root = Path(__file__).resolve().parents[2]
    src = str(Path(trellis.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, str(root)])}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
