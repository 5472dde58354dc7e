"""Virtual-host selection by authority, with Envoy's domain rules.

Owns the lookup order (Envoy's RouteMatcher::findVirtualHost): an exact
domain; else the longest suffix wildcard (`*.foo.com`, `*-bar.foo.com`); else
the longest prefix wildcard (`foo.*`); else `*`. A wildcard stands for at
least one character (`*.foo.com` does not match `.foo.com`). Matching is
case-insensitive. Domains must be unique across the table and non-empty.

Ports (our decision, documented in the package docstring): when the route
configuration sets `ignore_port_in_host_matching`, or when none of its domains
carries a port, the authority's `:port` is stripped before matching (so
`reviews:9080` finds `reviews`); otherwise the authority is matched as given,
port included, as Envoy does by default (our control plane lists both
spellings, `reviews` and `reviews:9080`). A port is a non-empty run of digits
after the last `:` (after `]` for IPv6 literals).
Must not know about routes beyond "some value per virtual host".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

from trellis.routing.errors import RouteConfigError

T = TypeVar("T")


def port_start(host: str) -> int:
    """Index of the `:` that starts the port of `host`, or -1 (Envoy's getPortStart)."""
    colon = host.rfind(":")
    if colon < 0 or host.rfind("]") > colon:
        return -1
    port = host[colon + 1 :]
    return colon if port.isdigit() and port.isascii() else -1


def strip_port(host: str) -> str:
    i = port_start(host)
    return host if i < 0 else host[:i]


class DomainIndex(Generic[T]):
    """Authority → value, built once; `find` is a dict lookup in the common cases."""

    __slots__ = ("_default", "_exact", "_prefixes", "_strip_port", "_suffixes")

    def __init__(
        self, entries: Sequence[tuple[str, Sequence[str], T]], ignore_port: bool = False
    ) -> None:
        """`entries`: (path of the domains field, domains, value), in config order."""
        exact: dict[str, T] = {}
        suffixes: dict[int, dict[str, T]] = {}
        prefixes: dict[int, dict[str, T]] = {}
        default: T | None = None
        seen: dict[str, str] = {}
        has_port = False
        for path, domains, value in entries:
            if not domains:
                raise RouteConfigError(path, "a virtual host needs at least one domain")
            for i, raw in enumerate(domains):
                where = f"{path}[{i}]"
                domain = raw.lower()
                if not domain:
                    raise RouteConfigError(where, "empty domain")
                if domain in seen:
                    raise RouteConfigError(
                        where, f"duplicate domain {raw!r} (also at {seen[domain]})"
                    )
                seen[domain] = where
                has_port = has_port or port_start(domain) >= 0
                if domain == "*":
                    default = value
                elif domain.startswith("*"):
                    suffixes.setdefault(len(domain) - 1, {})[domain[1:]] = value
                elif domain.endswith("*"):
                    prefixes.setdefault(len(domain) - 1, {})[domain[:-1]] = value
                else:
                    exact[domain] = value
        self._exact = exact
        self._suffixes = tuple(sorted(suffixes.items(), reverse=True))
        self._prefixes = tuple(sorted(prefixes.items(), reverse=True))
        self._default = default
        self._strip_port = ignore_port or not has_port

    @property
    def strips_port(self) -> bool:
        return self._strip_port

    def find(self, authority: str) -> T | None:
        if not self._exact and not self._suffixes and not self._prefixes:
            return self._default
        host = authority.lower()
        if self._strip_port:
            host = strip_port(host)
        found = self._exact.get(host)
        if found is not None:
            return found
        n = len(host)
        for length, table in self._suffixes:
            if length < n:
                found = table.get(host[n - length :])
                if found is not None:
                    return found
        for length, table in self._prefixes:
            if length < n:
                found = table.get(host[:length])
                if found is not None:
                    return found
        return self._default
