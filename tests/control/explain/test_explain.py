"""`explain(push, request, connected)` on translated config: the trail and the answers.

Each case builds a mesh from YAML, asks what a request from `client` would meet, and
checks the trail (routes tried and why, the split, endpoints, the destination's RBAC
filters) and the answer (status, flags, who answers). The sidecars themselves are
checked against explain on real traffic in tests/integration/test_explain_traffic.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from tests.control.translate.translate_support import load_push

from trellis.control.explain import ConnectedNode, ExplainError, explain, parse_request
from trellis.control.push.context import PushContext
from trellis.control.translate import NodeInfo
from trellis.model.keys import ResourceKey
from trellis.store.base import Lease

SERVICES = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 9080, targetPort: http}]}
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: web-v1}
spec: {selector: {app: web, version: v1}, ports: [{name: http, port: 9080, targetPort: http}]}
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: web-v2}
spec: {selector: {app: web, version: v2}, ports: [{name: http, port: 9080, targetPort: http}]}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: web-1, labels: {app: web, version: v1}}
spec: {address: 10.0.0.1, ports: [{name: http, port: 8001}], inbound: {port: 15006}, mtls: true}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: web-2, labels: {app: web, version: v2}}
spec: {address: 10.0.0.2, ports: [{name: http, port: 8002}], inbound: {port: 15006}, mtls: true}
---
"""
ROUTES = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web-routes}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - name: by-header
    matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: web-v2}]
  - name: split
    matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web-v1, weight: 70}, {name: web-v2, weight: 30}]
    timeouts: {request: 3s, backendRequest: 1s}
    retry: {attempts: 2, codes: [503]}
---
"""
DENY_ADMIN = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules:
    - to: [{operation: {methods: [DELETE]}}]
    - to: [{operation: {paths: ["/admin/*"]}}]
---
"""


def ask(
    push: PushContext,
    method: str,
    url: str,
    *headers: str,
    source: str = "client",
    connected: tuple[ConnectedNode, ...] = (),
    pick: str | None = None,
) -> dict[str, Any]:
    return explain(push, parse_request(source, method, url, headers, pick=pick), connected)


def answer(trail: dict[str, Any]) -> tuple[Any, ...]:
    """The single answer: (status, flags, by)."""
    (a,) = trail["answers"]
    return a["status"], a["flags"], a["by"]


def test_a_header_match_picks_its_backend_and_the_trail_says_why_others_did_not() -> None:
    push = load_push(SERVICES + ROUTES)
    trail = ask(push, "GET", "http://web:9080/items", "X-Version: v2")
    routes = trail["outbound"]["routes"]
    assert [(r["name"], r["matched"]) for r in routes] == [
        ("default/web-routes/by-header/match-0", True)
    ]
    assert trail["outbound"]["untried"] == 1
    assert [b["cluster"] for b in trail["backends"]] == ["outbound|9080||web-v2.default.svc.mesh"]
    (a,) = trail["answers"]
    assert (a["status"], a["by"], a["endpoint"], a["percent"]) == (
        None,
        "destination app",
        "web-2.default",
        100.0,
    )
    other = ask(push, "GET", "http://web:9080/items", "x-version: v3")
    first = other["outbound"]["routes"][0]
    assert not first["matched"] and first["reason"] == "header x-version exact 'v2': 'v3'"


def test_a_weighted_split_shows_every_backend_its_share_and_the_route_policies() -> None:
    push = load_push(SERVICES + ROUTES)
    trail = ask(push, "GET", "http://web.default.svc.mesh:9080/")
    assert [
        (b["cluster"].split("||")[1], b["weight"], b["percent"]) for b in trail["backends"]
    ] == [
        ("web-v1.default.svc.mesh", 70, 70.0),
        ("web-v2.default.svc.mesh", 30, 30.0),
    ]
    route = trail["outbound"]["route"]
    assert route["timeout"] == 3.0
    assert route["retry"]["numRetries"] == 2 and route["retry"]["perTryTimeout"] == 1.0
    assert route["retry"]["retriableStatusCodes"] == [503]
    backend = trail["backends"][0]
    assert backend["config"]["loadBalancing"] == {"kind": "least_request", "choiceCount": 2}
    assert backend["config"]["mtls"] == {
        "peerIdentities": ["spiffe://trellis.local/ns/default/sa/web"]
    }
    assert [e["workload"] for e in backend["endpoints"]] == ["web-1.default"]
    assert backend["endpoints"][0]["destination"]["connection"] == {"mtls": True}
    assert [(a["endpoint"], a["percent"]) for a in trail["answers"]] == [
        ("web-1.default", 70.0),
        ("web-2.default", 30.0),
    ]
    picked = ask(push, "GET", "http://web:9080/", pick="web-v2")
    assert [b["followed"] for b in picked["backends"]] == [False, True]
    assert [a["endpoint"] for a in picked["answers"]] == ["web-2.default"]
    with pytest.raises(ExplainError, match="not a backend"):
        ask(push, "GET", "http://web:9080/", pick="web-v3")


