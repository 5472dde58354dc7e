"""`POST /api/v1/explain` on the real app: the admin token is required, bad questions get
422 with the reason, and the trail is computed on the PushContext the ADS server serves."""

from __future__ import annotations

import time

import yaml
from tests.control.api.served import Api

from trellis.control.push.context import PushContext

MESH = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: web}
spec: {selector: {app: web}, ports: [{name: http, port: 9080, targetPort: http}]}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: web-1, labels: {app: web}}
spec: {address: 10.0.0.1, ports: [{name: http, port: 8001}], inbound: {port: 15006}}
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: web}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
"""
QUESTION = {"from": "client", "method": "GET", "url": "http://web:9080/admin/x"}


async def serve(api: Api) -> None:
    """Apply MESH and have the ADS server serve it (no push controller runs here)."""
    docs = [d for d in yaml.safe_load_all(MESH) if d]
    applied = await api.client.post("/api/v1/apply", json={"documents": docs})
    assert applied.status_code == 200, applied.text
    api.ads.push(PushContext.build(await api.store.snapshot(), time.time()))


async def test_explain_needs_the_admin_token(api: Api) -> None:
    await serve(api)
    refused = await api.anonymous.post("/api/v1/explain", json=QUESTION)
    assert refused.status_code == 401
    wrong = await api.anonymous.post(
        "/api/v1/explain", json=QUESTION, headers={"Authorization": "Bearer nope"}
    )
    assert wrong.status_code == 401


async def test_explain_answers_on_the_served_config(api: Api) -> None:
    empty = await api.client.post("/api/v1/explain", json=QUESTION)
    assert empty.status_code == 200, empty.text
    assert empty.json()["answers"][0]["by"] == "outside the mesh"  # nothing served yet

    await serve(api)
    r = await api.client.post("/api/v1/explain", json={**QUESTION, "headers": ["x-a: 1"]})
    assert r.status_code == 200, r.text
    trail = r.json()
    (a,) = trail["answers"]
    assert (a["status"], a["flags"], a["policy"]) == (403, "RBAC", "default/deny-admin")
    assert trail["request"]["headers"] == {"x-a": "1"}
    assert trail["revision"] == api.ads.current.revision


async def test_bad_questions_get_422_with_the_reason(api: Api) -> None:
    await serve(api)
    r = await api.client.post("/api/v1/explain", json={**QUESTION, "url": "ftp://web/"})
    assert r.status_code == 422 and "ftp:// is not explained" in r.json()["error"]
    r = await api.client.post("/api/v1/explain", json={"method": "GET", "url": "http://web/"})
    assert r.status_code == 422 and "from" in r.json()["error"]
    r = await api.client.post("/api/v1/explain", json={**QUESTION, "extra": 1})
    assert r.status_code == 422
