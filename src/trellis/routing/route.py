"""One compiled Route: its matcher, its action and every policy the request path needs.

Owns how a Route inherits from its virtual host and route configuration (as
Envoy does): header mutations in Envoy's order (route, vhost, config — a later
level wins — or the reverse with `most_specific_header_mutations_wins`); the
retry policy (route, else vhost); the fault config and the local rate limit (the
most specific `typed_per_filter_config`; an inherited rate limit is the same
TokenBucket object for every route below it); mirrors (the most specific
non-empty list).
`timeout` is RouteAction.timeout, None for `0s` or unset (Envoy's unset
default would be 15 s; our control plane always sets it for sidecars).
Everything is read from protobuf here, once; a Route holds plain values.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from trellis.routing.actions import (
    Action,
    ForwardAction,
    NonForwardingAction,
    compile_direct,
    compile_forward,
    compile_redirect,
)
from trellis.routing.errors import RouteConfigError, field
from trellis.routing.fault import FAULT_FILTER, Disabled, FaultPolicy, compile_fault
from trellis.routing.hashing import HashPolicy, compile_hash_policy
from trellis.routing.headers import HeaderMutation, apply_header_mutations, compile_mutation
from trellis.routing.local_ratelimit import per_filter_rate_limit
from trellis.routing.matchers import RouteMatcher, compile_match
from trellis.routing.pb import check_fields, fraction, positive_seconds
from trellis.routing.ratelimit import TokenBucket
from trellis.routing.regex import compile_rewrite
from trellis.routing.retry import RetryPolicy, compile_retry, with_non_idempotent
from trellis.routing.rewrite import PathRewrite
from trellis.wire import ENDPOINT_METADATA as METADATA_NAMESPACE

Headers = list[tuple[str, str]]
NO_MUTATION = HeaderMutation()
Mirrors = tuple[tuple[str, float], ...]

_ROUTE_APPLIED = (
    "name",
    "match",
    "route",
    "redirect",
    "direct_response",
    "non_forwarding_action",
    "typed_per_filter_config",
    "request_headers_to_add",
    "request_headers_to_remove",
    "response_headers_to_add",
    "response_headers_to_remove",
    "metadata",
)
_ROUTE_IGNORED = (
    "decorator",
    "tracing",
    "per_request_buffer_limit_bytes",
    "request_body_buffer_limit",
    "stat_prefix",
)
_ACTION_APPLIED = (
    "cluster",
    "weighted_clusters",
    "prefix_rewrite",
    "regex_rewrite",
    "host_rewrite_literal",
    "timeout",
    "retry_policy",
    "request_mirror_policies",
    "hash_policy",
    "max_stream_duration",
)
# Settings that change no routing decision made here (stats, CORS, upgrades, limits, ...).
_ACTION_IGNORED = (
    "cluster_not_found_response_code",
    "priority",
    "rate_limits",
    "include_vh_rate_limits",
    "cors",
    "max_grpc_timeout",
    "grpc_timeout_offset",
    "upgrade_configs",
    "internal_redirect_policy",
    "internal_redirect_action",
    "max_internal_redirects",
    "hedge_policy",
    "idle_timeout",
    "flush_timeout",
    "early_data_policy",
    "append_x_forwarded_host",
)


class Route:
    """A compiled envoy.config.route.v3.Route, built once per config version."""

    __slots__ = (
        "action",
        "fault",
        "hash_policies",
        "host_rewrite",
        "match",
        "max_stream_duration",
        "mirrors",
        "name",
        "rate_limit",
        "request_mutations",
        "response_mutations",
        "retry",
        "rewrite",
        "timeout",
        "virtual_host",
    )

    def __init__(
        self,
        name: str,
        match: RouteMatcher,
        action: Action,
        *,
        virtual_host: str = "",
        timeout: float | None = None,
        max_stream_duration: float | None = None,
        retry: RetryPolicy | None = None,
        hash_policies: tuple[HashPolicy, ...] = (),
        request_mutations: tuple[HeaderMutation, ...] = (),
        response_mutations: tuple[HeaderMutation, ...] = (),
        rewrite: PathRewrite | None = None,
        host_rewrite: str | None = None,
        fault: FaultPolicy | None = None,
        mirrors: Mirrors = (),
        rate_limit: TokenBucket | None = None,
    ) -> None:
        self.name = name
        self.match = match
        self.action = action
        self.virtual_host = virtual_host
        self.timeout = timeout
        self.max_stream_duration = max_stream_duration  # proxyless gRPC's timeout (gRFC A31)
        self.retry = retry
        self.hash_policies = hash_policies
        self.request_mutations = request_mutations
        self.response_mutations = response_mutations
        self.rewrite = rewrite
        self.host_rewrite = host_rewrite  # host_rewrite_literal: the new :authority
        self.fault = fault
        self.mirrors = mirrors  # (cluster, fraction of requests to shadow)
        self.rate_limit = rate_limit  # local rate limit (envoy.filters.http.local_ratelimit)

    def rewrite_path(self, path: str) -> str:
        """The path to send upstream (prefix_rewrite / regex_rewrite); the query is kept."""
        return path if self.rewrite is None else self.rewrite.apply(path)

    def apply_request_headers(self, headers: Iterable[tuple[str, str]]) -> Headers:
        """Request headers after this route's (and its vhost's and config's) mutations."""
        return apply_header_mutations(self.request_mutations, headers)

    def apply_response_headers(self, headers: Iterable[tuple[str, str]]) -> Headers:
        """Response headers after the response mutations."""
        return apply_header_mutations(self.response_mutations, headers)

    def __repr__(self) -> str:
        return f"Route({self.name!r}, {self.action!r})"


