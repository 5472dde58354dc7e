"""Route rules as one flat, ordered list: what each generator turns into Envoy Routes.

Owns the Gateway API semantics that do not depend on the client kind:
- every (rule, match) pair becomes one `Entry`, in Gateway API precedence
  order: exact path > regex path > longest prefix > method > most headers >
  most query params; ties by the oldest route, then namespace/name, then
  rule and match order;
- GRPCRoute method matches become paths (`/service/method` exact, service only
  → prefix `/service/`, regex → a path regex);
- PathPrefix keeps Gateway API's segment semantics (`/foo` matches `/foo` and
  `/foo/x`, not `/foobar`) as a path regex;
- backendRefs resolve to cluster names (weight 0 left out); a rule without
  backendRefs forwards to the parent service itself (GAMMA);
- MeshConfig defaults fill in timeouts and retry where a rule sets none.

It knows the PushContext and the mesh model, not protobuf.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from trellis.control.push.context import PushContext, Route
from trellis.control.translate.names import Target, outbound_cluster_name
from trellis.model.mesh_config import MeshConfig
from trellis.model.policies import LocalRateLimit
from trellis.model.routes import (
    BackendRef,
    Fault,
    GRPCMethodMatch,
    GRPCRetry,
    GRPCRouteMatch,
    GRPCRouteRule,
    HeaderMatch,
    HeaderModifier,
    HTTPRetry,
    HTTPRoute,
    HTTPRouteMatch,
    HTTPRouteRule,
    RequestRedirect,
    Timeouts,
    URLRewrite,
)
from trellis.model.service import Service

PathKind = Literal["exact", "prefix", "regex"]

# Precedence rank of the path kinds (higher first).
_RANK = {"exact": 3, "regex": 2, "prefix": 1}


@dataclass(frozen=True, slots=True)
class PathSpec:
    kind: PathKind
    value: str  # the exact path, the raw prefix, or an RE2 regex (full match)
    rank: int  # precedence rank (see _RANK)
    length: int  # characters of the user's path: longer prefixes go first
    segment_prefix: str = ""  # for a Gateway API PathPrefix spelled as a regex: the prefix


@dataclass(frozen=True, slots=True)
class StringMatch:
    name: str
    value: str
    regex: bool


@dataclass(frozen=True, slots=True)
class MatchSpec:
    path: PathSpec
    method: str | None
    headers: tuple[StringMatch, ...]  # header names lower-case; `:method` not included
    query: tuple[StringMatch, ...]


@dataclass(frozen=True, slots=True)
class Backend:
    cluster: str
    weight: int
    service: Service | None  # None: the service no longer exists (CDS answers NOT_FOUND)


@dataclass(frozen=True, slots=True)
class Mirror:
    cluster: str
    percent: int


@dataclass(frozen=True, slots=True)
class Entry:
    """One Envoy Route to be: a match and what to do with it."""

    name: str
    match: MatchSpec
    backends: tuple[Backend, ...]
    redirect: RequestRedirect | None = None
    rewrite: URLRewrite | None = None
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    mirrors: tuple[Mirror, ...] = ()
    timeouts: Timeouts | None = None
    retry: HTTPRetry | GRPCRetry | None = None
    fault: Fault | None = None
    port: int = 0  # the parent service port (a redirect without port or scheme keeps it)
    # An outbound RateLimitPolicy naming this rule of an HTTPRoute (ratelimits.py).
    rate_limit: LocalRateLimit | None = None


ROOT = PathSpec("prefix", "/", _RANK["prefix"], 1)
MATCH_ALL = MatchSpec(ROOT, None, (), ())


def entries(push: PushContext, target: Target, client_namespace: str) -> list[Entry]:
    """Ordered entries for calls from `client_namespace` to `target`.

    No route attached: one default entry (prefix `/`) to the service's own
    cluster. Routes attached: their matches only, with no catch-all.
    """
    routes = push.routes_for(target.service, target.port.port, client_namespace)
    defaults = push.mesh.spec.defaults
    if not routes:
        own = _own_backend(target)
        return [
            Entry(
                name="default",
                match=MATCH_ALL,
                backends=(own,),
                timeouts=defaults.timeouts,
                retry=defaults.retry,
            )
        ]
    keyed: list[tuple[tuple[object, ...], Entry]] = []
    for route_order, route in enumerate(routes):
        rules: Sequence[HTTPRouteRule | GRPCRouteRule] = route.spec.rules
        for r, rule in enumerate(rules):
            matches: Sequence[HTTPRouteMatch | GRPCRouteMatch] = rule.matches
            for m, match in enumerate(matches):
                spec = _match(match)
                entry = _entry(push, target, route, rule, r, m, spec)
                key = (*_precedence(spec), route_order, r, m)
                keyed.append((key, entry))
    keyed.sort(key=lambda item: item[0])
    return [e for _, e in keyed]


def _precedence(m: MatchSpec) -> tuple[int, ...]:
    return (
        -m.path.rank,
        -m.path.length,
        -(m.method is not None),
        -len(m.headers),
        -len(m.query),
    )


def _entry(
    push: PushContext,
    target: Target,
    route: Route,
    rule: HTTPRouteRule | GRPCRouteRule,
    r: int,
    m: int,
    match: MatchSpec,
) -> Entry:
    mesh: MeshConfig = push.mesh
    redirect = rewrite = request_headers = response_headers = None
    mirrors = []
    for f in rule.filters:
        if f.request_header_modifier is not None:
            request_headers = f.request_header_modifier
        if f.response_header_modifier is not None:
            response_headers = f.response_header_modifier
        if f.request_mirror is not None:
            ref = f.request_mirror.backend_ref
            mirrors.append(
                Mirror(_backend(push, target, route, ref).cluster, f.request_mirror.percent)
            )
        redirect = getattr(f, "request_redirect", None) or redirect
        rewrite = getattr(f, "url_rewrite", None) or rewrite
    if rule.backend_refs:
        refs = [b for b in rule.backend_refs if b.weight > 0]
        backends = tuple(_backend(push, target, route, b) for b in refs)
    else:
        backends = (_own_backend(target),)
    rule_name = rule.name or f"rule-{r}"
    limit = None
    if isinstance(route, HTTPRoute):
        policy = push.route_rate_limit(target.service, route.namespace, route.name, r)
        limit = policy.spec.local if policy is not None else None
    return Entry(
        name=f"{route.namespace}/{route.name}/{rule_name}/match-{m}",
        match=match,
        backends=backends,
        redirect=redirect,
        rewrite=rewrite,
        request_headers=request_headers,
        response_headers=response_headers,
        mirrors=tuple(mirrors),
        timeouts=rule.timeouts or mesh.spec.defaults.timeouts,
        retry=rule.retry or mesh.spec.defaults.retry,
        fault=rule.fault,
        port=target.port.port,
        rate_limit=limit,
    )


def _own_backend(target: Target) -> Backend:
    svc = target.service
    return Backend(outbound_cluster_name(svc.namespace, svc.name, target.port.port), 1, svc)


def _backend(push: PushContext, target: Target, route: Route, ref: BackendRef) -> Backend:
    """The cluster of a backendRef; its port defaults to the parent's port, else the default."""
    namespace = ref.namespace or route.namespace
    service = push.service(namespace, ref.name)
    port = ref.port
    if port is None:
        parent_port = target.port.port
        default = service.default_port() if service is not None else None
        if service is None or service.port(parent_port) is not None or default is None:
            port = parent_port
        else:
            port = default.port
    return Backend(outbound_cluster_name(namespace, ref.name, port), ref.weight, service)


