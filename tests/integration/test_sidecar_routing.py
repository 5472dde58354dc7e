"""Routing through real sidecars: HTTPRoute header, query-parameter and method matches pick
the version a request reaches, and one weighted split gives the same shares through our
sidecar (HTTP backends under `trellis run`) as through grpcio's own xDS client (gRPC
backends, proxyless).

Versions are Services with narrower selectors (`web-v1` selects `app=web, version=v1`),
as GAMMA splits traffic; the test is the client, calling `http://web:9080` through a
standalone `trellis proxy`.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.integration.dataplane import client_sidecar
from tests.integration.harness import Mesh, wait_for
from tests.integration.test_grpc_proxyless import assert_all_acked, split_route, two_versions
from tests.integration.traffic import SERVICE_PORT, names, versioned

pytestmark = pytest.mark.integration

URL = f"http://web:{SERVICE_PORT}"

MATCH_ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web-matches}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: web-v2}]
  - matches: [{queryParams: [{name: version, value: "2"}]}]
    backendRefs: [{name: web-v2}]
  - matches: [{path: {type: Exact, value: /orders}, method: POST}]
    backendRefs: [{name: web-v2}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web-v1}]
"""


def test_header_query_and_method_matches_pick_the_version(mesh: Mesh) -> None:
    members = versioned(mesh, "web", ["v1", "v2"])
    v1, v2 = members["v1"].workload, members["v2"].workload
    mesh.cp.apply(MATCH_ROUTE)
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        # Header match: only the exact value moves a call.
        assert names(c, URL + "/", 20, headers={"x-version": "v2"}) == {v2: 20}
        assert names(c, URL + "/", 20, headers={"x-version": "v3"}) == {v1: 20}
        assert names(c, URL + "/", 20) == {v1: 20}
        # Query-parameter match, wherever the parameter sits in the query.
        assert names(c, URL + "/items?version=2", 20) == {v2: 20}
        assert names(c, URL + "/items?a=1&version=2&b=3", 5) == {v2: 5}
        assert names(c, URL + "/items?version=3", 20) == {v1: 20}
        assert names(c, URL + "/items?versions=2", 5) == {v1: 5}
        # Method match (`:method`), on an exact path.
        posted = Counter(c.post(URL + "/orders", content=b"x").json()["name"] for _ in range(20))
        assert posted == {v2: 20}
        assert names(c, URL + "/orders", 20) == {v1: 20}
        puts = Counter(c.put(URL + "/orders", content=b"x").json()["name"] for _ in range(5))
        assert puts == {v1: 5}
        # The app sees the request as sent: path and query untouched.
        answer = c.get(URL + "/items?a=1&version=2", headers={"x-version": "v3"}).json()
        assert answer["path"] == "/items?a=1&version=2"
        assert answer["headers"]["x-version"] == "v3"


def http_split(v1: int, v2: int) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: web-split}}
spec:
  parentRefs: [{{name: web, port: 9080}}]
  rules:
  - backendRefs:
    - {{name: web-v1, port: 9080, weight: {v1}}}
    - {{name: web-v2, port: 9080, weight: {v2}}}
"""


# ±5 points over 2000 calls: 4.9 standard deviations of a 70/30 split (a false
# failure in a million runs for each of the two).
CALLS = 2000


def test_the_same_weights_split_the_same_through_the_sidecar_and_grpcio(mesh: Mesh) -> None:
    # gRPC backends, proxyless: grpcio's xDS client does the split.
    two_versions(mesh)
    mesh.cp.apply(split_route(70, 30))
    summary = mesh.run_client(
        "xds:///greeter:50051", "--calls", str(CALLS), "--csds", "--wait-ready", "10"
    )
    assert summary["errors"] == {}, summary
    assert_all_acked(summary)
    grpc_share = 100 * summary["peers"].get("greeter-a", 0) / summary["calls"]

    # HTTP backends under trellis run, the same weights: our sidecar does the split.
    members = versioned(mesh, "web", ["v1", "v2"])
    mesh.cp.apply(http_split(70, 30))
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        wait_for(lambda: len(names(c, URL + "/", 30)) == 2, 10, "both versions answering")
        tally = names(c, URL + "/", CALLS)
    assert sum(tally.values()) == CALLS and set(tally) == {
        members["v1"].workload,
        members["v2"].workload,
    }, tally
    sidecar_share = 100 * tally[members["v1"].workload] / CALLS

    assert abs(grpc_share - 70) <= 5, f"grpcio sent {grpc_share:.1f}% to v1"
    assert abs(sidecar_share - 70) <= 5, f"the sidecar sent {sidecar_share:.1f}% to v1"
