"""RouteConfiguration builder: ordered `rules.Entry`s → Envoy Routes in one VirtualHost.

What both client kinds share is here (path/header matches, weighted
clusters, header modifiers, redirect, rewrite, fault, ring-hash hash
policy). What differs (timeouts, retries, query matches, mirrors, how to hash
"the connection", the non-idempotent retry opt-in) is asked of a `RouteFlavor`,
which each generator supplies.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Protocol

from envoy.config.core.v3 import base_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.common.fault.v3 import fault_pb2 as common_fault_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.type.matcher.v3 import regex_pb2, string_pb2

from trellis.control.push.context import PushContext
from trellis.control.translate import pb, ratelimits
from trellis.control.translate.rules import Entry, MatchSpec, StringMatch
from trellis.model.policies import LocalRateLimit
from trellis.model.routes import Fault, HeaderModifier, HTTPRetry, RequestRedirect, URLRewrite
from trellis.routing.route import NON_IDEMPOTENT_KEY
from trellis.wire import ENDPOINT_METADATA as METADATA_NAMESPACE

# Envoy has no field for "retry non-idempotent requests too": the route's trellis metadata
# carries the opt-in (routing/route.py reads it into RetryPolicy.non_idempotent).


class RouteFlavor(Protocol):
    """The parts of a Route that depend on the client kind."""

    supports_query: bool
    supports_mirror: bool
    # Route metadata `trellis.retryNonIdempotent` (an HTTPRoute retry's `nonIdempotent`):
    # only our sidecar reads it; proxyless routes never carry it.
    marks_non_idempotent: bool
    # Local rate limits (RateLimitPolicy) as typed_per_filter_config: sidecars only.
    supports_rate_limit: bool

    def apply_policies(self, action: rc.RouteAction, entry: Entry) -> None:
        """Set timeouts and retries on `action` from `entry`."""

    def connection_hash(self) -> rc.RouteAction.HashPolicy:
        """The hash policy that pins a client (ring hash without a header)."""


_REDIRECT_CODES = {
    301: rc.RedirectAction.MOVED_PERMANENTLY,
    302: rc.RedirectAction.FOUND,
    303: rc.RedirectAction.SEE_OTHER,
    307: rc.RedirectAction.TEMPORARY_REDIRECT,
    308: rc.RedirectAction.PERMANENT_REDIRECT,
}


def route_configuration(
    name: str,
    domains: Sequence[str],
    entries: Sequence[Entry],
    flavor: RouteFlavor,
    push: PushContext,
    service_limit: LocalRateLimit | None = None,
) -> route_pb2.RouteConfiguration:
    """One VirtualHost whose domains are every spelling the client may use; `service_limit`:
    an outbound RateLimitPolicy on the whole service, on the virtual host (one bucket)."""
    routes = [r for e in entries if (r := build_route(e, flavor, push)) is not None]
    vhost = rc.VirtualHost(name=name, domains=list(domains), routes=routes)
    if service_limit is not None and flavor.supports_rate_limit:
        vhost.typed_per_filter_config[pb.LOCAL_RATELIMIT_FILTER].CopyFrom(
            ratelimits.per_filter_config(service_limit)
        )
    return route_pb2.RouteConfiguration(name=name, virtual_hosts=[vhost])


def build_route(entry: Entry, flavor: RouteFlavor, push: PushContext) -> rc.Route | None:
    """The Route for `entry`, or None when its match cannot apply to this kind of client."""
    match = _route_match(entry.match, flavor)
    if match is None:
        return None
    route = rc.Route(name=entry.name, match=match)
    if entry.redirect is not None:
        route.redirect.CopyFrom(_redirect(entry.redirect, entry.match, entry.port))
    elif not entry.backends:
        # Every backendRef has weight 0: Gateway API answers 500 (a RouteAction with no
        # cluster would be NACKed by every client).
        route.direct_response.status = 500
    else:
        route.route.CopyFrom(_action(entry, flavor, push))
        retry = entry.retry
        if (
            flavor.marks_non_idempotent
            and isinstance(retry, HTTPRetry)
            and retry.non_idempotent
            and retry.attempts > 0
        ):
            route.metadata.filter_metadata[METADATA_NAMESPACE].update({NON_IDEMPOTENT_KEY: True})
    if entry.request_headers is not None:
        _headers_to_add(route.request_headers_to_add, entry.request_headers)
        route.request_headers_to_remove.extend(h.lower() for h in entry.request_headers.remove)
    if entry.response_headers is not None:
        _headers_to_add(route.response_headers_to_add, entry.response_headers)
        route.response_headers_to_remove.extend(h.lower() for h in entry.response_headers.remove)
    if entry.rate_limit is not None and flavor.supports_rate_limit:
        route.typed_per_filter_config[pb.LOCAL_RATELIMIT_FILTER].CopyFrom(
            ratelimits.per_filter_config(entry.rate_limit)
        )
    if entry.fault is not None and (entry.fault.delay or entry.fault.abort):
        route.typed_per_filter_config[pb.FAULT_FILTER].CopyFrom(pb.pack(http_fault(entry.fault)))
    return route


def _route_match(spec: MatchSpec, flavor: RouteFlavor) -> rc.RouteMatch | None:
    if spec.query and not flavor.supports_query:
        return None
    match = rc.RouteMatch()
    if spec.path.kind == "exact":
        match.path = spec.path.value
    elif spec.path.kind == "prefix":
        match.prefix = spec.path.value
    else:
        match.safe_regex.CopyFrom(regex_pb2.RegexMatcher(regex=spec.path.value))
    if spec.method is not None:
        match.headers.append(_header(StringMatch(":method", spec.method, regex=False)))
    match.headers.extend(_header(h) for h in spec.headers)
    for q in spec.query:
        match.query_parameters.append(
            rc.QueryParameterMatcher(name=q.name, string_match=_string(q))
        )
    return match


def _string(m: StringMatch) -> string_pb2.StringMatcher:
    if m.regex:
        return string_pb2.StringMatcher(safe_regex=regex_pb2.RegexMatcher(regex=m.value))
    return string_pb2.StringMatcher(exact=m.value)


def _header(m: StringMatch) -> rc.HeaderMatcher:
    return rc.HeaderMatcher(name=m.name, string_match=_string(m))


def _action(entry: Entry, flavor: RouteFlavor, push: PushContext) -> rc.RouteAction:
    action = rc.RouteAction()
    if len(entry.backends) == 1:
        action.cluster = entry.backends[0].cluster
    else:
        for b in entry.backends:
            weighted = rc.WeightedCluster.ClusterWeight(name=b.cluster)
            weighted.weight.value = b.weight
            action.weighted_clusters.clusters.append(weighted)
    _hash_policies(action, entry, flavor, push)
    if entry.rewrite is not None:
        _rewrite(action, entry.rewrite, entry.match)
    if flavor.supports_mirror:
        for m in entry.mirrors:
            policy = rc.RouteAction.RequestMirrorPolicy(cluster=m.cluster)
            policy.runtime_fraction.default_value.numerator = m.percent
            action.request_mirror_policies.append(policy)
    flavor.apply_policies(action, entry)
    return action


def _hash_policies(
    action: rc.RouteAction, entry: Entry, flavor: RouteFlavor, push: PushContext
) -> None:
    """Ring-hash backends need a hash: their header, else the client's connection."""
    seen: set[bytes] = set()
    for b in entry.backends:
        policy = push.policy(b.service) if b.service is not None else None
        if policy is None or policy.spec.load_balancer.type != "RING_HASH":
            continue
        ring = policy.spec.load_balancer.ring_hash
        if ring is not None and ring.header:
            hp = rc.RouteAction.HashPolicy(
                header=rc.RouteAction.HashPolicy.Header(header_name=ring.header.lower())
            )
        else:
            hp = flavor.connection_hash()
        key = hp.SerializeToString(deterministic=True)
        if key not in seen:
            seen.add(key)
            action.hash_policy.append(hp)


