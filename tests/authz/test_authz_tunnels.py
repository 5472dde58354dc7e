"""Tunnels (CONNECT) are authorized at L4, with Istio's semantics for TCP traffic: the
requests a tunnel carries are never seen, so an ALLOW rule that needs an HTTP attribute
(method, path, header) never matches one, and a DENY rule's HTTP conditions never spare
one; principals, source addresses and destination ports are known and decide as usual.

The engine compiles each policy a second time for tunnels (surely for ALLOW, possibly for
DENY); a property checks both against every request a tunnel could carry. Then the real
translator: a policy on a workload, replayed with tunnels as its sidecar would."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.authz.authz_support import (
    WEB,
    engine,
    inbound_engines,
    policy,
    request,
    rules,
    tunnel,
)
from tests.control.translate.translate_support import load_push

from trellis.authz import NO_POLICY, Decision, Engine, RequestView, authorize
from trellis.authz.matchers import POSSIBLE, REQUEST, SURE, compile_permission
from trellis.authz.request import RequestView as View

OTHER = "spiffe://trellis.local/ns/shop/sa/batch"
PATH_ADMIN = {"url_path": {"path": {"prefix": "/admin"}}}
METHOD_CONNECT = {"header": {"name": ":method", "string_match": {"exact": "CONNECT"}}}
FROM_WEB = {"authenticated": {"principal_name": {"exact": WEB}}}


def allow(**principals: Any) -> Engine:
    return engine({"rules": rules("ALLOW", **principals)})


def deny(**principals: Any) -> Engine:
    return engine({"rules": rules("DENY", **principals)})


def by(*principals: dict[str, Any], permissions: list[dict[str, Any]] | None = None) -> Any:
    return policy(permissions=permissions, principals=list(principals))


# -- ALLOW: matches a tunnel only when it needs no HTTP attribute -------------------------


def test_an_allow_rule_on_a_path_never_matches_a_tunnel() -> None:
    e = allow(p=by(PATH_ADMIN))
    assert e.evaluate(request("/admin/x")).allowed
    assert not e.evaluate(tunnel()).allowed


def test_an_allow_rule_on_the_method_connect_does_not_match_a_tunnel_either() -> None:
    """`methods` is an HTTP attribute like the others: a tunnel's inner methods are unknown."""
    e = allow(p=by(METHOD_CONNECT))
    assert e.evaluate(request(method="CONNECT")).allowed
    assert not e.evaluate(tunnel()).allowed


def test_an_allow_rule_on_who_calls_matches_a_tunnel_from_them() -> None:
    e = allow(p=by(FROM_WEB))
    assert e.evaluate(tunnel(principal=WEB)) == Decision(True, "p")
    assert not e.evaluate(tunnel(principal=OTHER)).allowed
    assert not e.evaluate(tunnel()).allowed  # plaintext: no principal


def test_an_allow_rule_on_a_port_matches_a_tunnel_to_it() -> None:
    e = allow(p=policy(permissions=[{"destination_port": 9000}]))
    assert e.evaluate(tunnel(port=9000)).allowed
    assert not e.evaluate(tunnel(port=8080)).allowed


def test_an_allow_rule_that_needs_a_path_among_others_does_not_match() -> None:
    e = allow(p=by({"and_ids": {"ids": [FROM_WEB, PATH_ADMIN]}}))
    assert not e.evaluate(tunnel(principal=WEB)).allowed
    e = allow(p=by({"or_ids": {"ids": [FROM_WEB, PATH_ADMIN]}}))  # one alternative suffices
    assert e.evaluate(tunnel(principal=WEB)).allowed
    assert not e.evaluate(tunnel(principal=OTHER)).allowed


def test_an_allow_rule_excluding_a_path_does_not_match_a_tunnel() -> None:
    """notPaths: the tunnel may carry that path."""
    e = allow(p=by({"not_id": PATH_ADMIN}))
    assert e.evaluate(request("/public")).allowed
    assert not e.evaluate(tunnel()).allowed


# -- DENY: a rule's HTTP conditions never spare a tunnel ----------------------------------


def test_a_deny_rule_on_a_path_denies_every_tunnel() -> None:
    e = deny(p=by(PATH_ADMIN))
    assert e.evaluate(request("/public")).allowed
    assert e.evaluate(tunnel()) == Decision(False, "p")


def test_a_deny_rule_excluding_a_path_denies_every_tunnel() -> None:
    e = deny(p=by({"not_id": PATH_ADMIN}))
    assert e.evaluate(request("/admin")).allowed
    assert not e.evaluate(tunnel()).allowed


def test_a_deny_rule_still_needs_its_l4_conditions() -> None:
    e = deny(p=by({"and_ids": {"ids": [FROM_WEB, PATH_ADMIN]}}))
    assert not e.evaluate(tunnel(principal=WEB)).allowed
    assert e.evaluate(tunnel(principal=OTHER)).allowed
    on_other_port = deny(p=policy([{"destination_port": 9090}], [PATH_ADMIN]))
    assert on_other_port.evaluate(tunnel(port=8080)).allowed
    assert not on_other_port.evaluate(tunnel(port=9090)).allowed


def test_a_deny_rule_on_a_header_denies_every_tunnel() -> None:
    e = deny(p=by({"header": {"name": "x-evil", "present_match": True}}))
    assert e.evaluate(tunnel(headers={})).allowed is False


