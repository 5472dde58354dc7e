"""`trellis explain` predicts what real sidecars do, on real traffic.

A mesh of `web` (v1 and v2 under `trellis run`, mTLS) behind an HTTPRoute (a header
match, a weighted split on /api, nothing else) and a DENY policy, called by the test
through a standalone client sidecar. For a header-routed, a weighted, a not-found (no
route, an unknown port, a host outside the registry under REGISTRY_ONLY) and a denied
request, the real CLI (`trellis explain --from client ... -o json`, a subprocess) is
asked first, then the same request is sent through the sidecars: the status, the
response flags and the backend that answered must be the ones explain named, and the
split observed over many calls must be explain's shares within a tolerance.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections import Counter
from typing import Any

import httpx
import pytest

from tests.integration.dataplane import TRELLIS, Member, Sidecar, client_sidecar
from tests.integration.harness import TOKEN, Mesh, wait_for
from tests.integration.traffic import FLAGS, SERVICE_PORT, versioned

pytestmark = pytest.mark.integration

URL = f"http://web:{SERVICE_PORT}"
ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web-explained}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - name: by-header
    matches: [{headers: [{name: x-version, value: v2}]}]
    backendRefs: [{name: web-v2}]
  - name: split
    matches: [{path: {type: PathPrefix, value: /api}}]
    backendRefs: [{name: web-v1, weight: 70}, {name: web-v2, weight: 30}]
"""
DENY = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/api/admin/*"]}}]}]
"""
REGISTRY_ONLY = """
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {outboundTrafficPolicy: {mode: REGISTRY_ONLY}}
"""
# ±7 points over 1000 calls: 4.8 standard deviations of a 70/30 split.
CALLS = 1000
TOLERANCE = 7.0


def explain(mesh: Mesh, method: str, url: str, *headers: str) -> dict[str, Any]:
    """`trellis explain --from client METHOD URL -H ... -o json`, the real CLI."""
    argv = [TRELLIS, "explain", "--server", mesh.cp.api, "--from", "client", method, url]
    for h in headers:
        argv += ["-H", h]
    env = {**os.environ, "TRELLIS_TOKEN": TOKEN, "TRELLIS_CONFIG": str(mesh.tmp / "none.json")}
    done = subprocess.run(
        [*argv, "-o", "json"], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    trail: dict[str, Any] = json.loads(done.stdout)
    assert trail["source"]["node"] == "sidecar~client.default", trail["source"]
    assert trail["source"]["from"] == "connected"
    text = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
    assert text.returncode == 0 and "Answer" in text.stdout, text.stderr  # readable form too
    return trail


def predicted(trail: dict[str, Any]) -> dict[tuple[int, str, str], float]:
    """(status, flags, workload that answers or "") → share in percent. An answer the app
    gives is the demo app's 200."""
    out: Counter[tuple[int, str, str]] = Counter()
    for a in trail["answers"]:
        if a["status"] is None:
            assert a["by"] == "destination app", a
            key = (200, "", a["endpoint"].rpartition(".")[0])
        else:
            key = (a["status"], a["flags"], "")
        out[key] += a["percent"]
    return dict(out)


def observed(
    client: httpx.Client, method: str, url: str, n: int, **kw: Any
) -> Counter[tuple[int, str, str]]:
    """What the sidecars answered `n` such requests: (status, flags, workload or "")."""
    out: Counter[tuple[int, str, str]] = Counter()
    for _ in range(n):
        r = client.request(method, url, **kw)
        name = r.json()["name"] if r.status_code == 200 else ""
        out[(r.status_code, r.headers.get(FLAGS, ""), name)] += 1
    return out


def agree(
    mesh: Mesh, client: httpx.Client, method: str, url: str, *headers: str, n: int = 20
) -> dict[tuple[int, str, str], float]:
    """Explain the request, send it `n` times, and require every real answer to be one
    explain predicted (all of them when it predicted one)."""
    expected = predicted(explain(mesh, method, url, *headers))
    sent = dict(h.split(": ", 1) for h in headers)
    real = observed(client, method, url, n, headers=sent)
    assert set(real) <= set(expected), f"explain said {expected}, the sidecars did {dict(real)}"
    if len(expected) == 1:
        assert set(real) == set(expected)
    return expected


@pytest.fixture
def web(mesh: Mesh) -> tuple[dict[str, Member], Sidecar]:
    members = versioned(mesh, "web", ["v1", "v2"])
    mesh.cp.apply(ROUTE + "---\n" + DENY)
    client = client_sidecar(mesh)
    with client.client() as c:
        v2 = members["v2"].workload
        wait_for(
            lambda: c.get(URL + "/x", headers={"x-version": "v2"}).json().get("name") == v2,
            20,
            "the header route at the client sidecar",
        )
        wait_for(lambda: c.get(URL + "/api/admin/x").status_code == 403, 20, "the DENY policy")
    return members, client


def test_header_routed_and_denied_requests(
    mesh: Mesh, web: tuple[dict[str, Member], Sidecar]
) -> None:
    members, client = web
    v2 = members["v2"].workload
    with client.client() as c:
        header = agree(mesh, c, "GET", URL + "/x", "x-version: v2")
        assert header == {(200, "", v2): 100.0}
        denied = agree(mesh, c, "GET", URL + "/api/admin/users", n=30)
        assert set(denied) == {(403, "RBAC", "")}
        trail = explain(mesh, "GET", URL + "/api/admin/users")
        assert {a["policy"] for a in trail["answers"]} == {"default/deny-admin"}
        # The header route wins over the split; the DENY policy still applies behind it.
        assert agree(mesh, c, "GET", URL + "/api/admin/x", "x-version: v2") == {
            (403, "RBAC", ""): 100.0
        }


def test_not_found_requests(mesh: Mesh, web: tuple[dict[str, Member], Sidecar]) -> None:
    _, client = web
    with client.client() as c:
        assert agree(mesh, c, "GET", URL + "/other") == {(404, "NR", ""): 100.0}
        assert agree(mesh, c, "GET", "http://web:7777/") == {(404, "NR", ""): 100.0}
        mesh.cp.apply(REGISTRY_ONLY)
        outside = "http://nosuch.example/"
        wait_for(lambda: c.get(outside).status_code == 502, 20, "REGISTRY_ONLY at the sidecar")
        assert agree(mesh, c, "GET", outside) == {(502, "NR", ""): 100.0}


def test_a_weighted_split(mesh: Mesh, web: tuple[dict[str, Member], Sidecar]) -> None:
    members, client = web
    v1, v2 = members["v1"].workload, members["v2"].workload
    trail = explain(mesh, "GET", URL + "/api/items")
    shares = predicted(trail)
    assert set(shares) == {(200, "", v1), (200, "", v2)}, shares
    weights = {b["cluster"].split("||")[1]: b["weight"] for b in trail["backends"]}
    assert weights == {"web-v1.default.svc.mesh": 70, "web-v2.default.svc.mesh": 30}
    with client.client() as c:
        real = observed(c, "GET", URL + "/api/items", CALLS)
    assert set(real) == set(shares), real
    for key, percent in shares.items():
        share = 100 * real[key] / CALLS
        assert abs(share - percent) <= TOLERANCE, (
            f"explain said {percent:.1f}% for {key[2]}, the sidecars sent {share:.1f}%"
        )
