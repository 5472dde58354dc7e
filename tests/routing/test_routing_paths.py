"""Path normalization (trellis.routing.paths): every option of the HCM's three fields, the
stated policies (escaped slashes, `;`, backslashes, case, trailing dots, the query), and
two properties: the normalizer is idempotent, and no spelling of a protected path escapes
it under the options that claim to protect (the default, and DECODE_AND_MERGE_SLASHES)."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trellis.routing.paths import (
    DEFAULT_OPTIONS,
    KEEP_UNCHANGED,
    REJECT_REQUEST,
    UNCHANGED,
    UNESCAPE_AND_FORWARD,
    UNESCAPE_AND_REDIRECT,
    PathOptions,
    PathRefused,
    normalize_target,
)

# MeshConfig pathNormalization levels, as the control plane translates them.
NONE = UNCHANGED
BASE = PathOptions(normalize=True, merge_slashes=False, escaped_slashes=REJECT_REQUEST)
BASE_KEEP = PathOptions(normalize=True, merge_slashes=False, escaped_slashes=KEEP_UNCHANGED)
MERGE = DEFAULT_OPTIONS
MERGE_KEEP = PathOptions(normalize=True, merge_slashes=True, escaped_slashes=KEEP_UNCHANGED)
DECODE = PathOptions(normalize=True, merge_slashes=True, escaped_slashes=UNESCAPE_AND_FORWARD)
REDIRECT = PathOptions(normalize=True, merge_slashes=True, escaped_slashes=UNESCAPE_AND_REDIRECT)
ALL = [NONE, BASE, BASE_KEEP, MERGE, MERGE_KEEP, DECODE, REDIRECT]

REFUSED = "refused"


def outcome(target: str, options: PathOptions) -> str:
    try:
        return normalize_target(target, options)
    except PathRefused as e:
        assert e.status == 400, e
        return REFUSED


# (target, default (MERGE_SLASHES, escaped slashes refused), DECODE_AND_MERGE_SLASHES)
CASES = [
    # the six spellings of issue 9
    ("/x/../admin", "/admin", "/admin"),
    ("/./admin", "/admin", "/admin"),
    ("/%61dmin", "/admin", "/admin"),
    ("//admin", "/admin", "/admin"),
    ("/admin;x=1", REFUSED, REFUSED),
    ("/\\admin", "/admin", "/admin"),
    # dot segments, RFC 3986 §5.2.4
    ("/a/b/c/./../../g", "/a/g", "/a/g"),
    ("/../admin", "/admin", "/admin"),
    ("/a/..", "/", "/"),
    ("/a/b/..", "/a/", "/a/"),
    ("/a/.", "/a/", "/a/"),
    ("/.", "/", "/"),
    ("/...", "/...", "/..."),  # not a dot segment
    ("/.well-known/x", "/.well-known/x", "/.well-known/x"),
    # percent-encodings: unreserved decoded once, the rest upper-cased
    ("/%2e%2e/admin", "/admin", "/admin"),
    ("/%2E./admin", "/admin", "/admin"),
    ("/%41%7a%30%2D%5f%7E", "/Az0-_~", "/Az0-_~"),
    ("/a%3bb", "/a%3Bb", "/a%3Bb"),
    ("/%c3%a9", "/%C3%A9", "/%C3%A9"),
    ("/%2561dmin", "/%2561dmin", "/%2561dmin"),  # decoded once: %25 is `%`
    ("/%zz", REFUSED, REFUSED),
    ("/%4", REFUSED, REFUSED),
    ("/%", REFUSED, REFUSED),
    ("/%+1", REFUSED, REFUSED),
    ("/a%00b", REFUSED, REFUSED),
    # escaped slashes and backslashes
    ("/admin%2Fx", REFUSED, "/admin/x"),
    ("/admin%2fx", REFUSED, "/admin/x"),
    ("/x%2F..%2Fadmin", REFUSED, "/admin"),
    ("/x%5C..%5Cadmin", REFUSED, "/admin"),
    ("/x%5c%2e%2e%5cadmin", REFUSED, "/admin"),
    ("/x\\..\\admin", "/admin", "/admin"),
    # `;` is refused wherever it is
    ("/public/..;/admin", REFUSED, REFUSED),
    ("/;/admin", REFUSED, REFUSED),
    # slashes
    ("/a//b///c", "/a/b/c", "/a/b/c"),
    ("/a//../b", "/b", "/b"),
    ("/a//", "/a/", "/a/"),
    # what is not normalized
    ("/ADMIN", "/ADMIN", "/ADMIN"),
    ("/admin.", "/admin.", "/admin."),
    ("/admin./x", "/admin./x", "/admin./x"),
    ("/a?q=/../%2F;\\x", "/a?q=/../%2F;\\x", "/a?q=/../%2F;\\x"),
    ("/x/../a?q=%2f", "/a?q=%2f", "/a?q=%2f"),
    ("*", "*", "*"),
    ("", "", ""),
]


@pytest.mark.parametrize(("target", "default", "decode"), CASES)
def test_default_and_decode(target: str, default: str, decode: str) -> None:
    assert outcome(target, MERGE) == default
    assert outcome(target, DECODE) == decode


def test_an_already_normal_target_is_returned_as_it_is() -> None:
    target = "/api/v1/items?x=1&y=%2F"
    for options in ALL:
        assert normalize_target(target, options) is target


def test_none_changes_nothing() -> None:
    for target, _, _ in CASES:
        assert outcome(target, NONE) == target


def test_base_does_not_merge_slashes() -> None:
    assert outcome("//admin", BASE) == "//admin"
    assert outcome("/a//b/./c", BASE) == "/a//b/c"
    assert outcome("/a//..", BASE) == "/a/"  # RFC 3986: `..` removes the empty segment
    assert outcome("/x/../%61dmin", BASE) == "/admin"
    assert outcome("/a%2Fb", BASE) == REFUSED


def test_keep_leaves_escaped_slashes_escaped_and_upper_cased() -> None:
    for options in (BASE_KEEP, MERGE_KEEP):
        assert outcome("/a%2fb%5c", options) == "/a%2Fb%5C"
        assert outcome("/x%2F..%2Fadmin", options) == "/x%2F..%2Fadmin"  # one segment


def test_merge_slashes_without_normalize_only_merges() -> None:
    options = PathOptions(normalize=False, merge_slashes=True, escaped_slashes=KEEP_UNCHANGED)
    assert outcome("//a/./%61//b;c", options) == "/a/./%61/b;c"


def test_escaped_slash_action_without_normalize() -> None:
    reject = PathOptions(normalize=False, merge_slashes=False, escaped_slashes=REJECT_REQUEST)
    assert outcome("/a%2fb", reject) == REFUSED
    assert outcome("/%7a/../%zz", reject) == "/%7a/../%zz"  # nothing else is touched
    unescape = PathOptions(
        normalize=False, merge_slashes=False, escaped_slashes=UNESCAPE_AND_FORWARD
    )
    assert outcome("/a%2fb%5Cc%61", unescape) == "/a/b\\c%61"


def test_unescape_and_redirect_answers_307_only_when_a_slash_was_escaped() -> None:
    with pytest.raises(PathRefused) as info:
        normalize_target("/x%2F..%2Fadmin?q=1", REDIRECT)
    assert info.value.status == 307
    assert info.value.location == "/admin?q=1"
    assert normalize_target("/x/../admin?q=1", REDIRECT) == "/admin?q=1"


def test_refusals_say_why() -> None:
    with pytest.raises(PathRefused) as info:
        normalize_target("/admin;x=1", MERGE)
    assert "`;`" in info.value.reason
    with pytest.raises(PathRefused) as info:
        normalize_target("/a%2Fb", MERGE)
    assert "%2F" in info.value.reason


# -- properties ---------------------------------------------------------------------------

CHARS = "abAZ09-._~/\\%;:@!$&'()*+,=?"
HEXES = ["2e", "2E", "2f", "2F", "5c", "5C", "61", "41", "25", "3b", "00", "7e", "zz", "4"]
raw_paths = st.lists(
    st.one_of(
        st.text(alphabet=CHARS, min_size=1, max_size=4),
        st.sampled_from(["/", "//", "/./", "/../", "/.", "/..", ".."]),
        st.sampled_from(HEXES).map(lambda h: "%" + h),
    ),
    max_size=12,
).map(lambda parts: "/" + "".join(parts))


@settings(max_examples=500)
@given(raw_paths, st.sampled_from(ALL))
@example("/a%2fb%2e%2e", MERGE_KEEP)
@example("/%2e%2", DECODE)
def test_normalizing_is_idempotent(target: str, options: PathOptions) -> None:
    try:
        once = normalize_target(target, options)
    except PathRefused:
        return
    assert normalize_target(once, options) == once


PROTECTED = ["/admin", "/admin/users", "/public/../admin/x"]


def _encode(char: str, upper: bool) -> str:
    code = f"%{ord(char):02x}"
    return code.upper() if upper else code


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, str]:
    """(a protected path in normal form, a spelling of it): letters and dots
    percent-encoded at random, dot segments and detours inserted, slashes doubled, turned
    into backslashes or escaped, path parameters added."""
    protected = draw(st.sampled_from(["/admin", "/admin/users", "/admin/x/y"]))
    out = []
    for i, segment in enumerate(protected.strip("/").split("/")):
        detours = ["", "./", "%2e/", "x/../", "x/%2e%2E/", "x/.%2e/", "a/b/../../"]
        prefix = draw(st.sampled_from([*detours, "../", "%2e%2e/"] if i == 0 else detours))
        spelled = "".join(
            _encode(c, draw(st.booleans())) if draw(st.integers(0, 3)) == 0 else c for c in segment
        )
        params = draw(st.sampled_from(["", "", "", ";x=1", ";"]))
        out.append(prefix + spelled + params)
    separators = st.sampled_from(["/", "/", "//", "\\", "/./", "%2F", "%2f", "%5C", "/\\"])
    path = draw(st.sampled_from(["/", "//", "/\\", "/./", "/%2e/"]))
    for i, part in enumerate(out):
        path += part if i == 0 else draw(separators) + part
    path += draw(st.sampled_from(["", "", "/.", "/x/.."]))
    return protected, path


@settings(max_examples=1000)
@given(spellings(), st.sampled_from([MERGE, DECODE]))
@example(("/admin", "/x/../admin"), MERGE)
@example(("/admin", "/%61dmin"), MERGE)
@example(("/admin", "//admin"), MERGE)
@example(("/admin", "/\\admin"), MERGE)
@example(("/admin/users", "/admin%2Fusers"), DECODE)
def test_no_spelling_of_a_protected_path_escapes(
    case: tuple[str, str], options: PathOptions
) -> None:
    protected, spelling = case
    got = outcome(spelling, options)
    if got == REFUSED:
        return
    trailing = spelling.endswith(("/.", "/x/.."))
    assert got == (protected + "/" if trailing else protected), (spelling, got)


def test_the_fast_path_agrees_with_the_slow_one() -> None:
    """A target without the characters that start the slow path is already normal."""
    for target in ["/", "/a", "/api/v1/items", "/a.b/c-d_e~f", "/a?b=%2F"]:
        for options in ALL:
            assert normalize_target(target, options) == target
