"""Configs the engine refuses: the error names the field and says why (the NACK message)."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import any_pb2, wrappers_pb2
from tests.authz.authz_support import config, engine, policy, rules

from trellis.authz import Engine, RbacConfigError

P = "rules.policies[p]"


def error_of(doc: dict[str, Any]) -> RbacConfigError:
    with pytest.raises(RbacConfigError) as info:
        engine(doc)
    return info.value


def with_permission(permission: dict[str, Any]) -> dict[str, Any]:
    return {"rules": rules("ALLOW", p=policy(permissions=[permission]))}


def with_principal(principal: dict[str, Any]) -> dict[str, Any]:
    return {"rules": rules("ALLOW", p=policy(principals=[principal]))}


@pytest.mark.parametrize(
    ("doc", "path", "reason"),
    [
        ({"matcher": {}}, "matcher", "not supported"),
        ({"shadow_matcher": {}}, "shadow_matcher", "not supported"),
        (
            {"rules": {"action": "DENY", "audit_logging_options": {}}},
            "rules.audit_logging_options",
            "not supported",
        ),
        (
            {"rules": rules("ALLOW", p={**policy(), "condition": {"id": 1}})},
            f"{P}.condition",
            "not supported",
        ),
        (
            {"rules": rules("ALLOW", p={"principals": [{"any": True}]})},
            f"{P}.permissions",
            "at least one",
        ),
        (
            {"rules": rules("ALLOW", p={"permissions": [{"any": True}]})},
            f"{P}.principals",
            "at least one",
        ),
        (with_permission({"any": False}), f"{P}.permissions[0].any", "must be true"),
        (with_permission({}), f"{P}.permissions[0]", "needs a rule"),
        (with_permission({"and_rules": {}}), f"{P}.permissions[0].and_rules.rules", "at least one"),
        (
            with_permission({"or_rules": {"rules": [{"any": True}, {"metadata": {}}]}}),
            f"{P}.permissions[0].or_rules.rules[1].metadata",
            "dynamic metadata",
        ),
        (
            with_permission({"not_rule": {"destination_ip": {"address_prefix": "10.0.0.0"}}}),
            f"{P}.permissions[0].not_rule.destination_ip",
            "destination address",
        ),
        (
            with_permission({"requested_server_name": {"exact": "x"}}),
            f"{P}.permissions[0].requested_server_name",
            "SNI",
        ),
        (
            with_permission({"destination_port_range": {"start": 9, "end": 1}}),
            f"{P}.permissions[0].destination_port_range",
            "greater than end",
        ),
        (
            with_permission({"destination_port": 70000}),
            f"{P}.permissions[0].destination_port",
            "port",
        ),
        (with_permission({"url_path": {}}), f"{P}.permissions[0].url_path.path", "string matcher"),
        (
            with_permission({"url_path": {"path": {"prefix": ""}}}),
            f"{P}.permissions[0].url_path.path.prefix",
            "non-empty",
        ),
        (
            with_permission(
                {"header": {"name": "x", "string_match": {"safe_regex": {"regex": "(?=a)"}}}}
            ),
            f"{P}.permissions[0].header.string_match.safe_regex",
            "lookahead is not supported by RE2",
        ),
        (
            with_permission({"header": {"exact_match": "x"}}),
            f"{P}.permissions[0].header.name",
            "needs a name",
        ),
        (with_principal({}), f"{P}.principals[0]", "needs an identifier"),
        (with_principal({"or_ids": {}}), f"{P}.principals[0].or_ids.ids", "at least one"),
        (
            with_principal({"filter_state": {"key": "k"}}),
            f"{P}.principals[0].filter_state",
            "filter state",
        ),
        (
            with_principal({"direct_remote_ip": {"address_prefix": "10.0.0.x", "prefix_len": 8}}),
            f"{P}.principals[0].direct_remote_ip",
            "bad CIDR",
        ),
        (
            with_principal({"remote_ip": {"address_prefix": "10.0.0.0", "prefix_len": 33}}),
            f"{P}.principals[0].remote_ip",
            "bad CIDR",
        ),
        (
            with_principal(
                {"authenticated": {"principal_name": {"safe_regex": {"regex": "a\\1"}}}}
            ),
            f"{P}.principals[0].authenticated.principal_name.safe_regex",
            "backreferences",
        ),
        (
            {"shadow_rules": rules("DENY", p=policy(principals=[{"not_id": {"metadata": {}}}]))},
            "shadow_rules.policies[p].principals[0].not_id.metadata",
            "dynamic metadata",
        ),
    ],
)
def test_errors_name_the_field(doc: dict[str, Any], path: str, reason: str) -> None:
    e = error_of(doc)
    assert e.path == path, e
    assert reason in e.reason, e
    assert str(e) == f"{path}: {e.reason}"


def test_compile_any_refuses_another_type() -> None:
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.StringValue(value="x"))
    with pytest.raises(RbacConfigError) as info:
        Engine.compile_any(packed)
    assert info.value.path == "typed_config"
    assert "envoy.extensions.filters.http.rbac.v3.RBAC" in info.value.reason


def test_unknown_action_is_refused() -> None:
    raw = config({})
    raw.rules.action = 7
    with pytest.raises(RbacConfigError, match=r"rules\.action: unknown action 7"):
        Engine.compile(raw)


def test_error_survives_pickling() -> None:
    import pickle

    e = pickle.loads(pickle.dumps(RbacConfigError("a.b", "why")))
    assert (e.path, e.reason) == ("a.b", "why")