def test_shadow_rules_report_tunnels_the_same_way() -> None:
    e = engine({"shadow_rules": rules("DENY", p=by(PATH_ADMIN))})
    assert e.evaluate(tunnel()) == Decision(True, None, "p")
    e = engine({"shadow_rules": rules("ALLOW", p=by(PATH_ADMIN))})
    assert e.evaluate(tunnel()) == Decision(True, None, NO_POLICY)


# -- soundness: SURE and POSSIBLE against every request a tunnel could carry --------------

LEAVES = [
    {"url_path": {"path": {"prefix": "/admin"}}},
    {"url_path": {"path": {"exact": "/"}}},
    {"header": {"name": ":method", "string_match": {"exact": "GET"}}},
    METHOD_CONNECT,
    {"header": {"name": "x-a", "present_match": True}},
    {"header": {"name": ":path", "string_match": {"prefix": "/admin"}}},
    {"destination_port": 8080},
    {"any": True},
]
INNER = [
    ("GET", "/admin", {}),
    ("POST", "/", {"x-a": "1"}),
    ("CONNECT", "/public", {}),
    ("DELETE", "/admin/x", {"x-a": "2"}),
    ("GET", "/", {}),
]


def trees() -> st.SearchStrategy[dict[str, Any]]:
    return st.recursive(
        st.sampled_from(LEAVES),
        lambda inner: st.one_of(
            st.lists(inner, min_size=1, max_size=3).map(lambda r: {"and_rules": {"rules": r}}),
            st.lists(inner, min_size=1, max_size=3).map(lambda r: {"or_rules": {"rules": r}}),
            inner.map(lambda r: {"not_rule": r}),
        ),
        max_leaves=6,
    )


@settings(max_examples=300)
@given(trees(), st.sampled_from([8080, 9090]))
def test_sure_and_possible_bound_every_request_the_tunnel_could_carry(
    tree: dict[str, Any], port: int
) -> None:
    from envoy.config.rbac.v3 import rbac_pb2
    from google.protobuf.json_format import ParseDict

    permission = ParseDict(tree, rbac_pb2.Permission())
    for_requests = compile_permission(permission, "p", REQUEST)
    sure = compile_permission(permission, "p", SURE)
    possible = compile_permission(permission, "p", POSSIBLE)
    t = tunnel(port=port)
    inner = [
        for_requests(View(destination_port=port, method=m, path=p, headers=h)) for m, p, h in INNER
    ]
    if sure(t):
        assert all(inner), tree
    if not possible(t):
        assert not any(inner), tree


# -- through the translator, as the sidecar of a workload with a tcp port ----------------

WORKLOAD = """
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: db-a, namespace: shop, labels: {app: db}}
spec: {address: 10.0.0.1, ports: [{port: 5432, protocol: tcp}, {port: 8080}],
       inbound: {port: 15006}}
"""
LISTENER = "trellis/inbound?address=10.0.0.1:15006"


def chain(*policies: str) -> list[Engine]:
    docs = "".join(
        f"\n---\napiVersion: trellis.dev/v1alpha1\nkind: AuthorizationPolicy\n"
        f"metadata: {{name: p{i}, namespace: shop}}\nspec: {spec}\n"
        for i, spec in enumerate(policies)
    )
    return inbound_engines(load_push(WORKLOAD + docs), "shop", "db-a", LISTENER)


def decide(engines: list[Engine], view: RequestView) -> bool:
    return authorize(engines, view).allowed


@pytest.mark.parametrize(
    ("spec", "from_web", "from_other"),
    [
        ("{action: DENY, rules: [{to: [{operation: {paths: [/admin]}}]}]}", False, False),
        ("{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}", False, False),
        (
            "{action: DENY, rules: [{from: [{source: {principals: ['*/sa/batch']}}],"
            " to: [{operation: {paths: [/admin]}}]}]}",
            True,
            False,
        ),
        ("{action: DENY, rules: [{to: [{operation: {ports: [8080], paths: [/x]}}]}]}", True, True),
        ("{rules: [{to: [{operation: {paths: ['/public/*']}}]}]}", False, False),
        ("{rules: [{to: [{operation: {methods: [CONNECT]}}]}]}", False, False),
        # `*` still names an HTTP attribute: Istio drops such a rule for TCP traffic.
        ("{rules: [{to: [{operation: {paths: ['*']}}]}]}", False, False),
        ("{rules: [{to: [{operation: {methods: ['*']}}]}]}", False, False),
        ("{action: DENY, rules: [{to: [{operation: {paths: ['*']}}]}]}", False, False),
        (f'{{rules: [{{from: [{{source: {{principals: ["{WEB}"]}}}}]}}]}}', True, False),
        ("{rules: [{to: [{operation: {ports: [5432]}}]}]}", True, True),
        ("{rules: [{}]}", True, True),
    ],
)
def test_translated_policies_decide_tunnels_as_istio_decides_tcp(
    spec: str, from_web: bool, from_other: bool
) -> None:
    engines = chain(spec)
    assert decide(engines, tunnel(principal=WEB, port=5432)) is from_web
    assert decide(engines, tunnel(principal=OTHER, port=5432)) is from_other