def test_not_found_answers() -> None:
    exact_only = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web-api}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules: [{matches: [{path: {type: PathPrefix, value: /api}}], backendRefs: [{name: web-v1}]}]
"""
    push = load_push(SERVICES + exact_only)
    trail = ask(push, "GET", "http://web:9080/other")
    assert answer(trail) == (404, "NR", "source sidecar")
    assert trail["outbound"]["routes"][0]["reason"] == "path '/other' is not regex '/api(/.*)?'"
    assert answer(ask(push, "GET", "http://web:9080/api/x"))[2] == "destination app"
    port = ask(push, "GET", "http://web:7777/")
    assert answer(port) == (404, "NR", "source sidecar")
    assert "has no port 7777" in port["answers"][0]["reason"]
    # Outside the registry: ALLOW_ANY lets it out, REGISTRY_ONLY answers 502 NR.
    assert answer(ask(push, "GET", "http://nosuch:9080/")) == (None, "", "outside the mesh")
    assert answer(ask(push, "GET", "http://10.9.9.9:80/"))[2] == "outside the mesh"
    registry_only = load_push(
        SERVICES
        + """
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
"""
    )
    trail = ask(registry_only, "GET", "http://nosuch:9080/")
    assert answer(trail) == (502, "NR", "source sidecar")
    assert "REGISTRY_ONLY" in trail["answers"][0]["reason"]


def test_a_denial_names_the_policy_and_the_rule() -> None:
    push = load_push(SERVICES + DENY_ADMIN)
    trail = ask(push, "GET", "http://web-v1:9080/admin/users")
    assert answer(trail) == (403, "RBAC", "destination sidecar")
    assert trail["answers"][0]["policy"] == "default/deny-admin"
    destination = trail["backends"][0]["endpoints"][0]["destination"]
    authz = destination["authorization"]
    assert authz["request"]["principal"] == "spiffe://trellis.local/ns/default/sa/client"
    assert authz["request"]["destinationPort"] == 8001
    (deny,) = authz["filters"]
    (policy,) = deny["rules"]["policies"]
    assert policy["matched"] and [r["rule"] for r in policy["matchingRules"]] == [1]
    assert policy["matchingRules"][0]["spec"]["to"][0]["operation"]["paths"] == ["/admin/*"]
    assert answer(ask(push, "GET", "http://web-v1:9080/shop"))[2] == "destination app"
    # A normalized spelling of the same path is denied the same way.
    assert answer(ask(push, "GET", "http://web-v1:9080/x/%2e%2e/admin//users"))[0] == 403


def test_an_allow_policy_that_matches_nothing_denies_with_policy_none_and_dry_runs_show() -> None:
    push = load_push(
        SERVICES
        + """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-get}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{to: [{operation: {methods: [GET]}}]}]
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: would-deny}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  dryRun: true
  rules: [{to: [{operation: {paths: [/shadow]}}]}]
"""
    )
    post = ask(push, "POST", "http://web-v1:9080/x")
    assert answer(post) == (403, "RBAC", "destination sidecar")
    assert post["answers"][0]["policy"] == "none"
    shadow = ask(push, "GET", "http://web-v1:9080/shadow")
    assert answer(shadow)[2] == "destination app"
    authz = shadow["backends"][0]["endpoints"][0]["destination"]["authorization"]
    assert authz["dryRunDeniedBy"] == "default/would-deny"


def test_path_refusals_faults_redirects_and_missing_endpoints() -> None:
    push = load_push(
        SERVICES
        + """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: empty}
spec: {selector: {app: nobody}, ports: [{name: http, port: 80, targetPort: http}]}
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web-faults}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {path: {type: ReplaceFullPath, replaceFullPath: /new}}
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web-v1}]
    fault: {abort: {httpStatus: 503, percent: 25}}
