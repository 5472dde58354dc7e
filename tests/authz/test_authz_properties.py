"""Properties: the engine agrees with small reference evaluators.

1. Random Permission/Principal trees (and/or/not over leaves) decide as a
   direct reading of the tree does.
2. CIDR matching agrees with `ipaddress`.
3. Random AuthorizationPolicies, through the real translator and the real
   engine, decide as Istio's documented semantics, written out plainly over
   the policy model (the oracle below), including dry-run shadow results.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.authz.authz_support import engine, inbound_engines, policy, request, rules
from tests.control.translate.translate_support import load_push

from trellis.authz import NO_POLICY, RequestView, authorize

# -- 1. trees -----------------------------------------------------------------------------

METHODS = ["GET", "POST", "DELETE"]
PATHS = ["/a", "/a/b", "/b.css", "/admin/x", "/"]
PEERS = [
    "",
    "spiffe://trellis.local/ns/web/sa/frontend",
    "spiffe://trellis.local/ns/shop/sa/api",
    "spiffe://trellis.local/ns/shop/sa/batch",
    "spiffe://trellis.local/ns/payments-prod/sa/billing",
    "spiffe://other.example/ns/web/sa/frontend",
]
PORTS = [8080, 9090]

leaves = st.one_of(
    st.builds(
        lambda m: {"header": {"name": ":method", "exact_match": m}}, st.sampled_from(METHODS)
    ),
    st.builds(lambda p: {"url_path": {"path": {"prefix": p}}}, st.sampled_from(["/a", "/b", "/"])),
    st.builds(lambda p: {"url_path": {"path": {"suffix": p}}}, st.sampled_from([".css", "b"])),
    st.builds(lambda p: {"destination_port": p}, st.sampled_from(PORTS)),
    st.just({"any": True}),
)


def trees(kind: str) -> st.SearchStrategy[dict[str, Any]]:
    and_, or_, not_, items = (
        ("and_rules", "or_rules", "not_rule", "rules")
        if kind == "permission"
        else ("and_ids", "or_ids", "not_id", "ids")
    )
    base = leaves if kind == "permission" else leaves.filter(lambda d: "destination_port" not in d)
    return st.recursive(
        base,
        lambda inner: st.one_of(
            st.builds(lambda xs: {and_: {items: xs}}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda xs: {or_: {items: xs}}, st.lists(inner, min_size=1, max_size=3)),
            st.builds(lambda x: {not_: x}, inner),
        ),
        max_leaves=8,
    )


def reference(tree: dict[str, Any], r: RequestView) -> bool:
    """The tree read directly (the semantics the engine implements)."""
    (kind, value), *_ = tree.items()
    if kind in ("and_rules", "and_ids"):
        return all(reference(t, r) for t in next(iter(value.values())))
    if kind in ("or_rules", "or_ids"):
        return any(reference(t, r) for t in next(iter(value.values())))
    if kind in ("not_rule", "not_id"):
        return not reference(value, r)
    if kind == "header":
        return bool(r.method == value["exact_match"])
    if kind == "url_path":
        (how, text), *_ = value["path"].items()
        return r.path.startswith(text) if how == "prefix" else r.path.endswith(text)
    if kind == "destination_port":
        return bool(r.destination_port == value)
    return True  # any


requests = st.builds(
    lambda m, p, port: request(p, method=m, port=port),
    st.sampled_from(METHODS),
    st.sampled_from(PATHS),
    st.sampled_from(PORTS),
)


@given(trees("permission"), trees("principal"), requests)
def test_trees_decide_as_read(perm: dict[str, Any], princ: dict[str, Any], r: RequestView) -> None:
    allow = engine({"rules": rules("ALLOW", p=policy([perm], [princ]))}).evaluate(r)
    deny = engine({"rules": rules("DENY", p=policy([perm], [princ]))}).evaluate(r)
    expected = reference(perm, r) and reference(princ, r)
    assert allow.allowed is expected and (allow.policy == "p") is expected
    assert deny.allowed is not expected and (deny.policy == "p") is expected


# -- 2. CIDR ------------------------------------------------------------------------------


@given(
    st.ip_addresses(v=4),
    st.integers(min_value=0, max_value=32),
    st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)),
)
def test_cidr_agrees_with_ipaddress(
    prefix: ipaddress.IPv4Address, length: int, source: ipaddress.IPv4Address
) -> None:
    network = ipaddress.ip_network(f"{prefix}/{length}", strict=False)
    e = engine(
        {
            "rules": rules(
                "ALLOW",
                p=policy(
                    principals=[
                        {"direct_remote_ip": {"address_prefix": str(prefix), "prefix_len": length}}
                    ]
                ),
            )
        }
    )
    assert e.evaluate(request(source=str(source))).allowed is (source in network)


# -- 3. AuthorizationPolicies against Istio's semantics -----------------------------------

TD = "trellis.local"
PRINCIPAL_PATTERNS = [
    "trellis.local/ns/web/sa/frontend",
    "spiffe://trellis.local/ns/shop/*",
    "*/sa/batch",
    "*",
    "trellis.local/ns/shop/sa/api",
]
NAMESPACE_PATTERNS = ["web", "shop", "*-prod", "sh*", "*"]
PATH_PATTERNS = ["/a", "/a/*", "*.css", "*", "/admin*"]
METHOD_PATTERNS = ["GET", "POST", "P*", "*"]
VALUE_PATTERNS = ["acme", "ac*", "*st", "*"]
TENANTS = [None, "", "acme", "test"]
WORKLOAD = """
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: api-a, namespace: shop, labels: {app: api}}
spec: {address: 10.0.0.1, ports: [{port: 8080}, {port: 9090}], inbound: {port: 15006}}
"""


def some(values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), max_size=2, unique=True)


sources = st.fixed_dictionaries(
    {},
    optional={
        "principals": some(PRINCIPAL_PATTERNS),
        "notPrincipals": some(PRINCIPAL_PATTERNS),
        "namespaces": some(NAMESPACE_PATTERNS),
        "notNamespaces": some(NAMESPACE_PATTERNS),
    },
)
operations = st.fixed_dictionaries(
    {},
    optional={
        "methods": some(METHOD_PATTERNS),
        "notMethods": some(METHOD_PATTERNS),
        "paths": some(PATH_PATTERNS),
        "notPaths": some(PATH_PATTERNS),
        "ports": st.lists(st.sampled_from(PORTS), max_size=2, unique=True),
    },
)
conditions = st.one_of(
    st.builds(
        lambda yes, no: {"key": "request.headers[x-tenant]", "values": yes, "notValues": no},
        some(VALUE_PATTERNS),
        some(VALUE_PATTERNS),
    ),
    st.builds(
        lambda yes: {"key": "source.namespace", "values": yes},
        st.lists(st.sampled_from(NAMESPACE_PATTERNS), min_size=1, max_size=2),
    ),
    st.builds(
        lambda no: {"key": "source.principal", "notValues": no},
        st.lists(st.sampled_from(PRINCIPAL_PATTERNS), min_size=1, max_size=2),
    ),
)
istio_rules = st.fixed_dictionaries(
    {},
    optional={
        "from": st.lists(st.builds(lambda s: {"source": s}, sources), max_size=2),
        "to": st.lists(st.builds(lambda o: {"operation": o}, operations), max_size=2),
        "when": st.lists(conditions, max_size=2),
    },
)
specs = st.fixed_dictionaries(
    {
        "action": st.sampled_from(["ALLOW", "DENY"]),
        "dryRun": st.booleans(),
        "rules": st.lists(istio_rules, max_size=3),
    },
    optional={
        "selector": st.sampled_from(
            [{"matchLabels": {"app": "api"}}, {"matchLabels": {"app": "x"}}]
        )
    },
)
istio_requests = st.builds(
    lambda peer, m, p, port, tenant: request(
        p,
        method=m,
        port=port,
        principal=peer,
        headers={} if tenant is None else {"x-tenant": tenant},
    ),
    st.sampled_from(PEERS),
    st.sampled_from(METHODS),
    st.sampled_from(PATHS),
    st.sampled_from(PORTS),
    st.sampled_from(TENANTS),
)


def wildcard(pattern: str, value: str) -> bool:
    if pattern == "*":
        return True
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def principal_matches(pattern: str, peer: str) -> bool:
    if not peer:
        return False  # only authenticated peers have a principal
    if pattern.startswith("*"):
        return wildcard(pattern, peer)
    return wildcard(pattern if pattern.startswith("spiffe://") else "spiffe://" + pattern, peer)


def namespace_matches(pattern: str, peer: str) -> bool:
    prefix = f"spiffe://{TD}/ns/"
    if not peer.startswith(prefix):
        return False
    namespace = peer[len(prefix) :].split("/", 1)[0]
    return wildcard(pattern, namespace)


def either(yes: list[str], no: list[str], test: Any) -> bool:
    return (not yes or any(test(v) for v in yes)) and not any(test(v) for v in no)


def source_matches(s: dict[str, Any], r: RequestView) -> bool:
    return either(
        s.get("principals", []),
        s.get("notPrincipals", []),
        lambda v: principal_matches(v, r.principal),
    ) and either(
        s.get("namespaces", []),
        s.get("notNamespaces", []),
        lambda v: namespace_matches(v, r.principal),
    )


def operation_matches(o: dict[str, Any], r: RequestView) -> bool:
    return (
        either(o.get("methods", []), o.get("notMethods", []), lambda v: wildcard(v, r.method))
        and either(o.get("paths", []), o.get("notPaths", []), lambda v: wildcard(v, r.path))
        and (not o.get("ports") or r.destination_port in o["ports"])
    )


def condition_matches(c: dict[str, Any], r: RequestView) -> bool:
    if c["key"] == "source.namespace":
        test = lambda v: namespace_matches(v, r.principal)  # noqa: E731
    elif c["key"] == "source.principal":
        test = lambda v: principal_matches(v, r.principal)  # noqa: E731
    else:
        tenant = r.headers.get("x-tenant")
        test = lambda v: tenant is not None and wildcard(v, tenant)  # noqa: E731
    return either(c.get("values", []), c.get("notValues", []), test)


def rule_matches(rule: dict[str, Any], r: RequestView) -> bool:
    froms, tos = rule.get("from", []), rule.get("to", [])
    return (
        (not froms or any(source_matches(f["source"], r) for f in froms))
        and (not tos or any(operation_matches(t["operation"], r) for t in tos))
        and all(condition_matches(c, r) for c in rule.get("when", []))
    )


def selects(spec: dict[str, Any]) -> bool:
    return spec.get("selector", {}).get("matchLabels", {}).get("app", "api") == "api"


def istio(
    specs_: list[dict[str, Any]], r: RequestView
) -> tuple[bool, set[str], set[str], str | None]:
    """(allowed, the DENY policies that deny, the dry-run DENY policies that would, and the
    expected shadow_denied_by: "deny" for one of those, NO_POLICY or None)."""
    named = [(f"shop/p{i}", s) for i, s in enumerate(specs_) if selects(s)]

    def matching(action: str, dry: bool) -> set[str]:
        return {
            n
            for n, s in named
            if s["action"] == action
            and s["dryRun"] is dry
            and any(rule_matches(rule, r) for rule in s["rules"])
        }

    def exists(action: str, dry: bool) -> bool:
        return any(s["action"] == action and s["dryRun"] is dry for _, s in named)

    denied_by = matching("DENY", False)
    shadow_denied_by = matching("DENY", True)
    if denied_by:
        allowed = False
    elif exists("ALLOW", False):
        allowed = bool(matching("ALLOW", False))
    else:
        allowed = True
    if shadow_denied_by:
        shadow = "deny"
    elif not denied_by and exists("ALLOW", True):
        would_allow = matching("ALLOW", False) | matching("ALLOW", True)
        shadow = None if would_allow else NO_POLICY
    else:
        shadow = None
    return allowed, denied_by, shadow_denied_by, shadow


def documents(specs_: list[dict[str, Any]]) -> str:
    out = [WORKLOAD]
    for i, spec in enumerate(specs_):
        doc = {
            "apiVersion": "trellis.dev/v1alpha1",
            "kind": "AuthorizationPolicy",
            "metadata": {"name": f"p{i}", "namespace": "shop"},
            "spec": spec,
        }
        out.append(json.dumps(doc))
    return "\n---\n".join(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(specs, max_size=4), st.lists(istio_requests, min_size=1, max_size=6))
def test_translated_policies_decide_as_istio(
    specs_: list[dict[str, Any]], reqs: list[RequestView]
) -> None:
    push = load_push(documents(specs_))
    chain = inbound_engines(push, "shop", "api-a", "trellis/inbound?address=10.0.0.1:15006")
    for r in reqs:
        allowed, deny_names, shadow_names, shadow = istio(specs_, r)
        decision = authorize(chain, r)
        assert decision.allowed is allowed, (r, decision)
        if decision.policy is not None:
            base = decision.policy.partition("#")[0]
            assert base in deny_names if not allowed else base.startswith("shop/p"), decision
        elif not allowed:
            assert not deny_names  # an ALLOW denial names no policy
        if shadow == "deny":
            assert decision.shadow_denied_by is not None
            assert decision.shadow_denied_by.partition("#")[0] in shadow_names, decision
        else:
            assert decision.shadow_denied_by == shadow, (r, decision)
