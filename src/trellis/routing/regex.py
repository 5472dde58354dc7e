"""Regular expressions as Envoy runs them: RE2 (google-re2), compiled once per config.

Envoy (and grpcio's xDS client) evaluate `safe_regex` with RE2, so do we: the
time to match is linear in the text (a route `/(a+)+` costs microseconds on
any path, where Python's `re` backtracks for seconds), and RE2 alone decides
which patterns are valid.
- Matchers use *full-match* semantics (RE2::FullMatch): the regex must match
  the whole path or header value.
- `regex_rewrite` replaces every non-overlapping match, as RE2::GlobalReplace
  (Envoy's replaceAll): `\\0`..`\\9` name groups and `\\\\` is a backslash;
  anything else after a backslash, or a group the pattern does not have, is
  refused at config time. An empty match right after a match is skipped.
- Text: request paths and header values reach us as their bytes decoded as
  latin-1 (one char per byte, as the proxy reads them); they are matched as
  those bytes, with the pattern and the substitution in UTF-8 (RE2's default,
  as Envoy). So `/café` matches the UTF-8 bytes of `café`, and a byte that is
  not UTF-8 matches no `.` or class (only `\\C`). A str with chars above
  U+00FF cannot come from the wire (tests, tools) and is matched as UTF-8.
- Program size: RE2's count of instructions, the factor of the text length in
  the matching time. A regex whose program is larger than MAX_PROGRAM_SIZE is
  refused, here (the proxy NACKs it, whichever control plane sent it) and
  when a route is applied (trellis.model.routes), with the same constant.

Per request, a regex route costs one latin-1 encode, a `startswith` of the
literal prefix every match must have (RE2's PossibleMatchRange), and, when
that passes, one RE2 call. `google-re2` is imported by the first regex
compiled: a config without regexes never loads it. No I/O; must not know
about routes, only about regex text.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.pb import check_fields

# The largest RE2 program (ProgramSize(), Envoy's `re2.max_program_size.error_level`)
# we accept. Envoy's default is 100; that refuses ordinary regexes (two UUIDs in a path:
# 155, `\pN`: 238, any PathPrefix over ~90 characters as a segment regex) and Envoy
# control planes raise it (ESPv2 1000, Istio 32768, Kuma and Contour unlimited). RE2
# is linear, but the factor is the program: a DFA-hostile regex (`[ab]*a[ab]{k}...`)
# falls back to the NFA at ~7 ns per instruction per byte on our machine, so 1000
# bounds one evaluation to ~7 ms on a 1 KB path and ~0.4 s on the largest request line
# the proxy reads (60 KB); Istio's 32768 would allow ~14 s.
MAX_PROGRAM_SIZE = 1000
# How much of the literal prefix every match must start with is checked in Python
# before calling RE2 (a segment-prefix route `/api(/.*)?` refuses `/web/...` for the
# price of a `startswith`).
_PREFIX_LENGTH = 64

# What RE2 refuses that people write for other engines, to say why in the error.
_UNSUPPORTED_GROUPS = (
    ("(?=", "lookahead"),
    ("(?!", "negative lookahead"),
    ("(?<=", "lookbehind"),
    ("(?<!", "negative lookbehind"),
    ("(?P=", "a named backreference"),
    ("(?(", "a conditional group"),
    ("(?>", "an atomic group"),
    ("(?#", "a comment group"),
)
_FLAGS = re.compile(r"\(\?([A-Za-z-]+)[:)]")
_RE2_FLAGS = frozenset("imsU-")
_REPEAT = re.compile(r"\{[0-9]*(?:,[0-9]*)?\}")
_POSIX_CLASS = re.compile(r"\[:\^?[a-z]+:\]")


@functools.cache
def _engine() -> Any:
    """google-re2's pybind11 module, loaded on first use (it has no type stubs)."""
    import re2  # type: ignore[import-untyped]

    return re2


def _options(re2: Any) -> Any:
    options = re2.Options()  # RE2's defaults (UTF-8, 8 MiB), as Envoy's RE2::Quiet
    options.log_errors = False  # the error is ours to report, not RE2's to print
    return options


def wire_bytes(text: str) -> bytes:
    """The bytes a request string stands for (latin-1: one char per byte), else UTF-8."""
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return text.encode()


