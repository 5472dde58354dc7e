"""AuthorizationPolicy → RBAC filters on inbound listeners: selection, shape, Istio mapping."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2,
)
from tests.control.translate.translate_support import as_dict, load_push, one

from trellis.control.push.context import PushContext
from trellis.control.translate import LISTENER_TYPE, NodeInfo
from trellis.control.translate.rbac import PROXYLESS, SIDECAR, envoy_policies
from trellis.model.loader import load_documents
from trellis.model.policies import AuthorizationPolicy

RBAC = "envoy.filters.http.rbac"
ROUTER = "envoy.filters.http.router"
SIDECAR_LISTENER = "trellis/inbound?address=10.0.0.1:15006"
PROXYLESS_LISTENER = "trellis/inbound?address=0.0.0.0:50051"
TD = "spiffe://trellis.local"

WORKLOADS = """
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: api-a, namespace: shop, labels: {app: api, version: v1}}
spec: {address: 10.0.0.1, ports: [{port: 8080}], inbound: {port: 15006}}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: grpc-a, namespace: shop, labels: {app: grpc}}
spec: {address: 10.0.0.2, ports: [{port: 50051}], proxyless: true}
"""


def authz(name: str, spec: str, namespace: str = "shop") -> str:
    return f"""
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {{name: {name}, namespace: {namespace}}}
spec: {spec}
"""


def push_with(*policies: str, mesh: str = "") -> PushContext:
    return load_push(WORKLOADS + mesh + "".join(policies))


def sidecar(labels: dict[str, str] | None = None) -> NodeInfo:
    return NodeInfo.parse("sidecar~api-a.shop", {"namespace": "shop", "labels": labels or {}})


def proxyless() -> NodeInfo:
    return NodeInfo.parse("proxyless~grpc-a.shop", {"namespace": "shop"})


def filters(push: PushContext, n: NodeInfo | None = None) -> list[Any]:
    n = n or sidecar()
    name = PROXYLESS_LISTENER if n.kind == "proxyless" else SIDECAR_LISTENER
    listener = one(n, push, LISTENER_TYPE, name)
    hcm = http_connection_manager_pb2.HttpConnectionManager()
    assert listener.filter_chains[0].filters[-1].typed_config.Unpack(hcm)
    return list(hcm.http_filters)


def configs(push: PushContext, n: NodeInfo | None = None) -> list[rbac_pb2.RBAC]:
    out = []
    for f in filters(push, n)[:-1]:
        config = rbac_pb2.RBAC()
        assert f.typed_config.Unpack(config)
        out.append(config)
    return out


def policies_of(config: rbac_pb2.RBAC, shadow: bool = False) -> dict[str, Any]:
    return dict(as_dict(config.shadow_rules if shadow else config.rules).get("policies", {}))


def only_principal(spec: str) -> dict[str, Any]:
    """The single principal of the single Envoy Policy of one DENY policy `spec`."""
    (config,) = configs(push_with(authz("p", "{action: DENY, " + spec + "}")))
    (built,) = policies_of(config).values()
    assert built["permissions"] == [{"any": True}]
    (principal,) = built["principals"]
    return dict(principal)


def authenticated(**matcher: Any) -> dict[str, Any]:
    return {"authenticated": {"principal_name": matcher}}


DENY_ADMIN = authz("deny-admin", "{action: DENY, rules: [{to: [{operation: {paths: [/admin*]}}]}]}")
ALLOW_WEB = authz("allow-web", "{rules: [{from: [{source: {namespaces: [web]}}]}]}")


# -- which filters ------------------------------------------------------------------------


def test_no_policy_no_rbac_filter() -> None:
    push = push_with()
    assert [f.name for f in filters(push)] == [ROUTER]
    assert [f.name for f in filters(push, proxyless())] == [ROUTER]


def test_deny_then_allow_then_router() -> None:
    push = push_with(ALLOW_WEB, DENY_ADMIN)
    assert [f.name for f in filters(push)] == [RBAC, RBAC, ROUTER]
    deny, allow = configs(push)
    assert (
        deny.rules.action
        == rbac_pb2.RBAC.DESCRIPTOR.fields_by_name["rules"]
        .message_type.enum_types_by_name["Action"]
        .values_by_name["DENY"]
        .number
    )
    assert as_dict(deny.rules)["action"] == "DENY"
    assert list(policies_of(deny)) == ["shop/deny-admin"]
    assert allow.HasField("rules") and allow.rules.action == 0  # ALLOW
    assert list(policies_of(allow)) == ["shop/allow-web"]


def test_proxyless_filters_have_unique_names() -> None:
    push = push_with(ALLOW_WEB, DENY_ADMIN)
    names = [f.name for f in filters(push, proxyless())]
    assert names == ["trellis.authz.deny", "trellis.authz.allow", ROUTER]


def test_only_deny_policies_no_allow_filter() -> None:
    (deny,) = configs(push_with(DENY_ADMIN))
    assert as_dict(deny.rules)["action"] == "DENY"


def test_allow_policy_without_rules_allows_nothing() -> None:
    (allow,) = configs(push_with(authz("nothing", "{}")))
    assert allow.HasField("rules")  # present and empty: deny everything
    assert policies_of(allow) == {}
    assert rbac_pb2.RBAC.FromString(allow.SerializeToString()).HasField("rules")


def test_allow_nothing_next_to_another_allow_adds_nothing() -> None:
    (allow,) = configs(push_with(authz("nothing", "{}"), ALLOW_WEB))
    assert list(policies_of(allow)) == ["shop/allow-web"]


def test_deny_policy_without_rules_denies_nothing() -> None:
    (deny,) = configs(push_with(authz("empty", "{action: DENY}")))
    assert deny.HasField("rules") and policies_of(deny) == {}


# -- which policies select the workload ---------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "selected"),
    [
        ("", True),  # no selector: the whole namespace
        ("selector: {matchLabels: {}},", True),
        ("selector: {matchLabels: {app: api}},", True),
        ("selector: {matchLabels: {app: api, version: v1}},", True),
        ("selector: {matchLabels: {app: api, version: v2}},", False),
        ("selector: {matchLabels: {app: other}},", False),
    ],
)
def test_selector_against_registered_workload_labels(selector: str, selected: bool) -> None:
    push = push_with(authz("p", "{" + selector + " action: DENY}"))
    assert len(filters(push)) == (2 if selected else 1)


def test_node_metadata_labels_win_over_the_registered_workload() -> None:
    push = push_with(authz("p", "{selector: {matchLabels: {version: canary}}, action: DENY}"))
    assert len(filters(push, sidecar({"version": "canary"}))) == 2
    assert len(filters(push, sidecar())) == 1  # registered labels: version v1


def test_policies_of_other_namespaces_do_not_apply() -> None:
    push = push_with(authz("p", "{action: DENY}", namespace="web"))
    assert len(filters(push)) == 1


def test_unregistered_workload_without_labels_gets_namespace_wide_policies_only() -> None:
    push = push_with(
        authz("all", "{action: DENY}"), authz("api", "{selector: {matchLabels: {app: api}}}")
    )
    n = NodeInfo.parse("sidecar~ghost.shop", {"namespace": "shop"})
    (deny,) = configs(push, n)
    assert as_dict(deny.rules)["action"] == "DENY"


def test_push_context_indexes_policies_by_namespace_and_name() -> None:
    push = push_with(authz("b", "{}"), authz("a", "{}"), authz("c", "{}", namespace="web"))
    assert [p.name for p in push.authorization_policies("shop", {})] == ["a", "b"]
    assert [p.name for p in push.authorization_policies("web", {"x": "y"})] == ["c"]
    assert push.authorization_policies("none", {}) == ()


# -- dry run ------------------------------------------------------------------------------


def test_dry_run_deny_is_shadow_only_on_sidecars() -> None:
    dry = authz("dry", "{action: DENY, dryRun: true, rules: [{}]}")
    (deny,) = configs(push_with(dry))
    assert not deny.HasField("rules")  # nothing enforced
    assert list(policies_of(deny, shadow=True)) == ["shop/dry"]
    assert as_dict(deny.shadow_rules)["action"] == "DENY"
    assert deny.shadow_rules_stat_prefix == "trellis_dry_run_deny_"


def test_dry_run_deny_next_to_enforced_deny() -> None:
    (deny,) = configs(push_with(DENY_ADMIN, authz("dry", "{action: DENY, dryRun: true}")))
    assert list(policies_of(deny)) == ["shop/deny-admin"]
    assert deny.HasField("shadow_rules") and policies_of(deny, shadow=True) == {}


def test_dry_run_allow_shadows_what_the_allow_filter_would_be() -> None:
    dry = authz("dry", "{dryRun: true, rules: [{to: [{operation: {methods: [GET]}}]}]}")
    (alone,) = configs(push_with(dry))
    assert not alone.HasField("rules")
    assert list(policies_of(alone, shadow=True)) == ["shop/dry"]
    assert alone.shadow_rules_stat_prefix == "trellis_dry_run_allow_"
    (both,) = configs(push_with(dry, ALLOW_WEB))
    assert list(policies_of(both)) == ["shop/allow-web"]
    assert sorted(policies_of(both, shadow=True)) == ["shop/allow-web", "shop/dry"]


def test_proxyless_leaves_dry_run_policies_out() -> None:
    dry_deny = authz("dry", "{action: DENY, dryRun: true, rules: [{}]}")
    dry_allow = authz("dry-allow", "{dryRun: true}")
    assert [f.name for f in filters(push_with(dry_deny, dry_allow), proxyless())] == [ROUTER]
    (allow,) = configs(push_with(dry_allow, ALLOW_WEB), proxyless())
    assert not allow.HasField("shadow_rules")
    assert list(policies_of(allow)) == ["shop/allow-web"]


# -- the Istio mapping --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "matcher"),
    [
        ("trellis.local/ns/web/sa/frontend", {"exact": f"{TD}/ns/web/sa/frontend"}),
        (f"{TD}/ns/web/sa/frontend", {"exact": f"{TD}/ns/web/sa/frontend"}),
        ("trellis.local/ns/web/*", {"prefix": f"{TD}/ns/web/"}),
        (f"{TD}/ns/web/*", {"prefix": f"{TD}/ns/web/"}),
        ("*/sa/frontend", {"suffix": "/sa/frontend"}),
        ("*", {"safe_regex": {"regex": ".+"}}),
    ],
)
def test_principals(value: str, matcher: dict[str, Any]) -> None:
    principal = only_principal(f'rules: [{{from: [{{source: {{principals: ["{value}"]}}}}]}}]')
    assert principal == authenticated(**matcher)


@pytest.mark.parametrize(
    ("value", "matcher"),
    [
        ("web", {"prefix": f"{TD}/ns/web/"}),
        ("web-*", {"prefix": f"{TD}/ns/web-"}),
        ("*-prod", {"safe_regex": {"regex": "spiffe://trellis\\.local/ns/[^/]*-prod/.+"}}),
        ("*", {"prefix": f"{TD}/ns/"}),
    ],
)
def test_namespaces(value: str, matcher: dict[str, Any]) -> None:
    principal = only_principal(f'rules: [{{from: [{{source: {{namespaces: ["{value}"]}}}}]}}]')
    assert principal == authenticated(**matcher)


def test_namespaces_use_the_mesh_trust_domain() -> None:
    mesh = "---\napiVersion: trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
    mesh += "spec: {trustDomain: corp.example}\n"
    push = push_with(authz("p", "{rules: [{from: [{source: {namespaces: [web]}}]}]}"), mesh=mesh)
    (allow,) = configs(push)
    (principal,) = policies_of(allow)["shop/p"]["principals"]
    assert principal == authenticated(prefix="spiffe://corp.example/ns/web/")


def test_source_fields_are_anded_and_values_ored_and_not_fields_negated() -> None:
    principal = only_principal(
        "rules: [{from: [{source: {principals: [a/ns/x/sa/y, '*/sa/z'],"
        " notPrincipals: ['*/sa/bad'], namespaces: [x], notNamespaces: [y]}}]}]"
    )
    assert principal == {
        "and_ids": {
            "ids": [
                {
                    "or_ids": {
                        "ids": [
                            authenticated(exact="spiffe://a/ns/x/sa/y"),
                            authenticated(suffix="/sa/z"),
                        ]
                    }
                },
                {"not_id": authenticated(suffix="/sa/bad")},
                authenticated(prefix=f"{TD}/ns/x/"),
                {"not_id": authenticated(prefix=f"{TD}/ns/y/")},
            ]
        }
    }


def test_several_froms_are_ored() -> None:
    principal = only_principal(
        "rules: [{from: [{source: {namespaces: [a]}}, {source: {namespaces: [b]}}]}]"
    )
    assert principal == {
        "or_ids": {
            "ids": [authenticated(prefix=f"{TD}/ns/a/"), authenticated(prefix=f"{TD}/ns/b/")]
        }
    }


def url_path(**matcher: Any) -> dict[str, Any]:
    return {"url_path": {"path": matcher}}


@pytest.mark.parametrize(
    ("value", "principal"),
    [
        ("/api/v1", url_path(exact="/api/v1")),
        ("/api/*", url_path(prefix="/api/")),
        ("*.css", url_path(suffix=".css")),
        # Any path, but a condition on the path all the same (tunnels have none).
        ("*", {"or_ids": {"ids": [url_path(prefix="/"), url_path(exact="*")]}}),
    ],
)
def test_paths(value: str, principal: dict[str, Any]) -> None:
    got = only_principal(f'rules: [{{to: [{{operation: {{paths: ["{value}"]}}}}]}}]')
    assert got == principal


def method(**match: Any) -> dict[str, Any]:
    return {"header": {"name": ":method", "string_match": match}}


def test_methods_and_not_paths() -> None:
    got = only_principal(
        "rules: [{to: [{operation: {methods: [GET, HEAD], notPaths: [/health]}}]}]"
    )
    assert got == {
        "and_ids": {
            "ids": [
                {"or_ids": {"ids": [method(exact="GET"), method(exact="HEAD")]}},
                {"not_id": url_path(exact="/health")},
            ]
        }
    }


@pytest.mark.parametrize(
    ("value", "header"),
    [
        ("u1", {"name": "x-user", "string_match": {"exact": "u1"}}),
        ("u*", {"name": "x-user", "string_match": {"prefix": "u"}}),
        ("*-bot", {"name": "x-user", "string_match": {"suffix": "-bot"}}),
        ("*", {"name": "x-user", "present_match": True}),
    ],
)
def test_when_request_headers(value: str, header: dict[str, Any]) -> None:
    got = only_principal(
        f'rules: [{{when: [{{key: "request.headers[X-User]", values: ["{value}"]}}]}}]'
    )
    assert got == {"header": header}


def test_when_not_values_and_source_keys() -> None:
    got = only_principal(
        "rules: [{when: [{key: 'request.headers[x-a]', notValues: [b]},"
        " {key: source.namespace, values: [web]}, {key: source.principal, notValues: ['*']}]}]"
    )
    assert got == {
        "and_ids": {
            "ids": [
                {"not_id": {"header": {"name": "x-a", "string_match": {"exact": "b"}}}},
                authenticated(prefix=f"{TD}/ns/web/"),
                {"not_id": authenticated(safe_regex={"regex": ".+"})},
            ]
        }
    }


def test_rules_are_ored_in_one_policy() -> None:
    (config,) = configs(
        push_with(
            authz(
                "p",
                "{rules: [{from: [{source: {namespaces: [a]}}]},"
                " {to: [{operation: {methods: [GET]}}]}]}",
            )
        )
    )
    assert policies_of(config) == {
        "shop/p": {
            "permissions": [{"any": True}],
            "principals": [authenticated(prefix=f"{TD}/ns/a/"), method(exact="GET")],
        }
    }


def test_a_rule_that_matches_everything() -> None:
    (config,) = configs(push_with(authz("all", "{rules: [{}]}")))
    assert policies_of(config) == {
        "shop/all": {"permissions": [{"any": True}], "principals": [{"any": True}]}
    }


def test_ports_are_permissions() -> None:
    (config,) = configs(
        push_with(
            authz(
                "p",
                "{rules: [{from: [{source: {namespaces: [a]}}],"
                " to: [{operation: {ports: [9090, 8080]}}]}]}",
            )
        )
    )
    assert policies_of(config) == {
        "shop/p": {
            "permissions": [{"destination_port": 8080}, {"destination_port": 9090}],
            "principals": [authenticated(prefix=f"{TD}/ns/a/")],
        }
    }


def test_rules_with_different_ports_get_one_policy_each() -> None:
    (config,) = configs(
        push_with(
            authz(
                "p",
                "{rules: [{to: [{operation: {ports: [8080], methods: [GET]}},"
                " {operation: {paths: [/x]}}]},"
                " {to: [{operation: {ports: [8080], paths: [/y]}}]}]}",
            )
        )
    )
    assert policies_of(config) == {
        "shop/p#ports=8080": {
            "permissions": [{"destination_port": 8080}],
            "principals": [method(exact="GET"), url_path(exact="/y")],
        },
        "shop/p#ports=*": {"permissions": [{"any": True}], "principals": [url_path(exact="/x")]},
    }


# -- headers grpcio refuses ---------------------------------------------------------------

REFUSED = (
    "rules: [{to: [{operation: {paths: [/a]}}],"
    " when: [{key: 'request.headers[grpc-x]', values: [v]}]}]"
)


def test_refused_header_fails_closed_in_deny_rules() -> None:
    (deny,) = configs(push_with(authz("p", "{action: DENY, " + REFUSED + "}")), proxyless())
    (built,) = policies_of(deny).values()
    assert built["principals"] == [url_path(exact="/a")]  # the condition is dropped: denies more


def test_refused_header_fails_closed_in_allow_rules() -> None:
    (allow,) = configs(push_with(authz("p", "{" + REFUSED + "}")), proxyless())
    (built,) = policies_of(allow).values()
    assert built["principals"] == [{"not_id": {"any": True}}]  # never matches: allows less


def test_sidecars_keep_every_header() -> None:
    (deny,) = configs(push_with(authz("p", "{action: DENY, " + REFUSED + "}")))
    (built,) = policies_of(deny).values()
    assert {"header": {"name": "grpc-x", "string_match": {"exact": "v"}}} in built["principals"][0][
        "and_ids"
    ]["ids"]


def test_dialects() -> None:
    assert PROXYLESS.refuses(":scheme") and PROXYLESS.refuses("grpc-timeout")
    assert not PROXYLESS.refuses("x-grpc") and not SIDECAR.refuses("grpc-timeout")
    assert SIDECAR.shadow and not PROXYLESS.shadow


# -- stable output ------------------------------------------------------------------------


def test_same_policies_same_bytes() -> None:
    many = [
        authz(f"p{i}", "{action: DENY, rules: [{to: [{operation: {paths: [/a]}}]}]}")
        for i in range(12)
    ]
    first = [f.typed_config.value for f in filters(push_with(*many))]
    again = [f.typed_config.value for f in filters(push_with(*reversed(many)))]
    assert first == again


def test_envoy_policies_of_a_policy_object() -> None:
    (doc,) = load_documents(authz("x", "{rules: [{}]}"))
    assert isinstance(doc, AuthorizationPolicy)
    assert list(envoy_policies(doc, "td", SIDECAR)) == ["shop/x"]
