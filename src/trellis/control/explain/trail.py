"""`explain(push, request, connected)`: one request's decision trail, source sidecar to app.

The composition, in the order the request takes it:
1. the source's sidecar (nodes.py finds its facts; config.py generates and compiles
   its config) takes the request on its outbound side (outbound.py): listener, path
   normalization, virtual host, each route tried, the route's action;
2. the split: every backend of the route with its weight and share (or only the one
   `pick` names), its cluster as the sidecar holds it (balancing, circuit breakers,
   outlier detection, mTLS) and its endpoints from EDS, with the service's members left
   out of EDS and why (unhealthy, lease expired, no such port);
3. each endpoint's sidecar (up to MAX_DESTINATIONS per backend) takes the request on its
   inbound side (inbound.py): mTLS, path, route, the RBAC filters;
4. the answers: who answers what, for which share of such requests (a fault abort takes
   its share first; endpoints share their backend's by weight, which is what round robin
   gives and what least-request tends to).
Bad input raises ExplainError. Pure: the PushContext and the connected nodes are given;
no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trellis.control.explain import inbound, outbound
from trellis.control.explain.answer import APP, OUTSIDE, SOURCE, Answer
from trellis.control.explain.config import Missing, NodeConfig, Refused
from trellis.control.explain.inputs import ExplainError, ExplainRequest
from trellis.control.explain.nodes import ConnectedNode, Node, destination_node, source_node
from trellis.control.explain.views import cluster_json, endpoint_json
from trellis.control.push.context import PushContext
from trellis.control.translate import names
from trellis.model.base import selector_matches
from trellis.proxy.config.resources import ClusterConfig, EndpointConfig
from trellis.routing import ForwardAction, Route

Json = dict[str, Any]
MAX_DESTINATIONS = 16  # endpoints per backend followed into their sidecars


def explain(
    push: PushContext, request: ExplainRequest, connected: Sequence[ConnectedNode] = ()
) -> Json:
    """The decision trail of `request` (see the module docstring), as JSON."""
    try:
        source = source_node(push, request.source, request.namespace, connected)
    except LookupError as e:
        raise ExplainError(f"from: {e}") from None
    if source.info.kind != "sidecar":
        raise ExplainError(
            f"from: {source.info.id} is a {source.info.kind} node; explain follows sidecars"
        )
    taken = outbound.take(NodeConfig(source.info, push), request)
    out: Json = {
        "request": {
            "from": request.source,
            "method": request.method,
            "url": request.url,
            "authority": request.authority,
            "target": request.target,
            "headers": request.header_map(),
        },
        "revision": push.revision,
        "source": source.to_json(),
        "outbound": taken.json,
        "backends": [],
        "answers": [],
        "notes": [],
    }
    if taken.answer is not None:
        out["answers"] = [_share(100.0, taken.answer)]
        return out
    route = taken.route
    assert route is not None and isinstance(route.action, ForwardAction)
    clusters = route.action.clusters
    followed = _followed(clusters, request.pick)
    total = sum(w for c, w in clusters if c in followed)
    remaining = 100.0
    fault = route.fault
    if fault is not None and fault.abort_fraction > 0:
        status = fault.abort_for(0.0)
        if status is not None:
            aborted = 100.0 * fault.abort_fraction
            remaining -= aborted
            out["answers"].append(
                _share(aborted, Answer(status, "FI", SOURCE, "fault injection: abort"))
            )
    if fault is not None and fault.delay is not None and fault.delay_fraction > 0:
        out["notes"].append(
            f"fault injection delays {fault.delay_fraction * 100:g}% of requests by"
            f" {fault.delay:g}s (flag DI)"
        )
    config = NodeConfig(source.info, push)
    for cluster, weight in clusters:
        share = remaining * weight / total if cluster in followed and total else 0.0
        backend: Json = {
            "cluster": cluster,
            "weight": weight,
            "percent": round(share, 4),
            "followed": cluster in followed and weight > 0,
        }
        out["backends"].append(backend)
        if not backend["followed"]:
            continue
        answers = _backend(push, config, source, request, route, taken.target, backend, connected)
        out["answers"].extend(answers)
    if request.pick is not None:
        out["notes"].append(f"only backend {request.pick} is followed (--pick)")
    return out


def _followed(clusters: Sequence[tuple[str, int]], pick: str | None) -> set[str]:
    if pick is None:
        return {c for c, _ in clusters}
    chosen = {c for c, _ in clusters if pick == c or pick in _service_names(c)}
    if not chosen:
        known = ", ".join(c for c, _ in clusters)
        raise ExplainError(f"pick: {pick!r} is not a backend of the route ({known})")
    return chosen


def _service_names(cluster: str) -> tuple[str, ...]:
    """`web-v2`, `web-v2.default` and the FQDN of `outbound|9080||web-v2.default.svc.mesh`."""
    fqdn = cluster.rsplit("|", 1)[-1]
    parts = fqdn.split(".")
    return (fqdn, parts[0], ".".join(parts[:2]))


def _backend(
    push: PushContext,
    config: NodeConfig,
    source: Node,
    request: ExplainRequest,
    route: Route,
    target: str,
    backend: Json,
    connected: Sequence[ConnectedNode],
) -> list[Json]:
    name = backend["cluster"]
    share = float(backend["percent"])
    cluster = config.cluster(name)
    if isinstance(cluster, Missing | Refused):
        backend["error"] = cluster.reason
        return [_share(share, Answer(503, "NC", SOURCE, f"no cluster {name}: {cluster.reason}"))]
    backend["config"] = cluster_json(cluster)
    if cluster.discovery == "ORIGINAL_DST":
        why = f"sent outside the mesh, to {request.authority} as resolved by DNS"
        return [_share(share, Answer(None, "", OUTSIDE, why))]
    endpoints = _endpoints(config, cluster, backend)
    backend["endpoints"] = [endpoint_json(e) for e in endpoints]
    backend["excluded"] = _excluded(push, name)
    if not endpoints:
        return [_share(share, Answer(503, "UH", SOURCE, "no healthy upstream"))]
    path = route.rewrite_path(target)
    authority = route.host_rewrite or request.authority
    weights = sum(e.weight for e in endpoints)
    answers = []
    for i, (endpoint, shown) in enumerate(zip(endpoints, backend["endpoints"], strict=True)):
        part = share * endpoint.weight / weights
        where = endpoint.workload or f"{endpoint.address}:{endpoint.port}"
        if i >= MAX_DESTINATIONS:
            shown["destination"] = None
            continue
        headers = inbound.forwarded_headers(request.headers, route, authority, endpoint)
        answer = _destination(
            push, source, cluster, endpoint, request.method, path, headers, shown, connected
        )
        answers.append({**_share(part, answer), "cluster": name, "endpoint": where})
    if len(endpoints) > MAX_DESTINATIONS:
        backend["notFollowed"] = len(endpoints) - MAX_DESTINATIONS
    return answers


def _destination(
    push: PushContext,
    source: Node,
    cluster: ClusterConfig,
    endpoint: EndpointConfig,
    method: str,
    path: str,
    headers: dict[str, str],
    shown: Json,
    connected: Sequence[ConnectedNode],
) -> Answer:
    if endpoint.target_port is None:
        shown["destination"] = None
        return Answer(None, "", APP, "the endpoint is the app itself (no sidecar in front of it)")
    node = destination_node(push, endpoint.workload, endpoint.address, endpoint.port, connected)
    if node is None:
        shown["destination"] = None
        return Answer(None, "", APP, f"no sidecar is known for {endpoint.workload}")
    trail, answer = inbound.take(push, node, source, cluster, endpoint, method, path, dict(headers))
    shown["destination"] = {"node": node.to_json(), **trail, "answer": answer.to_json()}
    return answer


def _endpoints(
    config: NodeConfig, cluster: ClusterConfig, backend: Json
) -> tuple[EndpointConfig, ...]:
    if cluster.discovery == "STATIC":
        return cluster.endpoints
    found = config.endpoints(cluster.eds_name)
    if isinstance(found, Missing | Refused):
        backend["endpointsError"] = found.reason
        return ()
    return found


def _excluded(push: PushContext, cluster: str) -> list[Json]:
    """The service's members left out of EDS, and why."""
    try:
        target = names.resolve_cluster(push, names.parse_cluster_name(cluster))
    except names.Unresolved:
        return []
    service, port = target.service, target.port
    wanted = port.target_port if port.target_port is not None else port.port
    out = []
    for key in sorted(push.workloads):
        w = push.workloads[key]
        if w.namespace != service.namespace or not selector_matches(
            service.spec.selector, dict(w.metadata.labels)
        ):
            continue
        if key not in push.live:
            out.append(
                {"workload": f"{w.name}.{w.namespace}", "why": "unhealthy, or its lease expired"}
            )
        elif w.port_for(wanted) is None:
            out.append({"workload": f"{w.name}.{w.namespace}", "why": f"it has no port {wanted}"})
    return out


def _share(percent: float, answer: Answer) -> Json:
    return {"percent": round(percent, 4), **answer.to_json()}