def _program(text: str) -> tuple[Any, str | None]:
    """RE2's program for `text`, or None and why RE2 (or the size limit) refuses it."""
    re2 = _engine()
    try:
        pattern = text.encode()
    except UnicodeEncodeError:
        return None, "the pattern is not valid Unicode"
    program = re2._re2.RE2(pattern, _options(re2))
    if not program.ok():
        error = program.error().decode("utf-8", "replace")
        hint = unsupported(text)
        return None, f"{error} ({hint})" if hint else error
    size = program.ProgramSize()
    if size > MAX_PROGRAM_SIZE:
        return None, f"regex program size {size} exceeds the limit {MAX_PROGRAM_SIZE}"
    return program, None


def regex_problem(text: str) -> str | None:
    """Why `text` is not a regex the proxies accept (RE2 syntax, program size), or None."""
    return _program(text)[1]


def shown(text: str) -> str:
    """A regex as an error message quotes it: whole when short, else its start and length."""
    return repr(text) if len(text) <= 80 else f"{text[:60]!r}... ({len(text)} characters)"


def unsupported(text: str) -> str | None:
    """Which construct of other engines in `text` RE2 lacks, for an error message, or None.

    Only a hint: RE2 itself decides what is valid.
    """
    i, n = 0, len(text)
    after_quantifier = False
    while i < n:
        c = text[i]
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt in ("1", "2", "3", "4", "5", "6", "7", "8", "9"):
                return "backreferences are not supported by RE2"
            if nxt == "Z":
                return "RE2 has no \\Z (use \\z or $)"
            i, after_quantifier = i + 2, False
        elif c == "[":
            i, after_quantifier = _class_end(text, i), False
        elif c == "(" and text.startswith("(?", i):
            for prefix, what in _UNSUPPORTED_GROUPS:
                if text.startswith(prefix, i):
                    return f"{what} is not supported by RE2"
            flags = _FLAGS.match(text, i)
            if flags is not None and not set(flags.group(1)) <= _RE2_FLAGS:
                return f"inline flags {flags.group(1)!r}: RE2 supports only i, m, s and U"
            i, after_quantifier = i + 2, False
        elif c in "*+?":
            if after_quantifier and c == "+":
                return "possessive quantifiers are not supported by RE2"
            # `?` after a quantifier makes it lazy; nothing may follow that.
            after_quantifier = not (after_quantifier and c == "?")
            i += 1
        elif c == "{" and (repeat := _REPEAT.match(text, i)) is not None:
            i, after_quantifier = repeat.end(), True
        else:
            i, after_quantifier = i + 1, False
    return None


def _class_end(text: str, start: int) -> int:
    """The index just past the character class opening at `start`."""
    i = start + 1
    if text.startswith("^", i):
        i += 1
    if text.startswith("]", i):
        i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
        elif c == "]":
            return i + 1
        elif (posix := _POSIX_CLASS.match(text, i)) is not None:
            i = posix.end()  # `[[:alpha:]]`
        else:
            i += 1
    return i


class Regex:
    """One compiled regex: `fullmatch(text)` as RE2::FullMatch, built once per config."""

    __slots__ = ("_anchor", "_prefix", "_program", "groups", "pattern", "program_size")

    def __init__(self, program: Any, pattern: str) -> None:
        self.pattern = pattern
        self._program = program
        self._anchor = _engine()._re2.RE2.Anchor.ANCHOR_BOTH
        self.groups: int = program.NumberOfCapturingGroups()
        self.program_size: int = program.ProgramSize()
        self._prefix = _required_prefix(program)

    def fullmatch(self, text: str) -> bool:
        data = wire_bytes(text)
        if not data.startswith(self._prefix):
            return False
        return bool(self._program.Match(self._anchor, data, 0, len(data))[0][0] >= 0)

    def __repr__(self) -> str:
        return f"Regex({self.pattern!r})"


def _required_prefix(program: Any) -> bytes:
    """Bytes every full match starts with: the common prefix of RE2's PossibleMatchRange
    (every match s has min <= s <= max, so it starts with what min and max share)."""
    ok, low, high = program.PossibleMatchRange(_PREFIX_LENGTH)
    if not ok:
        return b""
    n = 0
    for a, b in zip(low, high, strict=False):
        if a != b:
            break
        n += 1
    return bytes(low[:n])


def compile_pattern(text: str, path: str) -> Regex:
    """Compile RE2 text, or raise a RouteConfigError at `path` (syntax, program size)."""
    program, problem = _program(text)
    if problem is not None:
        raise RouteConfigError(path, f"bad regex {shown(text)}: {problem}")
    return Regex(program, text)


