"""AuthorizationPolicies enforced by the service's sidecar (its inbound RBAC filters):
an allowed call gets 200, a denied one 403 with flag RBAC and the policy's name in the
access log and metrics, DENY beats ALLOW, an ALLOW policy leaves out what it does not
name, and a dry-run policy denies nothing but is counted and logged.

Rules here match what the request is (paths, methods, headers): rules on who calls
(principals, namespaces) need mTLS and are shown in the zero-trust tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.dataplane import client_sidecar, metric_total, run_service
from tests.integration.harness import Mesh, wait_for

pytestmark = pytest.mark.integration

DENY_ADMIN = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: shop}}
  action: DENY
  rules:
    - to: [{operation: {paths: ["/admin/*"]}}]
    - when: [{key: "request.headers[x-evil]", values: ["1"]}]
"""
ALLOW_GET = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: allow-get}
spec:
  selector: {matchLabels: {app: shop}}
  rules:
    - to: [{operation: {methods: [GET]}}]
"""
SHADOW = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: would-deny-shadow}
spec:
  selector: {matchLabels: {app: shop}}
  action: DENY
  dryRun: true
  rules:
    - to: [{operation: {paths: ["/shadow"]}}]
"""


def test_policies_allow_deny_and_dry_run(mesh: Mesh, tmp_path: Path) -> None:
    log = tmp_path / "access.log"
    shop = run_service(mesh, "shop", run_args=("--access-log", str(log)))
    client = client_sidecar(mesh)
    url = f"http://shop:{shop.port}"
    with client.client() as c:
        assert c.get(url + "/admin/x").status_code == 200  # no policy yet: all allowed

        mesh.cp.apply(DENY_ADMIN)
        wait_for(lambda: c.get(url + "/admin/x").status_code == 403, 10, "the DENY policy")
        denied = c.get(url + "/admin/users")
        assert denied.status_code == 403 and denied.headers["x-trellis-flags"] == "RBAC"
        assert c.get(url + "/shop").status_code == 200
        assert c.get(url + "/shop", headers={"x-evil": "1"}).status_code == 403

        mesh.cp.apply(ALLOW_GET)  # now only GET is allowed, and DENY still wins
        wait_for(lambda: c.post(url + "/shop").status_code == 403, 10, "the ALLOW policy")
        assert c.get(url + "/shop").status_code == 200
        assert c.get(url + "/admin/x").status_code == 403  # allowed method, denied path

        mesh.cp.apply(SHADOW)

        def counted() -> bool:
            c.get(url + "/shadow")
            return _shadowed(shop.sidecar.metrics()) > 0

        wait_for(counted, 10, "the dry-run policy to count a call")
        before = _shadowed(shop.sidecar.metrics())
        assert c.get(url + "/shadow").status_code == 200  # a dry run denies nothing
        assert _shadowed(shop.sidecar.metrics()) == before + 1

    lines = [json.loads(line) for line in log.read_text().splitlines()]
    deny = [e for e in lines if e["path"] == "/admin/users"]
    assert deny and deny[0]["status"] == 403 and deny[0]["authz_policy"] == "default/deny-admin"
    assert deny[0]["flags"] == "RBAC"
    post = [e for e in lines if e["method"] == "POST" and e["status"] == 403]
    assert post and post[-1]["authz_policy"] == "none"  # no ALLOW policy matched
    shadow = [e for e in lines if e["path"] == "/shadow"]
    assert shadow[-1]["status"] == 200
    assert shadow[-1]["shadow_denied_by"] == "default/would-deny-shadow"
    text = shop.sidecar.metrics()
    assert metric_total(text, "trellis_authz_decisions_total", outcome="denied",
                        policy="default/deny-admin") >= 3  # fmt: skip
    assert metric_total(text, "trellis_requests_total", reporter="destination",
                        response_code="403", response_flags="RBAC") >= 4  # fmt: skip


def _shadowed(metrics: str) -> float:
    return metric_total(
        metrics,
        "trellis_authz_decisions_total",
        outcome="shadow_denied",
        policy="default/would-deny-shadow",
    )