def _rewrite(action: rc.RouteAction, rewrite: URLRewrite, match: MatchSpec) -> None:
    if rewrite.hostname:
        action.host_rewrite_literal = rewrite.hostname
    path = rewrite.path
    if path is None:
        return
    if path.type == "ReplaceFullPath":
        action.regex_rewrite.pattern.regex = "^/.*$"
        action.regex_rewrite.substitution = path.replace_full_path or "/"
    elif match.path.segment_prefix:
        # A segment prefix `/foo` (regex `/foo(/.*)?`): keep what follows the prefix.
        prefix = re.escape(match.path.segment_prefix)
        replacement = (path.replace_prefix_match or "/").rstrip("/")
        if replacement:
            pattern, substitution = f"^{prefix}(/.*)?$", replacement + r"\1"
        else:
            pattern, substitution = f"^{prefix}/?(.*)$", r"/\1"
        action.regex_rewrite.pattern.regex = pattern
        action.regex_rewrite.substitution = substitution
    else:
        # The root prefix `/`: what follows it is a new segment of the replacement.
        action.prefix_rewrite = (path.replace_prefix_match or "/").rstrip("/") + "/"


_WELL_KNOWN_PORTS = {"http": 80, "https": 443}


def _redirect(redirect: RequestRedirect, match: MatchSpec, port: int) -> rc.RedirectAction:
    """Gateway API's redirect: the port is the one given, else the scheme's well-known
    port, else the service port (GAMMA's listener port); a prefix replacement keeps what
    follows a PathPrefix's segment prefix."""
    out = rc.RedirectAction(response_code=_REDIRECT_CODES[redirect.status_code])
    if redirect.scheme:
        out.scheme_redirect = redirect.scheme
    if redirect.hostname:
        out.host_redirect = redirect.hostname
    if redirect.port:
        out.port_redirect = redirect.port
    elif redirect.scheme in _WELL_KNOWN_PORTS:
        out.port_redirect = _WELL_KNOWN_PORTS[redirect.scheme]
    elif port:
        out.port_redirect = port
    if redirect.path is not None:
        if redirect.path.type == "ReplaceFullPath":
            out.path_redirect = redirect.path.replace_full_path or "/"
        elif match.path.segment_prefix:
            prefix = re.escape(match.path.segment_prefix)
            replacement = (redirect.path.replace_prefix_match or "/").rstrip("/")
            if replacement:
                pattern, substitution = f"^{prefix}(/.*)?$", replacement + r"\1"
            else:
                pattern, substitution = f"^{prefix}/?(.*)$", r"/\1"
            out.regex_rewrite.pattern.regex = pattern
            out.regex_rewrite.substitution = substitution
        else:
            out.prefix_rewrite = redirect.path.replace_prefix_match or "/"
    return out


