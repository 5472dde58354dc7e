"""Simulation: AuthorizationPolicies through the real translator, decided by the real engine.

Each test builds a PushContext from YAML, generates the sidecar inbound
listener of `api-a` (shop, labels app=api), compiles its RBAC filters as the
proxy does and replays requests: Istio's semantics must come out.
"""

from __future__ import annotations

import pytest
from tests.authz.authz_support import inbound_engines, request
from tests.control.translate.translate_support import load_push

from trellis.authz import NO_POLICY, Decision, Engine, RequestView, authorize

LISTENER = "trellis/inbound?address=10.0.0.1:15006"
WORKLOAD = """
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: api-a, namespace: shop, labels: {app: api}}
spec: {address: 10.0.0.1, ports: [{port: 8080}, {port: 9090}], inbound: {port: 15006}}
"""
TD = "spiffe://trellis.local"
WEB = f"{TD}/ns/web/sa/frontend"
SHOP_BATCH = f"{TD}/ns/shop/sa/batch"
SHOP_API = f"{TD}/ns/shop/sa/api"
PROD = f"{TD}/ns/payments-prod/sa/billing"


def policy(name: str, spec: str, namespace: str = "shop") -> str:
    return f"""
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def engines(*policies: str) -> list[Engine]:
    return inbound_engines(load_push(WORKLOAD + "".join(policies)), "shop", "api-a", LISTENER)


def allowed(chain: list[Engine], r: RequestView) -> bool:
    return authorize(chain, r).allowed


def test_no_policy_allows_everything() -> None:
    chain = engines()
    assert chain == []
    assert authorize(chain, request("/anything", method="DELETE")).allowed


def test_no_allow_policy_allows_what_deny_policies_do_not_match() -> None:
    chain = engines(
        policy("deny-admin", "{action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}")
    )
    assert len(chain) == 1
    assert authorize(chain, request("/admin")) == Decision(False, "shop/deny-admin")
    assert authorize(chain, request("/public")) == Decision(True)


def test_empty_allow_policy_denies_everything() -> None:
    chain = engines(policy("allow-nothing", "{}"))
    for r in (request(), request("/x", principal=WEB), request(method="POST", port=9090)):
        assert authorize(chain, r) == Decision(False, None)


def test_allow_all_policy_allows_everything() -> None:
    chain = engines(policy("allow-all", "{rules: [{}]}"), policy("allow-nothing", "{}"))
    assert authorize(chain, request("/x")) == Decision(True, "shop/allow-all")


def test_deny_beats_allow() -> None:
    chain = engines(
        policy("allow-all", "{rules: [{}]}"),
        policy(
            "deny-batch",
            f'{{action: DENY, rules: [{{from: [{{source: {{principals: ["{SHOP_BATCH}"]}}}}]}}]}}',
        ),
    )
    assert authorize(chain, request(principal=SHOP_BATCH)) == Decision(False, "shop/deny-batch")
    assert authorize(chain, request(principal=WEB)) == Decision(True, "shop/allow-all")


@pytest.mark.parametrize(
    ("principals", "peer", "expected"),
    [
        ("[trellis.local/ns/web/sa/frontend]", WEB, True),
        ("[trellis.local/ns/web/sa/frontend]", SHOP_API, False),
        (f"[{WEB}]", WEB, True),
        ("[trellis.local/ns/web/*]", WEB, True),
        ("[trellis.local/ns/web/*]", SHOP_API, False),
        ("['*/sa/frontend']", WEB, True),
        ("['*/sa/frontend']", SHOP_BATCH, False),
        ("['*']", WEB, True),
        ("['*']", "", False),  # '*' means any authenticated peer: plaintext is not one
        ("[trellis.local/ns/web/sa/frontend, '*/sa/batch']", SHOP_BATCH, True),
    ],
)
def test_principals_with_wildcards(principals: str, peer: str, expected: bool) -> None:
    chain = engines(
        policy("p", f"{{rules: [{{from: [{{source: {{principals: {principals}}}}}]}}]}}")
    )
    assert allowed(chain, request(principal=peer)) is expected


@pytest.mark.parametrize(
    ("source", "peer", "expected"),
    [
        ("{namespaces: [web]}", WEB, True),
        ("{namespaces: [web]}", SHOP_API, False),
        ("{namespaces: [web]}", "", False),
        ("{namespaces: [we*]}", WEB, True),
        ("{namespaces: ['*-prod']}", PROD, True),
        ("{namespaces: ['*-prod']}", WEB, False),
        ("{namespaces: ['*']}", SHOP_API, True),
        ("{namespaces: ['*']}", "", False),
        ("{namespaces: [shop], notPrincipals: ['*/sa/batch']}", SHOP_API, True),
        ("{namespaces: [shop], notPrincipals: ['*/sa/batch']}", SHOP_BATCH, False),
        ("{notNamespaces: [shop]}", WEB, True),
        ("{notNamespaces: [shop]}", SHOP_API, False),
        ("{notNamespaces: [shop]}", "", True),  # not in shop: a plaintext peer is in no namespace
    ],
)
def test_namespaces(source: str, peer: str, expected: bool) -> None:
    chain = engines(policy("p", f"{{rules: [{{from: [{{source: {source}}}]}}]}}"))
    assert allowed(chain, request(principal=peer)) is expected


def test_namespace_of_another_trust_domain_does_not_match() -> None:
    chain = engines(policy("p", "{rules: [{from: [{source: {namespaces: [web]}}]}]}"))
    assert not allowed(chain, request(principal="spiffe://other.example/ns/web/sa/frontend"))


@pytest.mark.parametrize(
    ("operation", "r", "expected"),
    [
        ("{paths: [/api/v1/items]}", request("/api/v1/items"), True),
        ("{paths: [/api/v1/items]}", request("/api/v1/items/2"), False),
        ("{paths: [/api/v1/items]}", request("/api/v1/items", query="page=2"), True),
        ("{paths: [/api/*]}", request("/api/v1"), True),
        ("{paths: [/api/*]}", request("/apix"), False),
        ("{paths: ['*.css']}", request("/static/site.css"), True),
        ("{paths: ['*.css']}", request("/static/site.js"), False),
        ("{paths: ['*']}", request("/anything"), True),
        ("{paths: [/api/*], notPaths: [/api/admin*]}", request("/api/admin/x"), False),
        ("{paths: [/api/*], notPaths: [/api/admin*]}", request("/api/users"), True),
        ("{methods: [GET, HEAD]}", request(method="HEAD"), True),
        ("{methods: [GET, HEAD]}", request(method="POST"), False),
        ("{notMethods: [DELETE]}", request(method="POST"), True),
        ("{notMethods: [DELETE]}", request(method="DELETE"), False),
        ("{ports: [9090]}", request(port=9090), True),
        ("{ports: [9090]}", request(port=8080), False),
        ("{methods: [GET], paths: [/a], ports: [8080]}", request("/a", port=8080), True),
        ("{methods: [GET], paths: [/a], ports: [8080]}", request("/a", port=9090), False),
        ("{methods: [GET], paths: [/a], ports: [8080]}", request("/b", port=8080), False),
    ],
)
def test_operations(operation: str, r: RequestView, expected: bool) -> None:
    chain = engines(policy("p", f"{{rules: [{{to: [{{operation: {operation}}}]}}]}}"))
    assert allowed(chain, r) is expected


@pytest.mark.parametrize(
    ("condition", "headers", "expected"),
    [
        ("{key: 'request.headers[x-tenant]', values: [acme]}", {"x-tenant": "acme"}, True),
        ("{key: 'request.headers[X-Tenant]', values: [acme]}", {"x-tenant": "acme"}, True),
        ("{key: 'request.headers[x-tenant]', values: [acme]}", {"x-tenant": "other"}, False),
        ("{key: 'request.headers[x-tenant]', values: [acme]}", {}, False),
        ("{key: 'request.headers[x-tenant]', values: [ac*]}", {"x-tenant": "acme"}, True),
        ("{key: 'request.headers[x-tenant]', values: ['*me']}", {"x-tenant": "acme"}, True),
        ("{key: 'request.headers[x-tenant]', values: ['*']}", {"x-tenant": ""}, True),
        ("{key: 'request.headers[x-tenant]', values: ['*']}", {}, False),
        ("{key: 'request.headers[x-tenant]', notValues: [test]}", {"x-tenant": "acme"}, True),
        ("{key: 'request.headers[x-tenant]', notValues: [test]}", {"x-tenant": "test"}, False),
        ("{key: 'request.headers[x-tenant]', notValues: [test]}", {}, True),
    ],
)
def test_header_conditions(condition: str, headers: dict[str, str], expected: bool) -> None:
    chain = engines(policy("p", f"{{rules: [{{when: [{condition}]}}]}}"))
    assert allowed(chain, request(headers=headers)) is expected


def test_source_conditions() -> None:
    chain = engines(
        policy(
            "p",
            "{rules: [{when: [{key: source.namespace, values: [web]},"
            " {key: source.principal, notValues: ['*/sa/legacy']}]}]}",
        )
    )
    assert allowed(chain, request(principal=WEB))
    assert not allowed(chain, request(principal=f"{TD}/ns/web/sa/legacy"))
    assert not allowed(chain, request(principal=SHOP_API))


def test_from_to_and_when_are_anded_and_rules_ored() -> None:
    chain = engines(
        policy(
            "p",
            "{rules: ["
            "{from: [{source: {namespaces: [web]}}], to: [{operation: {methods: [GET]}}],"
            " when: [{key: 'request.headers[x-ok]', values: ['1']}]},"
            "{from: [{source: {namespaces: [shop]}}], to: [{operation: {ports: [9090]}}]}]}",
        )
    )
    ok = {"x-ok": "1"}
    assert allowed(chain, request(principal=WEB, headers=ok))
    assert not allowed(chain, request(principal=WEB, headers=ok, method="POST"))
    assert not allowed(chain, request(principal=WEB))
    assert allowed(chain, request(principal=SHOP_API, port=9090, method="DELETE"))
    assert not allowed(chain, request(principal=SHOP_API, port=8080, headers=ok))
    assert not allowed(chain, request(principal=WEB, port=9090))  # web's rule needs GET


def test_several_allow_policies_union_and_name_the_one_that_allowed() -> None:
    chain = engines(
        policy("readers", "{rules: [{to: [{operation: {methods: [GET]}}]}]}"),
        policy("ops", "{rules: [{to: [{operation: {ports: [9090]}}]}]}"),
    )
    assert authorize(chain, request(method="GET")) == Decision(True, "shop/readers")
    assert authorize(chain, request(method="POST", port=9090)) == Decision(True, "shop/ops")
    assert authorize(chain, request(method="POST")) == Decision(False, None)


def test_selector_decides_which_workloads_a_policy_protects() -> None:
    chain = engines(
        policy("other-app", "{selector: {matchLabels: {app: other}}, action: DENY, rules: [{}]}"),
        policy(
            "this-app",
            "{selector: {matchLabels: {app: api}}, rules: [{to: [{operation: {methods: [GET]}}]}]}",
        ),
        policy("other-namespace", "{action: DENY, rules: [{}]}", namespace="web"),
    )
    assert authorize(chain, request(method="GET")) == Decision(True, "shop/this-app")
    assert not allowed(chain, request(method="POST"))


def test_dry_run_deny_only_records() -> None:
    chain = engines(
        policy(
            "dry-deny-deletes",
            "{action: DENY, dryRun: true, rules: [{to: [{operation: {methods: [DELETE]}}]}]}",
        )
    )
    assert authorize(chain, request(method="DELETE")) == Decision(
        True, None, "shop/dry-deny-deletes"
    )
    assert authorize(chain, request(method="GET")) == Decision(True)


def test_dry_run_allow_only_records() -> None:
    chain = engines(
        policy("dry-web-only", "{dryRun: true, rules: [{from: [{source: {namespaces: [web]}}]}]}")
    )
    assert authorize(chain, request(principal=SHOP_API)) == Decision(True, None, NO_POLICY)
    assert authorize(chain, request(principal=WEB)) == Decision(True)


def test_dry_run_next_to_enforced_policies() -> None:
    chain = engines(
        policy("deny-admin", "{action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}"),
        policy(
            "dry-deny-posts",
            "{action: DENY, dryRun: true, rules: [{to: [{operation: {methods: [POST]}}]}]}",
        ),
        policy("allow-web", "{rules: [{from: [{source: {namespaces: [web]}}]}]}"),
        policy("dry-allow-gets", "{dryRun: true, rules: [{to: [{operation: {methods: [GET]}}]}]}"),
    )
    # Enforcement is exactly that of the enforced policies.
    assert authorize(chain, request("/admin", principal=WEB)) == Decision(False, "shop/deny-admin")
    assert authorize(chain, request(principal=WEB, method="POST")) == Decision(
        True, "shop/allow-web", "shop/dry-deny-posts"
    )
    # ALLOW shadow rules are the ALLOW filter with the dry-run policies enforced too: a PUT
    # from shop would still be denied; a GET would be allowed (by dry-allow-gets).
    assert authorize(chain, request(principal=SHOP_API, method="PUT")) == Decision(
        False, None, NO_POLICY
    )
    assert authorize(chain, request(principal=SHOP_API, method="GET")) == Decision(
        False, None, None
    )
