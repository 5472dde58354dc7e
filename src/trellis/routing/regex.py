"""Regular expressions with Envoy's semantics on Python's `re`, compiled once per config.

Envoy (and grpcio's xDS client) evaluate `safe_regex` with RE2 and *full-match*
semantics: the regex must match the whole path or header value. We use
`pattern.fullmatch(...)` for matchers and `pattern.sub(...)` (RE2's
GlobalReplace: every non-overlapping match) for `regex_rewrite`.

RE2 and `re` differ; what we do about it:
- Constructs RE2 rejects but `re` accepts (lookaround, backreferences,
  conditionals, atomic groups, possessive quantifiers, comments, `\\Z`, the
  `a`/`L`/`u`/`x`/`U` inline flags — `(?U)` even means something else in RE2)
  are rejected here too, so a config Envoy would NACK is NACKed by us.
- Constructs RE2 accepts but `re` does not (`\\pL`, `\\Q...\\E`, `\\z`,
  `(?<name>...)`, POSIX classes `[[:alpha:]]`, `\\x{...}`) fail to compile and are
  rejected: we may refuse a valid RE2 regex, never silently match differently.
- Patterns compile with `re.ASCII`, so `\\d`, `\\w`, `\\s` and `\\b` are ASCII as in
  RE2 (RE2's `(?i)` folds Unicode case, ours only ASCII).
- Substitutions use RE2's syntax: `\\0`..`\\9` name groups and `\\\\` is a
  backslash; anything else after a backslash is an error. A group the pattern
  does not have is an error, as in RE2.
- Empty matches right after a non-empty one are replaced by `re.sub` but not by
  RE2's GlobalReplace (`x*` over `abxd`); configs that rely on this are rare.
No I/O; must not know about routes, only about regex text.
"""

from __future__ import annotations

import re
import warnings
from typing import Any

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.pb import check_fields

# `(?` prefixes RE2 does not support, and what to call them in the NACK.
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
_RE2_FLAGS = frozenset("ims-")
_REPEAT = re.compile(r"\{[0-9]*(?:,[0-9]*)?\}")


def re2_problem(text: str) -> str | None:
    """Why RE2 would reject `text` although `re` accepts it, or None."""
    i, n = 0, len(text)
    after_quantifier = False
    while i < n:
        c = text[i]
        if c == "\\":
            nxt = text[i + 1 : i + 2]
            if nxt in ("1", "2", "3", "4", "5", "6", "7", "8", "9"):
                return "backreferences are not supported by RE2"
            if nxt == "Z":
                return "RE2 has no \\Z (use $)"
            i, after_quantifier = i + 2, False
        elif c == "[":
            i, problem = _skip_class(text, i)
            if problem is not None:
                return problem
            after_quantifier = False
        elif c == "(" and text.startswith("(?", i):
            for prefix, what in _UNSUPPORTED_GROUPS:
                if text.startswith(prefix, i):
                    return f"{what} is not supported by RE2"
            flags = _FLAGS.match(text, i)
            if flags is not None and not set(flags.group(1)) <= _RE2_FLAGS:
                return f"inline flags {flags.group(1)!r}: RE2 supports only i, m and s"
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


def _skip_class(text: str, start: int) -> tuple[int, str | None]:
    """The index just past the character class opening at `start`, and what RE2 would reject.

    `re` reads `[` and doubled `&&`, `--`, `~~`, `||` inside a class differently
    from RE2 (POSIX classes, future set operations) and only warns, once per
    process, so they are refused here, deterministically.
    """
    i = start + 1
    if text.startswith("^", i):
        i += 1
    if text.startswith("]", i):
        i += 1
    while i < len(text):
        c = text[i]
        if c == "\\":
            i += 2
            continue
        if c == "]":
            return i + 1, None
        if c == "[":
            return i, "'[' inside a character class (POSIX classes) is not supported"
        if c in "&-~|" and text.startswith(c + c, i):
            return i, f"{c + c!r} inside a character class is ambiguous: escape it"
        i += 1
    return i, None


def compile_pattern(text: str, path: str) -> re.Pattern[str]:
    """Compile RE2 text with `re`, or raise a RouteConfigError at `path`."""
    problem = re2_problem(text)
    if problem is not None:
        raise RouteConfigError(path, f"bad regex {text!r}: {problem}")
    with warnings.catch_warnings():
        # `re` warns about constructs it reads differently from RE2 (`[[:alpha:]]`).
        warnings.simplefilter("error")
        try:
            return re.compile(text, re.ASCII)
        except (re.error, FutureWarning, DeprecationWarning) as e:
            raise RouteConfigError(path, f"bad regex {text!r}: {e}") from None


def compile_regex(matcher: Any, path: str) -> re.Pattern[str]:
    """An envoy.type.matcher.v3.RegexMatcher (the `google_re2` engine options are ignored)."""
    check_fields(matcher, path, applied=("regex",), ignored=("google_re2",))
    return compile_pattern(matcher.regex, path)


def python_template(substitution: str, groups: int, path: str) -> str:
    """RE2 rewrite text (`\\1`, `\\\\`) as an `re.sub` template."""
    out: list[str] = []
    i = 0
    while i < len(substitution):
        c = substitution[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = substitution[i + 1 : i + 2]
        if nxt == "\\":
            out.append("\\\\")
        elif nxt and nxt in "0123456789":
            if int(nxt) > groups:
                raise RouteConfigError(
                    path, f"substitution uses group \\{nxt} but the pattern has {groups} group(s)"
                )
            out.append(f"\\g<{nxt}>")
        else:
            raise RouteConfigError(
                path, "in a substitution, '\\' must be followed by a digit or '\\'"
            )
        i += 2
    return "".join(out)


class RegexRewrite:
    """`pattern` → `substitution` over every match (RE2 GlobalReplace), built once."""

    __slots__ = ("_template", "pattern", "substitution")

    def __init__(self, pattern: re.Pattern[str], substitution: str, template: str) -> None:
        self.pattern = pattern
        self.substitution = substitution  # as configured (RE2 syntax)
        self._template = template

    def apply(self, text: str) -> str:
        return self.pattern.sub(self._template, text)

    def __repr__(self) -> str:
        return f"RegexRewrite({self.pattern.pattern!r}, {self.substitution!r})"


def compile_rewrite(message: Any, path: str) -> RegexRewrite:
    """An envoy.type.matcher.v3.RegexMatchAndSubstitute."""
    check_fields(message, path, applied=("pattern", "substitution"))
    if not message.HasField("pattern"):
        raise RouteConfigError(field(path, "pattern"), "a regex rewrite needs a pattern")
    pattern = compile_regex(message.pattern, field(path, "pattern"))
    template = python_template(message.substitution, pattern.groups, field(path, "substitution"))
    return RegexRewrite(pattern, message.substitution, template)
