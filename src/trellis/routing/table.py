"""RouteTable: a whole RouteConfiguration compiled once, and `select` for every request.

Owns the composition: virtual hosts (domains.py) → routes in order, first
match wins (route.py, matchers.py), plus what routes inherit from their
virtual host and the route configuration. `select` parses the query string
only for virtual hosts that have query-parameter matchers and touches no
protobuf. `explain` takes the same steps with the same compiled matchers and
also says, for each route it tried, why it did not match (`trellis explain`);
it is never on the request path, and `select` does not share its code (a
shared loop would cost every request the bookkeeping). Must not know about
sockets, clocks or the proxy's layers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from envoy.config.route.v3 import route_pb2

from trellis.routing.actions import ForwardAction
from trellis.routing.domains import DomainIndex, strip_port
from trellis.routing.errors import RouteConfigError, field
from trellis.routing.fault import Disabled, FaultPolicy
from trellis.routing.headers import compile_mutation
from trellis.routing.local_ratelimit import per_filter_rate_limit
from trellis.routing.matchers import HeaderLookup, parse_query, split_target
from trellis.routing.pb import check_fields
from trellis.routing.retry import compile_retry
from trellis.routing.route import (
    Inherited,
    Route,
    compile_mirrors,
    compile_route,
    per_filter_fault,
)

_NO_QUERY: Mapping[str, str] = {}
_NO_HEADERS: Mapping[str, str] = {}
# A request's headers (a lookup by lower-case name), or a function that builds them when a
# route needs them (most routes match on the path alone).
HeaderSource = HeaderLookup | Callable[[], HeaderLookup]

_CONFIG_APPLIED = (
    "name",
    "virtual_hosts",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
    "most_specific_header_mutations_wins",
    "max_direct_response_body_size_bytes",
    "request_mirror_policies",
    "ignore_port_in_host_matching",
    "typed_per_filter_config",
)
_CONFIG_IGNORED = ("internal_only_headers", "validate_clusters", "metadata")
_VHOST_APPLIED = (
    "name",
    "domains",
    "routes",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
    "typed_per_filter_config",
    "retry_policy",
    "request_mirror_policies",
)
_VHOST_IGNORED = (
    "virtual_clusters",
    "rate_limits",
    "cors",
    "include_request_attempt_count",
    "include_attempt_count_in_response",
    "include_is_timeout_retry_header",
    "hedge_policy",
    "per_request_buffer_limit_bytes",
    "request_body_buffer_limit",
    "metadata",
)


class VirtualHost:
    """A compiled VirtualHost: its routes in order."""

    __slots__ = ("domains", "name", "routes", "uses_headers", "uses_query")

    def __init__(self, name: str, domains: tuple[str, ...], routes: tuple[Route, ...]) -> None:
        self.name = name
        self.domains = domains
        self.routes = routes
        self.uses_query = any(r.match.query for r in routes)
        self.uses_headers = any(r.match.headers or r.match.grpc for r in routes)

    def select(self, authority: str, method: str, path: str, headers: HeaderSource) -> Route | None:
        """The first route of this virtual host that matches, or None."""
        just_path, query_text = split_target(path)
        query = parse_query(query_text) if self.uses_query and query_text else _NO_QUERY
        if callable(headers):
            headers = headers() if self.uses_headers else _NO_HEADERS
        for route in self.routes:
            if route.match.matches(just_path, method, path, authority, headers, query):
                return route
        return None

    def explain(
        self, authority: str, method: str, path: str, headers: HeaderSource
    ) -> tuple[tuple[RouteCheck, ...], Route | None]:
        """`select`, route by route: each route tried, up to the one chosen (the first whose
        `match.matches` holds, as in `select`), with why the others did not match."""
        just_path, query_text = split_target(path)
        query = parse_query(query_text) if self.uses_query and query_text else _NO_QUERY
        if callable(headers):
            headers = headers() if self.uses_headers else _NO_HEADERS
        checks: list[RouteCheck] = []
        for i, route in enumerate(self.routes):
            match = route.match
            if match.matches(just_path, method, path, authority, headers, query):
                checks.append(RouteCheck(i, route, True))
                return tuple(checks), route
            why = match.mismatch(just_path, method, path, authority, headers, query)
            checks.append(RouteCheck(i, route, False, why or "no match"))
        return tuple(checks), None

    def __repr__(self) -> str:
        return f"VirtualHost({self.name!r}, {len(self.routes)} routes)"


@dataclass(frozen=True, slots=True)
class RouteCheck:
    """One route as `explain` tried it: `index` in its virtual host, whether it matched,
    and why not (the first condition that failed, in words)."""

    index: int
    route: Route
    matched: bool
    reason: str = ""


@dataclass(frozen=True, slots=True)
class Selection:
    """What `RouteTable.explain` found: the virtual host for the authority (None: no
    domain matched, Envoy answers 404), the routes tried in order up to the chosen
    one, and the chosen route (None: 404)."""

    authority: str
    host: str  # what the domains were matched against (the port stripped or not)
    virtual_host: VirtualHost | None
    checks: tuple[RouteCheck, ...]
    route: Route | None

    @property
    def untried(self) -> int:
        """Routes after the chosen one, which the first match never reaches."""
        vhost = self.virtual_host
        return 0 if vhost is None else len(vhost.routes) - len(self.checks)


class RouteTable:
    """A RouteConfiguration, compiled: build with `RouteTable.compile(rc)`."""

    __slots__ = ("_clusters", "_index", "name", "virtual_hosts")

    def __init__(self, name: str, virtual_hosts: tuple[VirtualHost, ...], index: Any) -> None:
        self.name = name
        self.virtual_hosts = virtual_hosts
        self._index: DomainIndex[VirtualHost] = index
        names: set[str] = set()
        for vh in virtual_hosts:
            for r in vh.routes:
                if isinstance(r.action, ForwardAction):
                    names |= r.action.cluster_names
                names.update(cluster for cluster, _ in r.mirrors)
        self._clusters = tuple(sorted(names))

    @classmethod
    def compile(cls, rc: route_pb2.RouteConfiguration) -> RouteTable:
        """Compile `rc`; raises RouteConfigError for anything the proxy cannot apply."""
        check_fields(rc, "", applied=_CONFIG_APPLIED, ignored=_CONFIG_IGNORED)
        config_fault = per_filter_fault(rc, "", None)
        base = Inherited(
            rate_limit=per_filter_rate_limit(rc, "", None),
            config_request=compile_mutation(rc, "", "request"),
            config_response=compile_mutation(rc, "", "response"),
            most_specific_wins=rc.most_specific_header_mutations_wins,
            fault=config_fault,
            mirrors=compile_mirrors(rc.request_mirror_policies, "request_mirror_policies"),
            max_direct_body=rc.max_direct_response_body_size_bytes.value
            if rc.HasField("max_direct_response_body_size_bytes")
            else 4096,
        )
        vhosts = tuple(
            _virtual_host(vh, f"virtual_hosts[{i}]", base) for i, vh in enumerate(rc.virtual_hosts)
        )
        entries = [(f"virtual_hosts[{i}].domains", vh.domains, vh) for i, vh in enumerate(vhosts)]
        index = DomainIndex(entries, ignore_port=rc.ignore_port_in_host_matching)
        return cls(rc.name, vhosts, index)

    def virtual_host(self, authority: str) -> VirtualHost | None:
        """The virtual host for `authority` (host or host:port), by Envoy's domain rules."""
        return self._index.find(authority)

    def select(self, authority: str, method: str, path: str, headers: HeaderSource) -> Route | None:
        """The route for a request, or None (Envoy answers 404).

        `path` is the request target's path with its query string; `headers`
        looks up values by lower-case name, repeated headers joined with ","
        (a dict will do), or is a function that builds such a lookup, called
        only when a route of the chosen virtual host matches on headers.
        """
        vhost = self._index.find(authority)
        if vhost is None:
            return None
        return vhost.select(authority, method, path, headers)

    def explain(self, authority: str, method: str, path: str, headers: HeaderSource) -> Selection:
        """`select` with its trail (see `Selection`): the same virtual host and the same
        route, found with the same compiled matchers; for `trellis explain`."""
        index = self._index
        host = authority.lower()
        if index.strips_port:
            host = strip_port(host)
        vhost = index.find(authority)
        if vhost is None:
            return Selection(authority, host, None, (), None)
        checks, route = vhost.explain(authority, method, path, headers)
        return Selection(authority, host, vhost, checks, route)

    def clusters(self) -> tuple[str, ...]:
        """Every cluster a route may send to or mirror to, sorted."""
        return self._clusters

    def __repr__(self) -> str:
        return f"RouteTable({self.name!r}, {len(self.virtual_hosts)} virtual hosts)"


