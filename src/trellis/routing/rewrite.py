"""Path rewrites shared by forwarding (RouteAction) and redirects (RedirectAction).

Owns Envoy's rules: `prefix_rewrite` replaces what the route matched — the
prefix of a `prefix` / `path_separated_prefix` route, the whole path of a
`path` or `safe_regex` route — and keeps the rest, query included;
`regex_rewrite` rewrites every match in the path without its query, then puts
the query back. Must not know about matching or actions.
"""

from __future__ import annotations

from trellis.routing.matchers import path_end
from trellis.routing.regex import RegexRewrite


class PathRewrite:
    """One of `prefix` or `regex`, built once per route."""

    __slots__ = ("prefix", "prefix_length", "regex")

    def __init__(
        self,
        *,
        prefix: str | None = None,
        prefix_length: int | None = None,
        regex: RegexRewrite | None = None,
    ) -> None:
        self.prefix = prefix
        self.prefix_length = prefix_length  # None: the route matched the whole path
        self.regex = regex

    def apply(self, path: str) -> str:
        """The rewritten request target; `path` may carry a query string, which is kept."""
        end = path_end(path)
        if self.prefix is not None:
            n = end if self.prefix_length is None else min(self.prefix_length, end)
            return self.prefix + path[n:]
        if self.regex is not None:
            return self.regex.apply(path[:end]) + path[end:]
        return path

    def __repr__(self) -> str:
        if self.prefix is not None:
            return f"PathRewrite(prefix={self.prefix!r}, prefix_length={self.prefix_length})"
        return f"PathRewrite(regex={self.regex!r})"