"""
    )
    refused = ask(push, "GET", "http://web:9080/a%2Fb")
    assert answer(refused) == (400, "DPE", "source sidecar")
    assert refused["outbound"]["path"]["refused"]["status"] == 400
    redirect = ask(push, "GET", "http://web:9080/old/x?q=1")
    assert answer(redirect) == (302, "", "source sidecar")
    assert redirect["answers"][0]["location"] == "http://web:9080/new?q=1"
    faulty = ask(push, "GET", "http://web:9080/x")
    assert [(a["percent"], a["status"], a["flags"]) for a in faulty["answers"]] == [
        (25.0, 503, "FI"),
        (75.0, None, ""),
    ]
    assert answer(ask(push, "GET", "http://empty/")) == (503, "UH", "source sidecar")


def test_members_left_out_of_eds_are_listed_with_why() -> None:
    key = ResourceKey("Workload", "default", "web-2")
    expired = Lease(key, ttl=10, expires_at=1.0, healthy=True)
    push = load_push(SERVICES, leases=[expired], now=1000.0)
    trail = ask(push, "GET", "http://web:9080/")
    (backend,) = trail["backends"]
    assert [e["workload"] for e in backend["endpoints"]] == ["web-1.default"]
    assert backend["excluded"] == [
        {"workload": "web-2.default", "why": "unhealthy, or its lease expired"}
    ]


def test_a_source_without_mtls_meets_a_strict_destination() -> None:
    push = load_push(SERVICES)
    plain = NodeInfo("sidecar~client.default", "sidecar", "client", "default", secure=False)
    trail = ask(push, "GET", "http://web-v1:9080/", connected=(ConnectedNode(plain),))
    assert trail["source"]["from"] == "connected" and trail["source"]["principal"] is None
    assert answer(trail) == (503, "UC", "source sidecar")
    assert "STRICT" in trail["answers"][0]["reason"]


def test_connected_nodes_lend_their_facts() -> None:
    push = load_push(SERVICES + DENY_ADMIN)
    client = NodeInfo(
        "sidecar~client-7.default",
        "sidecar",
        "client-7",
        "default",
        service_account="client",
        labels={"app": "client"},
        secure=True,
    )
    # web-1's node declares other labels than its Workload: its own facts decide.
    web = NodeInfo(
        "sidecar~web-1.default",
        "sidecar",
        "web-1",
        "default",
        labels={"app": "other"},
        ports=(8001,),
        secure=True,
    )
    listener = "trellis/inbound?address=10.0.0.1:15006"
    connected = (
        ConnectedNode(client, (), "spiffe://trellis.local/ns/default/sa/client-cert"),
        ConnectedNode(web, (listener,), "spiffe://trellis.local/ns/default/sa/web"),
    )
    trail = ask(push, "GET", "http://web-v1:9080/admin/x", connected=connected)
    assert trail["source"]["node"] == "sidecar~client-7.default"
    assert trail["source"]["principal"] == "spiffe://trellis.local/ns/default/sa/client-cert"
    destination = trail["backends"][0]["endpoints"][0]["destination"]
    assert destination["node"]["from"] == "connected"
    assert destination["listener"]["name"] == listener
    assert answer(trail)[2] == "destination app"  # no policy selects app=other
    by_id = ask(push, "GET", "http://web-v1:9080/", source="sidecar~client-7.default",
                connected=connected)  # fmt: skip
    assert by_id["source"]["node"] == "sidecar~client-7.default"


@pytest.mark.parametrize(
    ("url", "headers", "method", "why"),
    [
        ("https://web/", (), "GET", "https:// is not explained"),
        ("http:///x", (), "GET", "names no host"),
        ("http://web:99999/", (), "GET", "is not a port"),
        ("http://web/a b", (), "GET", "spaces"),
        ("http://web/", ("no-colon",), "GET", "is not 'name: value'"),
        ("http://web/", ("bad name: v",), "GET", "is not a header name"),
        ("http://web/", (), "GE T", "is not an HTTP method"),
        ("http://web/", (), "CONNECT", "CONNECT tunnels"),
    ],
)
def test_bad_questions_are_refused_with_the_reason(
    url: str, headers: tuple[str, ...], method: str, why: str
) -> None:
    with pytest.raises(ExplainError, match=why):
        parse_request("client", method, url, headers)


def test_an_unknown_node_id_is_refused() -> None:
    with pytest.raises(ExplainError, match="not connected"):
        ask(load_push(SERVICES), "GET", "http://web/", source="sidecar~ghost.default")