def _virtual_host(vh: Any, path: str, base: Inherited) -> VirtualHost:
    check_fields(vh, path, applied=_VHOST_APPLIED, ignored=_VHOST_IGNORED)
    fault: FaultPolicy | Disabled | None = per_filter_fault(vh, path, base.fault)
    retry = (
        compile_retry(vh.retry_policy, field(path, "retry_policy"))
        if vh.HasField("retry_policy")
        else None
    )
    mirrors = compile_mirrors(vh.request_mirror_policies, field(path, "request_mirror_policies"))
    inherited = Inherited(
        virtual_host=vh.name,
        vhost_request=compile_mutation(vh, path, "request"),
        vhost_response=compile_mutation(vh, path, "response"),
        config_request=base.config_request,
        config_response=base.config_response,
        most_specific_wins=base.most_specific_wins,
        retry=retry,
        fault=fault,
        mirrors=mirrors or base.mirrors,
        max_direct_body=base.max_direct_body,
        rate_limit=per_filter_rate_limit(vh, path, base.rate_limit),
    )
    if not vh.name:
        raise RouteConfigError(field(path, "name"), "a virtual host needs a name")
    routes = tuple(
        compile_route(r, f"{path}.routes[{j}]", inherited) for j, r in enumerate(vh.routes)
    )
    return VirtualHost(vh.name, tuple(vh.domains), routes)
