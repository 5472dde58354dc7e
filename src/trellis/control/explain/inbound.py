"""A destination endpoint's sidecar, step by step: the connection, path, route and the RBAC
filters — as its inbound side takes a request (trellis.proxy.listeners.inbound).

Owns the request as it arrives there: what the source's sidecar sends (the route's
path rewrite, host rewrite and header mutations, hop-by-hop headers dropped as the
exchange drops them, the app port in `x-trellis-target-port`), over mTLS or not (the
source's cluster decides, the destination's listener accepts STRICT, PERMISSIVE or
plaintext), and the answers the inbound side gives: 503 when the two sides' TLS do not
meet, 400 (DPE) for a refused path, 404 NR, 403 RBAC with the deciding policy, or the
app's own answer. The view the RBAC filters see is built as the inbound listener builds
it (principal: the source's SPIFFE ID when the connection is mTLS, destination port:
the app port of the route, host: the forwarded authority), and decided by
`trellis.authz.explain`, i.e. by `authorize` with its trail.

Pure: the node's config comes from config.py; no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from trellis.authz import AuthzTrail, PolicyCheck, RequestView, RulesCheck, explain
from trellis.control.explain.answer import APP, DESTINATION, SOURCE, Answer
from trellis.control.explain.config import Missing, NodeConfig, Refused
from trellis.control.explain.nodes import Node
from trellis.control.explain.views import match_json, paths_json
from trellis.control.push.context import PushContext
from trellis.control.translate.rbac import Clause, rule_origins
from trellis.proxy.config.resources import ClusterConfig, EndpointConfig
from trellis.proxy.http1.framing import DROP_UPSTREAM
from trellis.proxy.http1.head import end_to_end, header_map
from trellis.routing import ForwardAction, Route
from trellis.routing.paths import PathRefused, normalize_target
from trellis.wire import TARGET_PORT_HEADER

Json = dict[str, Any]


def forwarded_headers(
    headers: Sequence[tuple[str, str]], route: Route, authority: str, endpoint: EndpointConfig
) -> dict[str, str]:
    """The header map of the request as the source's sidecar sends it to `endpoint`
    (http1/framing.py upstream_request_head, Exchange.on_connected): end-to-end headers,
    the route's mutations, Host, and the app port it asks for."""
    raw = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in headers]
    kept = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in end_to_end(raw, DROP_UPSTREAM)]
    if route.request_mutations:
        kept = route.apply_request_headers(kept)
    sent = [(b"host", authority.encode("latin-1"))]
    sent += [(n.encode("latin-1"), v.encode("latin-1")) for n, v in kept]
    if endpoint.target_port:
        sent.append((TARGET_PORT_HEADER, str(endpoint.target_port).encode("ascii")))
    return header_map(sent)


def take(
    push: PushContext,
    node: Node,
    source: Node,
    cluster: ClusterConfig,
    endpoint: EndpointConfig,
    method: str,
    target: str,
    headers: dict[str, str],
) -> tuple[Json, Answer]:
    """Follow the request from the source's sidecar into `node` (in front of `endpoint`):
    the trail and the answer."""
    out: Json = {"listener": {"name": node.inbound_listener}}
    config = NodeConfig(node.info, push)
    listener = config.listener(node.inbound_listener)
    if isinstance(listener, Missing):
        out["listener"].update(found=False, reason=listener.reason)
        return out, Answer(503, "NC", DESTINATION, f"inbound listener: {listener.reason}")
    if isinstance(listener, Refused):
        out["listener"].update(found=False, reason=f"the sidecar refuses it: {listener.reason}")
        return out, Answer(503, "NC", DESTINATION, f"inbound listener: {listener.reason}")
    mtls = cluster.tls is not None
    out["listener"].update(found=True, tls=listener.tls)
    out["connection"] = {"mtls": mtls}
    refused = _tls_mismatch(mtls, listener.tls, cluster, node)
    if refused is not None:
        return out, refused
    routes = listener.routes
    assert routes is not None  # inbound listeners carry their routes inline
    path_step: Json = {"sent": target, "options": paths_json(listener.paths)}
    out["path"] = path_step
    try:
        path = normalize_target(target, listener.paths)
    except PathRefused as e:
        path_step["refused"] = {"status": e.status, "reason": e.reason}
        return out, Answer(e.status, "DPE", DESTINATION, e.reason)
    path_step["normalized"] = path
    authority = headers.get("host", "")
    selection = routes.explain(authority, method, path, headers)
    out["routes"] = [
        {
            "index": c.index,
            "name": c.route.name,
            "match": match_json(c.route),
            "matched": c.matched,
            "reason": c.reason or None,
        }
        for c in selection.checks
    ]
    route = selection.route
    if route is None:
        return out, Answer(404, "NR", DESTINATION, "no route matched")
    action = route.action
    port = action.app_port() if isinstance(action, ForwardAction) else 0
    out["route"] = {"name": route.name, "appPort": port}
    if listener.authz:
        just_path, _, query = path.partition("?")
        view = RequestView(
            principal=source.principal if mtls else "",
            source=source.address,
            destination_port=port,
            method=method,
            path=just_path or "/",
            query=query,
            headers=headers,
            host=authority,
        )
        trail = explain(listener.authz, view)
        out["authorization"] = authorization_json(push, trail, view)
        decision = trail.decision
        if not decision.allowed:
            policy = decision.policy or "none"
            why = (
                f"denied by {policy}"
                if decision.policy is not None
                else "no ALLOW policy matched (policy none)"
            )
            return out, Answer(403, "RBAC", DESTINATION, why, policy=policy)
    else:
        out["authorization"] = None
    return out, Answer(None, "", APP, f"forwarded to the app on 127.0.0.1:{port}")


