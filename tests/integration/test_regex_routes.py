"""Route regexes through real sidecars: RE2 at run time, the program-size limit at apply.

A route `/(a+)+` and a path of 40 `a`s and a `!` took Python's `re` ~2**40 steps:
the sidecar's event loop stalled and every request through it waited. With RE2
the request falls through to the next rule at once, and traffic keeps flowing
beside it. A regex over the program-size limit is refused by the real REST API
with its field path, and nothing is stored.

The test is the client, calling `http://web:9080` through a standalone
`trellis proxy`; the versions are `trellis run` members (as test_sidecar_routing).
"""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.integration.dataplane import client_sidecar
from tests.integration.harness import Mesh, wait_for
from tests.integration.traffic import SERVICE_PORT, names, versioned

pytestmark = pytest.mark.integration

URL = f"http://web:{SERVICE_PORT}"
EVIL = "/" + "a" * 40 + "!"

REGEX_ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web-regex}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - matches: [{path: {type: RegularExpression, value: "/(a+)+"}}]
    backendRefs: [{name: web-v2}]
  - matches: [{headers: [{name: x-id, type: RegularExpression, value: "(a|aa)+"}]}]
    backendRefs: [{name: web-v2}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    backendRefs: [{name: web-v1}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web-v1}]
"""


def answered_by(client: httpx.Client, path: str, **kw: object) -> str:
    r = client.get(URL + path, **kw)  # type: ignore[arg-type]
    assert r.status_code == 200, (path, r.status_code, r.text)
    return str(r.json()["name"])


@pytest.mark.timeout(240)  # with Python's `re` the evil request never ends: this bounds it
def test_nested_quantifiers_do_not_stall_the_sidecar(mesh: Mesh) -> None:
    members = versioned(mesh, "web", ["v1", "v2"])
    v1, v2 = members["v1"].workload, members["v2"].workload
    mesh.cp.apply(REGEX_ROUTE)
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        wait_for(lambda: names(c, URL + "/aaaa", 1) == {v2: 1}, 20, "the regex route")
        # Path: no match, the request falls through to `/` at once.
        assert answered_by(c, EVIL) == v1
        assert answered_by(c, "/" + "a" * 40) == v2
        # Header: the same for a header regex.
        assert answered_by(c, "/", headers={"x-id": "a" * 40 + "!"}) == v1
        assert answered_by(c, "/", headers={"x-id": "a" * 40}) == v2
        # A prefix rewrite (an RE2 GlobalReplace in the translated config) reaches the app.
        assert c.get(URL + "/old/x?q=1").json()["path"] == "/new/x?q=1"

    # Evil and ordinary requests side by side: every one is answered.
    def one(path: str) -> str:
        with sidecar.client() as client:
            return answered_by(client, path)

    paths = [EVIL, "/", "/items?x=1", EVIL + "!", "/", "/aaa"] * 5
    with ThreadPoolExecutor(max_workers=6) as pool:
        tally = Counter(pool.map(one, paths))
    assert tally == {v1: 25, v2: 5}, tally


def test_a_regex_over_the_program_size_limit_is_refused_at_apply(mesh: Mesh) -> None:
    """Through the real REST API: 422 with the field path and the reason; nothing stored."""
    mesh.cp.apply(
        "apiVersion: trellis.dev/v1alpha1\nkind: Service\nmetadata: {name: web}\n"
        "spec:\n  selector: {app: web}\n  ports: [{name: http, port: 9080}]\n"
    )
    route = {
        "apiVersion": "trellis.dev/v1alpha1",
        "kind": "HTTPRoute",
        "metadata": {"name": "big"},
        "spec": {
            "parentRefs": [{"name": "web", "port": 9080}],
            "rules": [
                {
                    "matches": [
                        {
                            "path": {
                                "type": "RegularExpression",
                                "value": "/[a-zA-Z0-9._-]{0,200}/.*",
                            }
                        }
                    ],
                    "backendRefs": [{"name": "web"}],
                }
            ],
        },
    }
    with mesh.cp.client() as c:
        r = c.post("/api/v1/apply", json={"documents": [route]})
        assert r.status_code == 422, r.text
        (problem,) = r.json()["problems"]
        errors = {e["path"]: e["reason"] for e in problem["errors"]}
        reason = errors.get("spec.rules[0].matches[0].path", "")
        assert "regex program size" in reason and "exceeds the limit 1000" in reason, errors
        assert c.get("/api/v1/httproutes/big").status_code == 404
        route["spec"]["rules"][0]["matches"][0]["path"]["value"] = "/[a-zA-Z0-9._-]+/.*"  # type: ignore[index]
        assert c.post("/api/v1/apply", json={"documents": [route]}).status_code == 200
