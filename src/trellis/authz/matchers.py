"""Envoy RBAC Permission and Principal trees → one predicate each, compiled once per config.

Owns the semantics of `envoy.config.rbac.v3.Permission` / `Principal`:
- `and_rules`/`and_ids` (all), `or_rules`/`or_ids` (any), `not_rule`/`not_id`,
  `any` (must be true, as Envoy validates); sets need at least one element;
- `header`: a route HeaderMatcher (trellis.routing's, so header semantics are
  the router's); `:method`, `:path` (with the query), `:authority`/`host`
  (aliases, as in Envoy) come from the request view, other names from its
  lower-cased header mapping;
- `url_path`: a PathMatcher's StringMatcher on the path without its query;
- `destination_port` and `destination_port_range` ([start, end));
- `authenticated`: the peer's SPIFFE ID against `principal_name`; no
  `principal_name` means "any authenticated peer"; a peer without a
  certificate (principal "") is never authenticated;
- `source_ip`, `direct_remote_ip`, `remote_ip`: the peer address (the proxy
  trusts no X-Forwarded-For, so the three are the same, as in gRFC A41) in a
  CIDR; an address of the other IP family never matches.
Every other rule (metadata, filter state, destination IP, SNI, CEL,
extensions) is a config error, never silently ignored. String matchers and
regexes (RE2 semantics) are trellis.routing's. Must not know about policies,
actions or I/O; the per-request path touches no protobuf.

Tunnels (CONNECT): the requests inside a tunnel are never seen, so every HTTP
attribute (`header`, `:method` included, and `url_path`) is unknown; the L4
ones (principal, addresses, destination port) are known. A tree is compiled
for them twice more: `SURE` answers True only when it matches whatever the
unknown attributes are (an HTTP leaf is False), `POSSIBLE` when it matches for
some value of them (an HTTP leaf is True); a `not_rule`/`not_id` swaps the two
for its operand, so `SURE` never answers True where `POSSIBLE` answers False.
ALLOW policies match a tunnel when SURE, DENY policies when POSSIBLE: Istio's
semantics for TCP traffic (an ALLOW rule that needs an HTTP attribute does not
match; a DENY rule's HTTP conditions do not spare the traffic).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Sequence
from typing import Any

from trellis.authz.errors import RbacConfigError
from trellis.authz.request import RequestView
from trellis.routing.errors import field
from trellis.routing.matchers import compile_header, string_test
from trellis.routing.pb import check_fields

Predicate = Callable[[RequestView], bool]
Compiler = Callable[[Any, str, int], Predicate]

# How a tree is compiled: for requests, or for tunnels (see the module docstring).
REQUEST, SURE, POSSIBLE = 0, 1, 2
_SWAP = {REQUEST: REQUEST, SURE: POSSIBLE, POSSIBLE: SURE}

# Rules that name something Trellis requests do not have; why, for the NACK.
_UNSUPPORTED = {
    "metadata": "Envoy dynamic metadata does not exist in Trellis",
    "sourced_metadata": "Envoy dynamic metadata does not exist in Trellis",
    "filter_state": "Envoy filter state does not exist in Trellis",
    "destination_ip": "the inbound request view has no destination address",
    "requested_server_name": "the inbound request view has no SNI",
    "matcher": "RBAC matcher extensions are not supported",
    "uri_template": "URI templates are not supported",
    "custom": "custom principal extensions are not supported",
}


# -- combinators --------------------------------------------------------------------------


def _always(_: RequestView) -> bool:
    return True


def _never(_: RequestView) -> bool:
    return False


def all_of(tests: Sequence[Predicate]) -> Predicate:
    if len(tests) == 1:
        return tests[0]
    frozen = tuple(tests)

    # A plain loop: about twice as fast as all() over a generator for a few matchers.
    def test(r: RequestView) -> bool:
        for t in frozen:  # noqa: SIM110
            if not t(r):
                return False
        return True

    return test


def any_of(tests: Sequence[Predicate]) -> Predicate:
    if len(tests) == 1:
        return tests[0]
    frozen = tuple(tests)

    def test(r: RequestView) -> bool:
        for t in frozen:  # noqa: SIM110
            if t(r):
                return True
        return False

    return test


def negate(inner: Predicate) -> Predicate:
    def test(r: RequestView) -> bool:
        return not inner(r)

    return test


# -- leaves shared by permissions and principals ------------------------------------------


def _unknown(mode: int) -> Predicate:
    """An HTTP attribute's leaf in a tunnel: unknown, so False when SURE, True when POSSIBLE."""
    return _never if mode == SURE else _always


def _any(value: bool, path: str, mode: int) -> Predicate:
    if not value:
        raise RbacConfigError(path, "`any` must be true (use not_rule/not_id to match nothing)")
    return _always


def _header(matcher: Any, path: str, mode: int) -> Predicate:
    if mode != REQUEST:
        return _unknown(mode)
    compiled = compile_header(matcher, path)
    matches = compiled.matches
    name = compiled.name
    if name == ":method":
        return lambda r: matches(r.method)
    if name == ":path":
        return lambda r: matches(r.full_path())
    if name in (":authority", "host"):
        return lambda r: matches(r.authority())
    return lambda r: matches(r.headers.get(name))


