"""trellis.authz.explain: `authorize`'s decision with its trail, from the same predicates.

Properties over random AuthorizationPolicies (the generators of test_authz_properties,
through the real translator) and random requests and tunnels: the trail's decision is
`authorize`'s, each filter's is `Engine.evaluate`'s, each RuleSet's policy is the first
policy its trail marks matched, and a policy is marked matched exactly when one of its
permissions and one of its principals match."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.authz.authz_support import engine, inbound_engines, policy, request, rules, tunnel
from tests.authz.test_authz_properties import PEERS, PORTS, documents, istio_requests, specs
from tests.control.translate.translate_support import load_push

from trellis.authz import Engine, RequestView, RulesCheck, authorize, explain

tunnels = st.builds(
    lambda peer, port: tunnel(principal=peer, port=port),
    st.sampled_from(PEERS),
    st.sampled_from(PORTS),
)


def check_rules(rules_check: RulesCheck | None) -> None:
    if rules_check is None:
        return
    first = next((p.name for p in rules_check.policies if p.matched), None)
    assert rules_check.policy == first
    for p in rules_check.policies:
        assert p.matched == (bool(p.permissions) and bool(p.principals)), p
    if rules_check.action == "ALLOW":
        assert rules_check.allowed == (first is not None)
    elif rules_check.action == "DENY":
        assert rules_check.allowed == (first is None)


def check_trail(chain: list[Engine], r: RequestView) -> None:
    trail = explain(chain, r)
    assert trail.decision == authorize(chain, r)
    assert len(trail.filters) == len(chain)
    for engine_, check in zip(chain, trail.filters, strict=True):
        assert check.decision == engine_.evaluate(r)
        check_rules(check.rules)
        check_rules(check.shadow)
    denials = [i for i, c in enumerate(trail.filters) if not c.decision.allowed]
    assert trail.ran == (denials[0] + 1 if denials else len(chain))
    assert trail.decision.allowed == (not denials)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(specs, max_size=4),
    st.lists(st.one_of(istio_requests, tunnels), min_size=1, max_size=6),
)
def test_explain_decides_as_authorize(
    specs_: list[dict[str, Any]], reqs: list[RequestView]
) -> None:
    push = load_push(documents(specs_))
    chain = inbound_engines(push, "shop", "api-a", "trellis/inbound?address=10.0.0.1:15006")
    for r in reqs:
        check_trail(chain, r)


def test_which_permissions_and_principals_match() -> None:
    e = engine(
        {
            "rules": rules(
                "DENY",
                b=policy(
                    [{"destination_port": 80}, {"destination_port": 8080}],
                    [
                        {"url_path": {"path": {"prefix": "/admin"}}},
                        {"header": {"name": ":method", "exact_match": "GET"}},
                        {"url_path": {"path": {"prefix": "/"}}},
                    ],
                ),
                a=policy([{"destination_port": 9090}]),
            )
        }
    )
    check = e.explain(request("/admin/x", port=8080))
    assert check.rules is not None and check.shadow is None
    a, b = check.rules.policies
    assert (a.name, a.matched, a.permissions, a.principals) == ("a", False, (), (0,))
    assert (b.name, b.matched, b.permissions, b.principals) == ("b", True, (1,), (0, 1, 2))
    assert check.rules.policy == "b" and not check.decision.allowed
    assert e.explain(request("/x", method="POST", port=80)).rules.policies[1].principals == (2,)  # type: ignore[union-attr]


def test_tunnels_are_explained_on_the_tunnel_predicates() -> None:
    """An ALLOW rule that needs a path never matches a tunnel; its principal part does."""
    e = engine(
        {
            "rules": rules(
                "ALLOW",
                p=policy(
                    [{"destination_port": 8080}],
                    [
                        {
                            "and_ids": {
                                "ids": [{"any": True}, {"url_path": {"path": {"prefix": "/"}}}]
                            }
                        }
                    ],
                ),
            )
        }
    )
    assert e.evaluate(request("/x")).allowed
    check = e.explain(tunnel())
    assert check.rules is not None
    (p,) = check.rules.policies
    assert (p.matched, p.permissions, p.principals) == (False, (0,), ())
    assert not check.decision.allowed


def test_shadow_rules_are_explained_beside_the_enforced_ones() -> None:
    e = engine(
        {
            "shadow_rules": rules("DENY", dry=policy(principals=[{"any": True}])),
            "rules": rules("ALLOW", p=policy()),
        }
    )
    check = e.explain(request())
    assert check.decision.allowed and check.decision.shadow_denied_by == "dry"
    assert check.shadow is not None and check.shadow.policy == "dry" and not check.shadow.allowed
    assert check.rules is not None and check.rules.policy == "p"


def test_a_chain_stops_at_its_first_denial() -> None:
    deny_all = engine({"rules": rules("DENY", d=policy())})
    allow_none = engine({"rules": rules("ALLOW")})
    trail = explain([deny_all, allow_none], request())
    assert trail.ran == 1 and trail.decision.policy == "d" and not trail.decision.allowed
    assert not trail.filters[1].decision.allowed  # checked, but it did not run
    assert explain([], request()).decision == authorize([], request())