@dataclass(frozen=True, slots=True)
class Inherited:
    """What routes take from their virtual host and route configuration."""

    virtual_host: str = ""
    vhost_request: HeaderMutation = NO_MUTATION
    vhost_response: HeaderMutation = NO_MUTATION
    config_request: HeaderMutation = NO_MUTATION
    config_response: HeaderMutation = NO_MUTATION
    most_specific_wins: bool = False
    retry: RetryPolicy | None = None
    fault: FaultPolicy | Disabled | None = None
    mirrors: Mirrors = ()
    max_direct_body: int = 4096
    # The local rate limit of the vhost or config: one bucket shared by the routes below.
    rate_limit: TokenBucket | Disabled | None = None

    def mutations(self, route: HeaderMutation, kind: str) -> tuple[HeaderMutation, ...]:
        vhost, config = (
            (self.vhost_request, self.config_request)
            if kind == "request"
            else (self.vhost_response, self.config_response)
        )
        levels = (config, vhost, route) if self.most_specific_wins else (route, vhost, config)
        return tuple(m for m in levels if m)


def per_filter_fault(
    message: Any, path: str, inherited: FaultPolicy | Disabled | None
) -> FaultPolicy | Disabled | None:
    """The fault config of `message` (route, vhost or config), else what it inherits."""
    configs = message.typed_per_filter_config
    if FAULT_FILTER not in configs:
        return inherited
    return compile_fault(
        configs[FAULT_FILTER], field(path, f"typed_per_filter_config[{FAULT_FILTER}]")
    )


def compile_mirrors(policies: Any, path: str) -> Mirrors:
    """request_mirror_policies → ((cluster, fraction), ...); no runtime_fraction means all."""
    out: list[tuple[str, float]] = []
    for i, policy in enumerate(policies):
        where = f"{path}[{i}]"
        check_fields(
            policy,
            where,
            applied=("cluster", "runtime_fraction"),
            ignored=("trace_sampled", "disable_shadow_host_suffix_append"),
        )
        if not policy.cluster:
            raise RouteConfigError(field(where, "cluster"), "a mirror needs a cluster")
        share = 1.0
        if policy.HasField("runtime_fraction"):
            runtime = field(where, "runtime_fraction")
            check_fields(policy.runtime_fraction, runtime, ("default_value", "runtime_key"))
            share = fraction(policy.runtime_fraction.default_value, field(runtime, "default_value"))
        out.append((policy.cluster, share))
    return tuple(out)