def _tls_mismatch(mtls: bool, accepts: str, cluster: ClusterConfig, node: Node) -> Answer | None:
    """Whether the source's connection can reach the destination's listener at all."""
    if not mtls and accepts == "STRICT":
        return Answer(
            503,
            "UC",
            SOURCE,
            "the destination takes mTLS only (STRICT) and the source's cluster sends plaintext"
            " (the source has no mesh identity, or not every endpoint speaks mTLS)",
        )
    if mtls and accepts == "DISABLE":
        return Answer(
            503, "UF", SOURCE, "the source speaks mTLS and the destination takes plaintext only"
        )
    if mtls and cluster.tls is not None and not cluster.tls.allows(node.principal):
        return Answer(
            503,
            "UF",
            SOURCE,
            f"the destination's identity {node.principal or '(none)'} is not one the cluster"
            f" accepts ({', '.join(cluster.tls.sans)})",
        )
    return None


# -- authorization as JSON ------------------------------------------------------------------


def authorization_json(push: PushContext, trail: AuthzTrail, view: RequestView) -> Json:
    """The RBAC filters' trail, each policy named back to its AuthorizationPolicy and rule."""
    origins = _origins(push)
    filters = []
    for i, check in enumerate(trail.filters):
        filters.append(
            {
                "ran": i < trail.ran,
                "rules": _rules_json(check.rules, origins),
                "dryRun": _rules_json(check.shadow, origins),
                "allowed": check.decision.allowed,
                "policy": check.decision.policy,
                "dryRunDeniedBy": check.decision.shadow_denied_by,
            }
        )
    decision = trail.decision
    return {
        "request": {
            "principal": view.principal or None,
            "source": view.source or None,
            "destinationPort": view.destination_port,
            "method": view.method,
            "path": view.path,
            "host": view.host,
        },
        "filters": filters,
        "allowed": decision.allowed,
        "policy": decision.policy,
        "dryRunDeniedBy": decision.shadow_denied_by,
    }


Origins = dict[str, tuple[Json, tuple[Clause, ...]]]


def _origins(push: PushContext) -> Origins:
    """Envoy policy name → (its AuthorizationPolicy as JSON, where each principal comes from)."""
    out: Origins = {}
    for policies in push.authorization.values():
        for policy in policies:
            for name, clauses in rule_origins(policy).items():
                out[name] = (policy.to_dict(), clauses)
    return out


def _rules_json(rules: RulesCheck | None, origins: Origins) -> Json | None:
    if rules is None:
        return None
    return {
        "action": rules.action,
        "allowed": rules.allowed,
        "policy": rules.policy,
        "policies": [_policy_json(p, origins) for p in rules.policies],
    }


def _pruned(value: Any) -> Any:
    """`value` without empty lists, maps and nulls (a rule as written, not as defaulted)."""
    if isinstance(value, dict):
        kept = {k: _pruned(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def _policy_json(check: PolicyCheck, origins: Origins) -> Json:
    found = origins.get(check.name)
    rules: list[Json] = []
    if found is not None:
        doc, clauses = found
        spec_rules = doc.get("spec", {}).get("rules", [])
        for i in check.principals:
            if i < len(clauses):
                clause = clauses[i]
                rule = spec_rules[clause.rule] if clause.rule < len(spec_rules) else {}
                rules.append({"rule": clause.rule, "to": clause.to, "spec": _pruned(rule)})
    return {
        "name": check.name,
        "matched": check.matched,
        "portsMatched": bool(check.permissions),
        "matchingRules": rules,  # the rules whose conditions hold (ports aside)
    }
