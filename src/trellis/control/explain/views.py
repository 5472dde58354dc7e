"""The proxy's compiled config objects as JSON, for `trellis explain`'s answer.

Owns the JSON shape of a Route (match, action, timeout, retry, fault, mirrors,
rewrites, header mutations), a ClusterConfig (balancing, circuit breakers, outlier
detection, mTLS) and an endpoint; camelCase keys like the rest of the API, durations
in seconds. Only reads the objects; decides nothing. Pure.
"""

from __future__ import annotations

from typing import Any

from trellis.proxy.config.resources import ClusterConfig, EndpointConfig
from trellis.routing import (
    DirectResponseAction,
    ForwardAction,
    HeaderMutation,
    NonForwardingAction,
    RedirectAction,
    Route,
)
from trellis.routing.paths import ESCAPED_SLASH_ACTIONS, PathOptions

Json = dict[str, Any]
BODY_SHOWN = 200  # bytes of a direct response's body shown


def match_json(route: Route) -> Json:
    m = route.match
    return {
        "path": m.path_text,
        "headers": [h.text for h in m.headers],
        "queryParameters": [q.text for q in m.query],
        "grpc": m.grpc,
    }


def action_json(route: Route, scheme: str, authority: str, path: str) -> Json:
    """What the route does; for a redirect, the `Location` this request would get."""
    action = route.action
    if isinstance(action, ForwardAction):
        return {
            "kind": "forward",
            "clusters": [{"cluster": c, "weight": w} for c, w in action.clusters],
        }
    if isinstance(action, RedirectAction):
        return {
            "kind": "redirect",
            "status": action.status,
            "location": action.location(scheme, authority, path),
        }
    if isinstance(action, DirectResponseAction):
        body = action.body[:BODY_SHOWN].decode("utf-8", "replace")
        return {"kind": "directResponse", "status": action.status, "body": body}
    assert isinstance(action, NonForwardingAction)
    return {"kind": "nonForwarding"}


def route_json(route: Route, scheme: str, authority: str, path: str) -> Json:
    """Everything the sidecar applies once this route is chosen, for this request."""
    retry = route.retry
    fault = route.fault
    out: Json = {
        "name": route.name,
        "virtualHost": route.virtual_host,
        "match": match_json(route),
        "action": action_json(route, scheme, authority, path),
        "timeout": route.timeout,
        "retry": None
        if retry is None or retry.num_retries == 0
        else {
            "retryOn": sorted(retry.retry_on),
            "numRetries": retry.num_retries,
            "perTryTimeout": retry.per_try_timeout,
            "retriableStatusCodes": sorted(retry.retriable_status_codes),
            "backoff": {"base": retry.backoff_base, "max": retry.backoff_max},
        },
        "perTryTimeout": retry.per_try_timeout if retry is not None else None,
        "fault": None
        if fault is None
        else {
            "delay": fault.delay,
            "delayPercent": round(fault.delay_fraction * 100, 4),
            "abortStatus": fault.abort_http_status,
            "abortGrpcStatus": fault.abort_grpc_status,
            "abortPercent": round(fault.abort_fraction * 100, 4),
        },
        "mirrors": [{"cluster": c, "percent": round(f * 100, 4)} for c, f in route.mirrors],
        "rewrite": None
        if route.rewrite is None
        else {"from": path, "to": route.rewrite_path(path), "rule": repr(route.rewrite)},
        "hostRewrite": route.host_rewrite,
        "hashPolicies": [
            {"kind": h.kind, "name": h.name, "terminal": h.terminal} for h in route.hash_policies
        ],
        "requestHeaders": _mutations(route.request_mutations),
        "responseHeaders": _mutations(route.response_mutations),
    }
    return out


def _mutations(levels: tuple[HeaderMutation, ...]) -> Json | None:
    remove = sorted({name for m in levels for name in m.remove})
    add = [{"name": a.name, "value": a.value, "action": a.action} for m in levels for a in m.add]
    return {"remove": remove, "add": add} if remove or add else None


def cluster_json(cluster: ClusterConfig) -> Json:
    lb = cluster.lb
    policy: Json = {"kind": lb.kind}
    if lb.kind == "least_request":
        policy["choiceCount"] = lb.choice_count
    elif lb.kind == "ring_hash":
        policy["ringSize"] = [lb.ring_min, lb.ring_max]
    limits = cluster.limits
    outlier = cluster.outlier
    return {
        "name": cluster.name,
        "discovery": cluster.discovery,
        "loadBalancing": policy,
        "connectTimeout": cluster.connect_timeout,
        "circuitBreakers": {
            "maxConnections": limits.max_connections,
            "maxPendingRequests": limits.max_pending,
            "maxRequests": limits.max_requests,
            "maxRetries": limits.max_retries,
        },
        "outlierDetection": None
        if outlier is None
        else {
            "consecutive5xx": outlier.consecutive_5xx,
            "consecutiveGatewayFailure": outlier.consecutive_gateway,
            "interval": outlier.interval,
            "baseEjectionTime": outlier.base_ejection,
            "maxEjectionPercent": outlier.max_ejection_percent,
        },
        "mtls": None if cluster.tls is None else {"peerIdentities": list(cluster.tls.sans)},
    }


def endpoint_json(endpoint: EndpointConfig) -> Json:
    return {
        "address": endpoint.address,
        "port": endpoint.port,
        "weight": endpoint.weight,
        "targetPort": endpoint.target_port,
        "workload": endpoint.workload or None,
        "locality": endpoint.locality or None,
    }


def paths_json(options: PathOptions) -> Json:
    return {
        "normalize": options.normalize,
        "mergeSlashes": options.merge_slashes,
        "escapedSlashes": ESCAPED_SLASH_ACTIONS.get(options.escaped_slashes, "?"),
    }