def compile_route(route: Any, path: str, inherited: Inherited) -> Route:
    """An envoy.config.route.v3.Route at `path` (`virtual_hosts[i].routes[j]`)."""
    check_fields(route, path, applied=_ROUTE_APPLIED, ignored=_ROUTE_IGNORED)
    if not route.HasField("match"):
        raise RouteConfigError(field(path, "match"), "a route needs a match")
    match = compile_match(route.match, field(path, "match"))
    fault = per_filter_fault(route, path, inherited.fault)
    limit = per_filter_rate_limit(route, path, inherited.rate_limit)
    common: dict[str, Any] = {
        "virtual_host": inherited.virtual_host,
        "request_mutations": inherited.mutations(
            compile_mutation(route, path, "request"), "request"
        ),
        "response_mutations": inherited.mutations(
            compile_mutation(route, path, "response"), "response"
        ),
        "fault": fault if isinstance(fault, FaultPolicy) else None,
        "rate_limit": limit if isinstance(limit, TokenBucket) else None,
    }
    kind = route.WhichOneof("action")
    where = field(path, kind or "action")
    if kind == "route":
        non_idempotent = _retries_non_idempotent(route, path)
        return _forwarding_route(route, match, where, inherited, common, non_idempotent)
    action: Action
    if kind == "redirect":
        action = compile_redirect(route.redirect, where, match.prefix_length)
    elif kind == "direct_response":
        action = compile_direct(route.direct_response, where, inherited.max_direct_body)
    elif kind == "non_forwarding_action":
        check_fields(route.non_forwarding_action, where, applied=())
        action = NonForwardingAction()
    else:
        raise RouteConfigError(
            where, "a route needs an action: route, redirect, direct_response or non_forwarding"
        )
    return Route(route.name, match, action, **common)


# The route's trellis metadata key for the opt-in (the control plane writes it).
NON_IDEMPOTENT_KEY = "retryNonIdempotent"


def _retries_non_idempotent(route: Any, path: str) -> bool:
    """The route's `metadata.filter_metadata["trellis"]["retryNonIdempotent"]`: our control
    plane's opt-in to retrying non-idempotent methods (Envoy has no such field)."""
    if not route.HasField("metadata"):
        return False
    meta = route.metadata.filter_metadata.get(METADATA_NAMESPACE)
    if meta is None or NON_IDEMPOTENT_KEY not in meta.fields:
        return False
    value = meta.fields[NON_IDEMPOTENT_KEY]
    if value.WhichOneof("kind") != "bool_value":
        where = field(path, f"metadata.filter_metadata[{METADATA_NAMESPACE}]")
        raise RouteConfigError(field(where, NON_IDEMPOTENT_KEY), "must be a boolean")
    return bool(value.bool_value)


def _forwarding_route(
    route: Any,
    match: RouteMatcher,
    path: str,
    inherited: Inherited,
    common: dict[str, Any],
    non_idempotent: bool = False,
) -> Route:
    action = route.route
    check_fields(action, path, applied=_ACTION_APPLIED, ignored=_ACTION_IGNORED)
    forward: ForwardAction = compile_forward(action, path)
    rewrite = None
    if action.prefix_rewrite and action.HasField("regex_rewrite"):
        raise RouteConfigError(path, "set prefix_rewrite or regex_rewrite, not both")
    if action.prefix_rewrite:
        rewrite = PathRewrite(prefix=action.prefix_rewrite, prefix_length=match.prefix_length)
    elif action.HasField("regex_rewrite"):
        regex = compile_rewrite(action.regex_rewrite, field(path, "regex_rewrite"))
        rewrite = PathRewrite(regex=regex)
    retry = inherited.retry
    if action.HasField("retry_policy"):
        retry = compile_retry(action.retry_policy, field(path, "retry_policy"))
    if retry is not None and non_idempotent:
        retry = with_non_idempotent(retry)
    max_stream = None
    if action.HasField("max_stream_duration"):
        where = field(path, "max_stream_duration")
        check_fields(
            action.max_stream_duration,
            where,
            applied=("max_stream_duration",),
            ignored=("grpc_timeout_header_max", "grpc_timeout_header_offset"),
        )
        max_stream = positive_seconds(action.max_stream_duration, "max_stream_duration", where)
    mirrors = compile_mirrors(
        action.request_mirror_policies, field(path, "request_mirror_policies")
    )
    return Route(
        route.name,
        match,
        forward,
        timeout=positive_seconds(action, "timeout", path),
        max_stream_duration=max_stream,
        retry=retry,
        hash_policies=tuple(
            compile_hash_policy(h, f"{field(path, 'hash_policy')}[{i}]")
            for i, h in enumerate(action.hash_policy)
        ),
        rewrite=rewrite,
        host_rewrite=action.host_rewrite_literal or None,
        mirrors=mirrors or inherited.mirrors,
        **common,
    )