def compile_regex(matcher: Any, path: str) -> Regex:
    """An envoy.type.matcher.v3.RegexMatcher (the `google_re2` engine options are ignored:
    the program size is limited by MAX_PROGRAM_SIZE, as Envoy's runtime limit)."""
    check_fields(matcher, path, applied=("regex",), ignored=("google_re2",))
    return compile_pattern(matcher.regex, path)


# A substitution, parsed once: literal bytes, and group numbers to copy.
Piece = bytes | int


def substitution_pieces(substitution: str, groups: int, path: str) -> tuple[Piece, ...]:
    """RE2 rewrite text (`\\1`, `\\\\`) as pieces, checked as RE2::CheckRewriteString."""
    out: list[Piece] = []
    literal: list[str] = []
    i = 0
    while i < len(substitution):
        c = substitution[i]
        if c != "\\":
            literal.append(c)
            i += 1
            continue
        nxt = substitution[i + 1 : i + 2]
        if nxt == "\\":
            literal.append("\\")
        elif nxt and nxt in "0123456789":
            if int(nxt) > groups:
                raise RouteConfigError(
                    path, f"substitution uses group \\{nxt} but the pattern has {groups} group(s)"
                )
            if literal:
                out.append("".join(literal).encode())
                literal = []
            out.append(int(nxt))
        else:
            raise RouteConfigError(
                path, "in a substitution, '\\' must be followed by a digit or '\\'"
            )
        i += 2
    if literal:
        out.append("".join(literal).encode())
    return tuple(out)


class RegexRewrite:
    """`pattern` → `substitution` over every match (RE2::GlobalReplace), built once."""

    __slots__ = ("_anchor", "_pieces", "pattern", "substitution")

    def __init__(self, pattern: Regex, substitution: str, pieces: tuple[Piece, ...]) -> None:
        self.pattern = pattern
        self.substitution = substitution  # as configured (RE2 syntax)
        self._pieces = pieces
        self._anchor = _engine()._re2.RE2.Anchor.UNANCHORED

    def apply(self, text: str) -> str:
        """`text` with every match replaced; the same encoding out as in (see wire_bytes)."""
        try:
            data = text.encode("latin-1")
        except UnicodeEncodeError:
            return self._replace(text.encode()).decode("utf-8", "replace")
        return self._replace(data).decode("latin-1")

    def _replace(self, data: bytes) -> bytes:
        """RE2::GlobalReplace, step for step (re2.cc), over `data`."""
        match = self.pattern._program.Match
        anchor, pieces = self._anchor, self._pieces
        out: list[bytes] = []
        p, end, last_end, count = 0, len(data), -1, 0
        while p <= end:
            spans = match(anchor, data, p, end)
            start, stop = spans[0]
            if start < 0:
                break
            if p < start:
                out.append(data[p:start])
            if start == stop == last_end:
                # No empty match right after the previous match: copy one character.
                n = _char_length(data, p)
                out.append(data[p : p + n])
                p += n if n else 1
                continue
            for piece in pieces:
                if isinstance(piece, int):
                    s, e = spans[piece]
                    if s >= 0:
                        out.append(data[s:e])
                else:
                    out.append(piece)
            p = last_end = stop
            count += 1
        if count == 0:
            return data
        out.append(data[p:])
        return b"".join(out)

    def __repr__(self) -> str:
        return f"RegexRewrite({self.pattern.pattern!r}, {self.substitution!r})"


def _char_length(data: bytes, p: int) -> int:
    """Bytes of the UTF-8 character at `p` (1 for a byte that starts none; 0 at the end),
    as RE2's chartorune steps over them in GlobalReplace."""
    for n in (1, 2, 3, 4):
        if p + n > len(data):
            break
        try:
            data[p : p + n].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            continue
        return n
    return 1 if p < len(data) else 0


def compile_rewrite(message: Any, path: str) -> RegexRewrite:
    """An envoy.type.matcher.v3.RegexMatchAndSubstitute."""
    check_fields(message, path, applied=("pattern", "substitution"))
    if not message.HasField("pattern"):
        raise RouteConfigError(field(path, "pattern"), "a regex rewrite needs a pattern")
    pattern = compile_regex(message.pattern, field(path, "pattern"))
    pieces = substitution_pieces(message.substitution, pattern.groups, field(path, "substitution"))
    return RegexRewrite(pattern, message.substitution, pieces)