def _headers_to_add(target: object, modifier: HeaderModifier) -> None:
    overwrite = base_pb2.HeaderValueOption.OVERWRITE_IF_EXISTS_OR_ADD
    append = base_pb2.HeaderValueOption.APPEND_IF_EXISTS_OR_ADD
    for values, how in ((modifier.set, overwrite), (modifier.add, append)):
        for h in values:
            target.append(  # type: ignore[attr-defined]
                base_pb2.HeaderValueOption(
                    header=base_pb2.HeaderValue(key=h.name.lower(), value=h.value),
                    append_action=how,
                )
            )


def http_fault(fault: Fault) -> fault_pb2.HTTPFault:
    """Envoy's HTTPFault (gRFC A33): percentages per million."""
    out = fault_pb2.HTTPFault()
    if fault.delay is not None:
        out.delay.CopyFrom(
            common_fault_pb2.FaultDelay(
                fixed_delay=pb.duration(fault.delay.fixed_delay),
                percentage=pb.per_million(fault.delay.percent),
            )
        )
    if fault.abort is not None:
        abort = fault_pb2.FaultAbort(percentage=pb.per_million(fault.abort.percent))
        if fault.abort.http_status is not None:
            abort.http_status = fault.abort.http_status
        else:
            abort.grpc_status = fault.abort.grpc_status or 0
        out.abort.CopyFrom(abort)
    return out