def _url_path(matcher: Any, path: str, mode: int) -> Predicate:
    if mode != REQUEST:
        return _unknown(mode)
    check_fields(matcher, path, applied=("path",))
    if not matcher.HasField("path"):
        raise RbacConfigError(field(path, "path"), "a path matcher needs a string matcher")
    test = string_test(matcher.path, field(path, "path"))
    return lambda r: test(r.path)


# -- permissions --------------------------------------------------------------------------


def compile_permission(permission: Any, path: str, mode: int = REQUEST) -> Predicate:
    """An envoy.config.rbac.v3.Permission; unsupported rules raise RbacConfigError. The
    tunnel modes (SURE, POSSIBLE) assume the tree compiled for requests first."""
    kind = permission.WhichOneof("rule")
    if kind is None:
        raise RbacConfigError(path, "a permission needs a rule (and_rules, header, any, ...)")
    where = field(path, kind)
    compiler = _PERMISSION.get(kind)
    if compiler is None:
        raise RbacConfigError(where, _UNSUPPORTED.get(kind, "not supported by the Trellis proxy"))
    return compiler(getattr(permission, kind), where, mode)


def _permission_set(rules: Any, path: str, mode: int) -> list[Predicate]:
    check_fields(rules, path, applied=("rules",))
    if not rules.rules:
        raise RbacConfigError(field(path, "rules"), "a set needs at least one rule")
    return [compile_permission(p, f"{path}.rules[{i}]", mode) for i, p in enumerate(rules.rules)]


def _destination_port(port: int, path: str, mode: int) -> Predicate:
    if port > 65535:
        raise RbacConfigError(path, f"{port} is not a port number")
    return lambda r: r.destination_port == port


def _destination_port_range(span: Any, path: str, mode: int) -> Predicate:
    check_fields(span, path, applied=("start", "end"))
    start, end = span.start, span.end
    if start > end:
        raise RbacConfigError(path, f"start {start} is greater than end {end}")
    return lambda r: start <= r.destination_port < end


_PERMISSION: dict[str, Compiler] = {
    "and_rules": lambda s, p, m: all_of(_permission_set(s, p, m)),
    "or_rules": lambda s, p, m: any_of(_permission_set(s, p, m)),
    "not_rule": lambda inner, p, m: negate(compile_permission(inner, p, _SWAP[m])),
    "any": _any,
    "header": _header,
    "url_path": _url_path,
    "destination_port": _destination_port,
    "destination_port_range": _destination_port_range,
}


# -- principals ---------------------------------------------------------------------------


def compile_principal(principal: Any, path: str, mode: int = REQUEST) -> Predicate:
    """An envoy.config.rbac.v3.Principal; unsupported identifiers raise RbacConfigError.
    The tunnel modes (SURE, POSSIBLE) assume the tree compiled for requests first."""
    kind = principal.WhichOneof("identifier")
    if kind is None:
        raise RbacConfigError(path, "a principal needs an identifier (and_ids, authenticated, ...)")
    where = field(path, kind)
    compiler = _PRINCIPAL.get(kind)
    if compiler is None:
        raise RbacConfigError(where, _UNSUPPORTED.get(kind, "not supported by the Trellis proxy"))
    return compiler(getattr(principal, kind), where, mode)


def _principal_set(ids: Any, path: str, mode: int) -> list[Predicate]:
    check_fields(ids, path, applied=("ids",))
    if not ids.ids:
        raise RbacConfigError(field(path, "ids"), "a set needs at least one principal")
    return [compile_principal(p, f"{path}.ids[{i}]", mode) for i, p in enumerate(ids.ids)]


def _authenticated(authenticated: Any, path: str, mode: int) -> Predicate:
    check_fields(authenticated, path, applied=("principal_name",))
    if not authenticated.HasField("principal_name"):
        return lambda r: r.principal != ""
    test = string_test(authenticated.principal_name, field(path, "principal_name"))
    return lambda r: r.principal != "" and test(r.principal)


def _cidr(cidr: Any, path: str, mode: int) -> Predicate:
    check_fields(cidr, path, applied=("address_prefix", "prefix_len"))
    length = cidr.prefix_len.value if cidr.HasField("prefix_len") else 0
    try:
        network = ipaddress.ip_network(f"{cidr.address_prefix}/{length}", strict=False)
    except ValueError as e:
        raise RbacConfigError(path, f"bad CIDR range: {e}") from None

    def test(r: RequestView) -> bool:
        ip = r.source_ip()
        return ip is not None and ip in network

    return test


_PRINCIPAL: dict[str, Compiler] = {
    "and_ids": lambda s, p, m: all_of(_principal_set(s, p, m)),
    "or_ids": lambda s, p, m: any_of(_principal_set(s, p, m)),
    "not_id": lambda inner, p, m: negate(compile_principal(inner, p, _SWAP[m])),
    "any": _any,
    "authenticated": _authenticated,
    "source_ip": _cidr,
    "direct_remote_ip": _cidr,
    "remote_ip": _cidr,
    "header": _header,
    "url_path": _url_path,
}