# -- matches --------------------------------------------------------------------------


def _match(match: HTTPRouteMatch | GRPCRouteMatch) -> MatchSpec:
    if isinstance(match, GRPCRouteMatch):
        path = _grpc_path(match.method) if match.method else ROOT
        return MatchSpec(path, None, _strings(match.headers, lower=True), ())
    path = ROOT
    if match.path is not None:
        value = match.path.value
        if match.path.type == "Exact":
            path = PathSpec("exact", value, _RANK["exact"], len(value))
        elif match.path.type == "RegularExpression":
            path = PathSpec("regex", value, _RANK["regex"], len(value))
        else:
            path = _segment_prefix(value)
    headers = _strings(match.headers, lower=True)
    return MatchSpec(path, match.method, headers, _strings(match.query_params, lower=False))


def _segment_prefix(value: str) -> PathSpec:
    """Gateway API PathPrefix: whole segments, trailing slash ignored."""
    stripped = value.rstrip("/")
    if not stripped:
        return ROOT
    regex = re.escape(stripped) + "(/.*)?"
    return PathSpec("regex", regex, _RANK["prefix"], len(stripped), segment_prefix=stripped)


def _grpc_path(method: GRPCMethodMatch) -> PathSpec:
    if method.type == "RegularExpression":
        svc = f"(?:{method.service})" if method.service else "[^/]+"
        meth = f"(?:{method.method})" if method.method else "[^/]+"
        value = f"/{svc}/{meth}"
        return PathSpec("regex", value, _RANK["regex"], len(value))
    if method.service and method.method:
        value = f"/{method.service}/{method.method}"
        return PathSpec("exact", value, _RANK["exact"], len(value))
    if method.service:
        value = f"/{method.service}/"
        return PathSpec("prefix", value, _RANK["prefix"], len(value))
    value = f"/[^/]+/{re.escape(method.method or '')}"
    return PathSpec("regex", value, _RANK["regex"], len(value))


def _strings(matches: Sequence[HeaderMatch], *, lower: bool) -> tuple[StringMatch, ...]:
    """Header (lower-cased) or query matches; a repeated name counts once (the first)."""
    seen: set[str] = set()
    out = []
    for h in matches:
        name = h.name.lower() if lower else h.name
        if name in seen:
            continue
        seen.add(name)
        out.append(StringMatch(name, h.value, h.type == "RegularExpression"))
    return tuple(out)
