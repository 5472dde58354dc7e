"""The source's sidecar, step by step: listener, path, route, action — as its outbound side
takes a request (trellis.proxy.listeners.outbound, stack/exchange.py's `run`).

Owns the order of the steps and the answers the outbound side gives on the way: 400
(no host, a path refused by normalization, DPE), 404 NR (no route; a mesh name with a
wrong or ambiguous port), 502 NR (a host outside the registry under REGISTRY_ONLY),
503 NC (config the sidecar cannot get), redirects and direct responses. Every decision
is made by the code the proxy runs: the mesh-name shape and the port-problem test of
the outbound listener (trellis.wire), the listener's path options with `normalize_target`, the
compiled `RouteTable` (`explain`, the same matchers as `select`). What comes after the
route (the split, the endpoints, the destination) is trail.py's.

Pure: the node's config comes from config.py; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trellis.control.explain.answer import OUTSIDE, SOURCE, Answer
from trellis.control.explain.config import Missing, NodeConfig, Refused
from trellis.control.explain.inputs import ExplainRequest
from trellis.control.explain.views import match_json, paths_json, route_json
from trellis.proxy.config.resources import ListenerConfig
from trellis.routing import (
    DirectResponseAction,
    ForwardAction,
    NonForwardingAction,
    RedirectAction,
    Route,
    RouteTable,
)
from trellis.routing.paths import PathRefused, normalize_target
from trellis.wire import (
    BLACKHOLE_CLUSTER,
    OUTBOUND_DEFAULT_LISTENER,
    mesh_name_shape,
    port_unresolved,
)

Json = dict[str, Any]
SCHEME = "http"  # what the outbound listener serves (redirects keep it)


@dataclass(slots=True)
class Outbound:
    """What the source's sidecar did with the request: the trail (`json`), and either its
    own answer or the route it forwards by (`route`, with the normalized `target`)."""

    json: Json = field(default_factory=dict)
    answer: Answer | None = None
    route: Route | None = None
    target: str = ""  # the request target after normalization
    passthrough: bool = False  # the route leaves the mesh (outboundTrafficPolicy ALLOW_ANY)


def take(config: NodeConfig, request: ExplainRequest) -> Outbound:
    """Follow `request` through the outbound side of the node of `config`."""
    out = Outbound()
    name = request.authority
    out.json["listener"] = {"name": name}
    if not mesh_name_shape(name):
        why = f"{name!r} cannot be a mesh name (an IP address, or a DNS name outside the mesh)"
        return _default(config, request, out, why)
    listener = config.listener(name)
    if isinstance(listener, Missing):
        out.json["listener"].update(found=False, reason=listener.reason)
        if port_unresolved(listener.reason):
            return _answer(out, 404, "NR", listener.reason)
        return _default(config, request, out, f"the control plane knows no {name!r}")
    if isinstance(listener, Refused):
        out.json["listener"].update(
            found=False, reason=f"the sidecar refuses it: {listener.reason}"
        )
        return _answer(out, 503, "NC", f"listener {name}: {listener.reason}")
    out.json["listener"].update(found=True, routeConfiguration=listener.route_config_name)
    table = listener.routes
    rds = listener.route_config_name
    if table is None and rds is not None:
        routes = config.routes(rds)
        if isinstance(routes, Missing | Refused):
            out.json["listener"]["routeConfigurationError"] = routes.reason
            return _answer(out, 503, "NC", f"route configuration {rds}: {routes.reason}")
        table = routes
    if table is None:
        return _answer(out, 503, "NC", f"listener {name} has no routes")
    return _select(out, request, listener, table)


def _select(
    out: Outbound,
    request: ExplainRequest,
    listener: ListenerConfig,
    table: RouteTable,
    headers: dict[str, str] | None = None,
) -> Outbound:
    target = _normalize(out, request.target, listener)
    if target is None:
        return out
    out.target = target
    lookup = request.header_map() if headers is None else headers
    selection = table.explain(request.authority, request.method, target, lookup)
    vhost = selection.virtual_host
    out.json["virtualHost"] = (
        None
        if vhost is None
        else {"name": vhost.name, "domains": list(vhost.domains), "host": selection.host}
    )
    out.json["routes"] = [
        {
            "index": c.index,
            "name": c.route.name,
            "match": match_json(c.route),
            "matched": c.matched,
            "reason": c.reason or None,
        }
        for c in selection.checks
    ]
    out.json["untried"] = selection.untried
    route = selection.route
    if route is None:
        why = (
            f"no virtual host has a domain for {request.authority!r}"
            if vhost is None
            else "no route matched"
        )
        return _answer(out, 404, "NR", why)
    out.route = route
    out.json["route"] = route_json(route, SCHEME, request.authority, target)
    return _run(out, route, request.authority, target)


def _normalize(out: Outbound, target: str, listener: ListenerConfig) -> str | None:
    """The listener's path normalization (listeners/paths.py): the normalized target, or None
    when the request was answered instead."""
    step: Json = {"sent": target, "options": paths_json(listener.paths)}
    out.json["path"] = step
    try:
        normalized = normalize_target(target, listener.paths)
    except PathRefused as e:
        step["refused"] = {"status": e.status, "reason": e.reason}
        if e.status == 307:
            out.answer = Answer(307, "", SOURCE, e.reason, location=e.location)
        else:
            out.answer = Answer(e.status, "DPE", SOURCE, e.reason)
        return None
    step["normalized"] = normalized
    return normalized


def _run(out: Outbound, route: Route, authority: str, target: str) -> Outbound:
    """Exchange.run: redirect, direct response, or forward (the split is trail.py's)."""
    action = route.action
    if isinstance(action, RedirectAction):
        location = action.location(SCHEME, authority, target)
        out.answer = Answer(action.status, "", SOURCE, "the route redirects", location=location)
    elif isinstance(action, DirectResponseAction):
        out.answer = Answer(action.status, "", SOURCE, "the route answers directly")
    elif isinstance(action, NonForwardingAction) or not isinstance(action, ForwardAction):
        out.answer = Answer(500, "", SOURCE, f"route {route.name!r}: action not for sidecars")
    return out


def _default(config: NodeConfig, request: ExplainRequest, out: Outbound, why: str) -> Outbound:
    """A host outside the registry: the `trellis/outbound` listener (outboundTrafficPolicy)."""
    out.json["outsideRegistry"] = why
    listener = config.listener(OUTBOUND_DEFAULT_LISTENER)
    out.json["listener"]["default"] = OUTBOUND_DEFAULT_LISTENER
    if not isinstance(listener, ListenerConfig) or listener.routes is None:
        out.passthrough = True
        out.target = request.target
        out.answer = Answer(
            None, "", OUTSIDE, "no outboundTrafficPolicy from the control plane: ALLOW_ANY"
        )
        return out
    result = _select(out, request, listener, listener.routes, headers={})
    if result.answer is not None and result.answer.flags == "NR":
        return _answer(out, 502, "NR", "host not in the mesh registry")
    route = result.route
    if route is None or result.answer is not None:
        return result
    action = route.action
    if isinstance(action, ForwardAction) and BLACKHOLE_CLUSTER in action.cluster_names:
        return _answer(
            out,
            502,
            "NR",
            "host not in the mesh registry (outboundTrafficPolicy REGISTRY_ONLY)",
        )
    out.passthrough = True
    out.answer = Answer(
        None,
        "",
        OUTSIDE,
        f"outboundTrafficPolicy ALLOW_ANY: sent to {request.authority} as resolved by DNS",
    )
    return out


def _answer(out: Outbound, status: int, flags: str, reason: str) -> Outbound:
    out.answer = Answer(status, flags, SOURCE, reason)
    return out
