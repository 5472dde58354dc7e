"""Hash policies for ring-hash load balancing: what part of a request a hash is made of.

Owns which key each RouteAction.HashPolicy takes from a request (a header,
the client's IP, a query parameter, a cookie) and Envoy's `terminal` rule:
once a terminal policy yielded a key, later ones are skipped. Combining the
keys into a hash and picking an endpoint belong to the balancer.
`filter_state` policies (proxyless gRPC's `io.grpc.channel_id`) compile but
never yield a key in the sidecar.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.matchers import HeaderLookup, parse_query, split_target
from trellis.routing.pb import check_fields
from trellis.routing.regex import RegexRewrite, compile_rewrite

HashKind = Literal["header", "source_ip", "query_parameter", "cookie", "filter_state"]


class HashPolicy:
    __slots__ = ("kind", "name", "rewrite", "terminal")

    def __init__(
        self,
        kind: HashKind,
        name: str = "",
        terminal: bool = False,
        rewrite: RegexRewrite | None = None,
    ) -> None:
        self.kind: HashKind = kind
        self.name = name  # header (lower-case), query parameter, cookie or filter-state key
        self.terminal = terminal
        self.rewrite = rewrite  # header policies: applied to the value

    def key(
        self, headers: HeaderLookup, source_ip: str | None = None, path: str = ""
    ) -> str | None:
        """The request's key for this policy, or None when it has none."""
        kind = self.kind
        if kind == "header":
            value = headers.get(self.name)
            if value is not None and self.rewrite is not None:
                value = self.rewrite.apply(value)
            return value
        if kind == "source_ip":
            return source_ip or None
        if kind == "query_parameter":
            return parse_query(split_target(path)[1]).get(self.name)
        if kind == "cookie":
            return _cookie(headers.get("cookie") or "", self.name)
        return None

    def __repr__(self) -> str:
        return f"HashPolicy({self.kind!r}, {self.name!r}, terminal={self.terminal})"


def _cookie(header: str, name: str) -> str | None:
    for part in header.split(";"):
        key, sep, value = part.strip().partition("=")
        if sep and key == name:
            return value
    return None


def hash_keys(
    policies: Sequence[HashPolicy],
    headers: HeaderLookup,
    source_ip: str | None = None,
    path: str = "",
) -> list[str]:
    """The keys to hash, in policy order, stopping after a terminal policy that yielded one."""
    keys: list[str] = []
    for p in policies:
        key = p.key(headers, source_ip, path)
        if key is not None:
            keys.append(key)
            if p.terminal:
                break
    return keys


def compile_hash_policy(policy: Any, path: str) -> HashPolicy:
    """An envoy.config.route.v3.RouteAction.HashPolicy."""
    kind = policy.WhichOneof("policy_specifier")
    check_fields(policy, path, applied=(kind or "", "terminal"))
    where = field(path, kind or "policy_specifier")
    terminal = policy.terminal
    if kind == "header":
        h = policy.header
        check_fields(h, where, applied=("header_name", "regex_rewrite"))
        if not h.header_name:
            raise RouteConfigError(field(where, "header_name"), "empty header name")
        rewrite = (
            compile_rewrite(h.regex_rewrite, field(where, "regex_rewrite"))
            if h.HasField("regex_rewrite")
            else None
        )
        return HashPolicy("header", h.header_name.lower(), terminal, rewrite)
    if kind == "connection_properties":
        check_fields(policy.connection_properties, where, applied=("source_ip",))
        if not policy.connection_properties.source_ip:
            raise RouteConfigError(field(where, "source_ip"), "must be true")
        return HashPolicy("source_ip", "", terminal)
    if kind == "query_parameter":
        check_fields(policy.query_parameter, where, applied=("name",))
        return HashPolicy("query_parameter", policy.query_parameter.name, terminal)
    if kind == "cookie":
        # A `ttl` asks the proxy to mint the cookie: not supported.
        check_fields(policy.cookie, where, applied=("name",))
        return HashPolicy("cookie", policy.cookie.name, terminal)
    if kind == "filter_state":
        check_fields(policy.filter_state, where, applied=("key",))
        return HashPolicy("filter_state", policy.filter_state.key, terminal)
    raise RouteConfigError(where, "a hash policy needs header, connection_properties, ...")
