"""Engine decisions: actions, policy order, shadow rules, and a chain of filters."""

from __future__ import annotations

from envoy.extensions.filters.http.rbac.v3 import rbac_pb2
from tests.authz.authz_support import config, engine, policy, request, rules

from trellis.authz import ALLOWED, NO_POLICY, Decision, Engine, authorize

ADMIN = {"url_path": {"path": {"prefix": "/admin"}}}
GET = {"header": {"name": ":method", "string_match": {"exact": "GET"}}}


def test_no_rules_enforce_nothing() -> None:
    assert Engine.compile(rbac_pb2.RBAC()).evaluate(request()) == ALLOWED


def test_allow_allows_only_what_a_policy_matches() -> None:
    e = engine({"rules": rules("ALLOW", admin=policy([ADMIN]))})
    assert e.evaluate(request("/admin/x")) == Decision(True, "admin")
    assert e.evaluate(request("/x")) == Decision(False, None)


def test_empty_allow_denies_everything() -> None:
    e = engine({"rules": {"action": "ALLOW"}})
    assert e.rules is not None and e.rules.policies == ()
    assert e.evaluate(request()) == Decision(False, None)


def test_deny_denies_what_a_policy_matches_and_names_it() -> None:
    e = engine({"rules": rules("DENY", admin=policy([ADMIN]))})
    assert e.evaluate(request("/admin")) == Decision(False, "admin")
    assert e.evaluate(request("/x")) is ALLOWED


def test_empty_deny_denies_nothing() -> None:
    assert engine({"rules": {"action": "DENY"}}).evaluate(request()) is ALLOWED


def test_log_allows_and_reports_the_matching_policy() -> None:
    e = engine({"rules": rules("LOG", admin=policy([ADMIN]))})
    assert e.evaluate(request("/admin")) == Decision(True, "admin")
    assert e.evaluate(request("/x")) is ALLOWED


def test_policies_are_tried_in_name_order() -> None:
    e = engine({"rules": rules("DENY", b=policy([ADMIN]), a=policy([GET]), c=policy())})
    assert e.rules is not None and [n for n, _, _ in e.rules.policies] == ["a", "b", "c"]
    assert e.evaluate(request("/admin", method="GET")).policy == "a"
    assert e.evaluate(request("/admin", method="PUT")).policy == "b"
    assert e.evaluate(request("/x", method="PUT")).policy == "c"


def test_a_policy_needs_a_permission_and_a_principal() -> None:
    e = engine({"rules": rules("DENY", p=policy([ADMIN], [GET]))})
    assert not e.evaluate(request("/admin", method="GET")).allowed
    assert e.evaluate(request("/admin", method="PUT")).allowed
    assert e.evaluate(request("/x", method="GET")).allowed


def test_permissions_and_principals_are_each_ored() -> None:
    e = engine({"rules": rules("DENY", p=policy([ADMIN, GET], [{"any": True}]))})
    assert not e.evaluate(request("/x", method="GET")).allowed
    assert not e.evaluate(request("/admin", method="PUT")).allowed
    assert e.evaluate(request("/x", method="PUT")).allowed


def test_shadow_deny_reports_the_policy_and_enforces_nothing() -> None:
    e = engine(
        {
            "shadow_rules": rules("DENY", dry=policy([ADMIN])),
            "shadow_rules_stat_prefix": "trellis_dry_run_deny_",
        }
    )
    assert e.rules is None
    assert e.shadow_rules_stat_prefix == "trellis_dry_run_deny_"
    assert e.evaluate(request("/admin")) == Decision(True, None, "dry")
    assert e.evaluate(request("/x")) is ALLOWED


def test_shadow_allow_that_matches_nothing_reports_no_policy() -> None:
    e = engine(
        {
            "rules": rules("ALLOW", all=policy()),
            "shadow_rules": rules("ALLOW", admin=policy([ADMIN])),
        }
    )
    assert e.evaluate(request("/x")) == Decision(True, "all", NO_POLICY)
    assert e.evaluate(request("/admin")) == Decision(True, "all", None)


def test_enforced_and_shadow_rules_decide_independently() -> None:
    e = engine(
        {
            "rules": rules("DENY", admin=policy([ADMIN])),
            "shadow_rules": rules("DENY", gets=policy([GET])),
        }
    )
    assert e.evaluate(request("/admin", method="GET")) == Decision(False, "admin", "gets")
    assert e.evaluate(request("/admin", method="PUT")) == Decision(False, "admin", None)
    assert e.evaluate(request("/x", method="GET")) == Decision(True, None, "gets")


def test_stat_prefixes_are_kept_and_per_rule_stats_ignored() -> None:
    e = engine({"rules_stat_prefix": "inbound_", "track_per_rule_stats": True})
    assert e.rules_stat_prefix == "inbound_"
    assert e.evaluate(request()) is ALLOWED


def test_compile_any_unpacks_the_filter_config() -> None:
    from google.protobuf import any_pb2

    packed = any_pb2.Any()
    packed.Pack(config({"rules": rules("DENY", admin=policy([ADMIN]))}))
    assert not Engine.compile_any(packed).evaluate(request("/admin")).allowed


# -- a chain of filters -------------------------------------------------------------------

DENY_ADMIN = engine({"rules": rules("DENY", **{"shop/deny-admin": policy([ADMIN])})})
ALLOW_GET = engine({"rules": rules("ALLOW", **{"shop/allow-get": policy([GET])})})
SHADOW_DENY_GET = engine({"shadow_rules": rules("DENY", **{"shop/dry": policy([GET])})})


def test_chain_deny_first_then_allow() -> None:
    chain = [DENY_ADMIN, ALLOW_GET]
    assert authorize(chain, request("/admin", method="GET")) == Decision(False, "shop/deny-admin")
    assert authorize(chain, request("/x", method="GET")) == Decision(True, "shop/allow-get")
    assert authorize(chain, request("/x", method="PUT")) == Decision(False, None)


def test_chain_without_filters_allows() -> None:
    assert authorize([], request()) is ALLOWED


def test_chain_reports_the_first_shadow_denial_of_the_filters_that_ran() -> None:
    chain = [SHADOW_DENY_GET, DENY_ADMIN, ALLOW_GET]
    assert authorize(chain, request("/x", method="GET")) == Decision(
        True, "shop/allow-get", "shop/dry"
    )
    assert authorize(chain, request("/admin", method="GET")) == Decision(
        False, "shop/deny-admin", "shop/dry"
    )
    assert authorize(chain, request("/x", method="PUT")) == Decision(False, None, None)
    # A filter after a denial does not run, so its shadow rules are not evaluated.
    assert authorize([DENY_ADMIN, SHADOW_DENY_GET], request("/admin", method="GET")) == Decision(
        False, "shop/deny-admin", None
    )
