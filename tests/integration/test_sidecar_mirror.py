"""HTTPRoute RequestMirror through the sidecar: each request also reaches the mirror service
(its authority suffixed `-shadow`, its body copied), the client's answer comes from the
primary only, and a dead mirror costs the client nothing."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from tests.integration.dataplane import client_sidecar, run_service
from tests.integration.harness import Mesh, wait_for
from tests.integration.traffic import app_pid, kill

pytestmark = pytest.mark.integration


def mirror_route(primary_port: int, shadow_port: int) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: web, port: {primary_port}}}]
  rules:
  - backendRefs: [{{name: web, port: {primary_port}}}]
    filters:
    - type: RequestMirror
      requestMirror: {{backendRef: {{name: shadow, port: {shadow_port}}}, percent: 100}}
"""


def test_requests_are_mirrored_fire_and_forget(mesh: Mesh, tmp_path: Path) -> None:
    log = tmp_path / "shadow-access.log"
    web = run_service(mesh, "web")
    shadow = run_service(mesh, "shadow", run_args=("--access-log", str(log)))
    mesh.cp.apply(mirror_route(web.port, shadow.port))
    client = client_sidecar(mesh)
    url = f"http://web:{web.port}"

    def copies() -> list[dict[str, object]]:
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text().splitlines()]

    with client.client() as c:
        wait_for(lambda: c.get(url + "/probe").status_code == 200 and copies(), 15, "a copy")
        answer = c.post(url + "/orders", content=b"x" * 1000)
        assert answer.status_code == 200 and answer.json()["name"] == web.workload
        assert answer.json()["body_bytes"] == 1000
        wait_for(lambda: any(e["path"] == "/orders" for e in copies()), 10, "the POST's copy")
    copy = next(e for e in copies() if e["path"] == "/orders")
    assert copy["method"] == "POST" and copy["bytes_received"] == 1000
    assert copy["authority"] == f"web-shadow:{web.port}"

    app = app_pid(shadow)
    shadow.proc.signal(signal.SIGKILL)  # the mirror dies (sidecar and app): the client
    kill(app, signal.SIGKILL)  # does not notice
    with client.client() as c:
        for _ in range(20):
            assert c.get(url + "/still").status_code == 200
