"""Golden signals without Prometheus: real sidecars report over their telemetry streams, the
control plane aggregates, /api/v1/signals answers what the test sent.

The backend is the demo web app under `trellis run` (its sidecar on the secure port, mTLS);
the callers are standalone `trellis proxy` sidecars, one on the secure port and one on the
plaintext xDS port without an identity.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import httpx
import pytest

from tests.integration.dataplane import client_sidecar, run_service
from tests.integration.harness import TOKEN, Mesh, wait_for
from tests.integration.traffic import SERVICE_PORT, service_yaml

pytestmark = pytest.mark.integration

URL = f"http://api:{SERVICE_PORT}"


def signals(mesh: Mesh, window: int = 60) -> dict[str, Any]:
    with mesh.cp.client() as c:
        r = c.get("/api/v1/signals", params={"window": window})
    assert r.status_code == 200, r.text
    return dict(r.json())


def find(items: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    for item in items:
        if all(item.get(k) == v for k, v in match.items()):
            return item
    return None


def test_signals_match_the_traffic_sent(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("api", {"app": "api"}))
    run_service(mesh, "api")
    web = client_sidecar(mesh, "web")  # mTLS, secure port
    sent = 0
    failed = 0
    started = time.monotonic()
    with web.client() as c:
        while time.monotonic() - started < 6 or sent < 400:
            r = c.get(URL + "/work", params={"fail": "10"})
            sent += 1
            failed += r.status_code >= 500
    elapsed = time.monotonic() - started

    def edge() -> dict[str, Any] | None:
        found = find(signals(mesh)["edges"], source="web.default", destination="api.default")
        return found if found is not None and found["requests"] >= sent else None

    e = wait_for(edge, 10, "the web -> api edge with every request")
    assert e["requests"] == sent
    assert e["mtls"] is True
    assert e["success_rate"] == pytest.approx(1 - failed / sent, abs=0.001)
    assert 0.8 <= e["success_rate"] <= 0.97  # 10% failing
    assert e["p50_ms"] is not None and e["p99_ms"] >= e["p50_ms"] > 0
    # rps: the requests over the time the reports cover (the traffic's, plus at most one
    # report interval and the wait): within reason of what the test measured.
    assert sent / (elapsed + 6) <= e["rps"] <= sent / elapsed * 1.5
    body = signals(mesh)
    service = find(body["services"], service="api.default")
    assert service is not None and service["requests"] == sent
    assert service["errors"] == failed and service["denied"] == 0
    assert body["proxies_reporting"] >= 2
    assert find(body["services"], service="web.default") is not None
    # History: the points add up to what was sent, one per 10 s.
    with mesh.cp.client() as c:
        r = c.get("/api/v1/signals/history", params={"service": "api.default", "minutes": 2})
    assert r.status_code == 200, r.text
    history = r.json()
    assert history["step_seconds"] == 10
    assert sum(p["rps"] > 0 for p in history["points"]) >= 1
    with mesh.cp.client() as c:
        r = c.get(
            "/api/v1/signals/history",
            params={"source": "web.default", "destination": "api.default", "minutes": 2},
        )
    assert r.status_code == 200 and r.json()["points"], r.text


def test_plaintext_callers_and_unknown_sources(mesh: Mesh) -> None:
    """A caller without an identity reports over the plaintext xDS port; a caller outside the
    mesh (no sidecar) shows as source "unknown", from the destination's reports."""
    mesh.cp.apply(service_yaml("api", {"app": "api"}))
    member = run_service(mesh, "api", run_args=("--insecure",))
    web = client_sidecar(mesh, "web", identity=False)
    with web.client() as c:
        for _ in range(20):
            assert c.get(URL + "/").status_code == 200
    for _ in range(7):  # straight to the sidecar's inbound port: no caller sidecar
        r = httpx.get(f"http://{member.sidecar.inbound}/", timeout=5, trust_env=False)
        assert r.status_code == 200

    def edges() -> dict[str, Any] | None:
        body = signals(mesh)
        web_edge = find(body["edges"], source="web.default", destination="api.default")
        outside = find(body["edges"], source="unknown", destination="api.default")
        if web_edge and outside and web_edge["requests"] == 20 and outside["requests"] == 7:
            return body
        return None

    body = wait_for(edges, 10, "both edges into api")
    web_edge = find(body["edges"], source="web.default", destination="api.default")
    assert web_edge is not None and web_edge["mtls"] is False
    api = find(body["services"], service="api.default")
    assert api is not None and api["requests"] == 27


def test_signals_need_the_admin_token(mesh: Mesh) -> None:
    for path in ("/api/v1/signals", "/api/v1/signals/history?service=a", "/api/v1/signals/stream",
                 "/api/v1/tap?service=a", "/api/v1/signals/statistics"):  # fmt: skip
        r = httpx.get(mesh.cp.api + path, timeout=5)
        assert r.status_code == 401, (path, r.text)
        assert "admin token" in r.json()["error"]
        r = httpx.get(mesh.cp.api + path, headers={"Authorization": "Bearer nope"}, timeout=5)
        assert r.status_code == 401, (path, r.text)
    with mesh.cp.client() as c:
        assert c.get("/api/v1/signals", params={"window": 5}).status_code == 422
        assert c.get("/api/v1/signals", params={"window": 901}).status_code == 422
        assert c.get("/api/v1/signals/history").status_code == 422
        assert c.get("/api/v1/signals/history", params={"service": "Bad!"}).status_code == 422


def test_sse_stream_delivers_signals(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("api", {"app": "api"}))
    run_service(mesh, "api")
    web = client_sidecar(mesh, "web")
    stop = threading.Event()

    def load() -> None:
        with web.client() as c:
            while not stop.is_set():
                c.get(URL + "/")
                time.sleep(0.02)

    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    events: list[dict[str, Any]] = []
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.stream(
            "GET", mesh.cp.api + "/api/v1/signals/stream", headers=headers, timeout=20
        ) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            event = ""
            deadline = time.monotonic() + 15
            for line in r.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    assert event == "signals"
                    events.append(json.loads(line.removeprefix("data: ")))
                    if find(events[-1]["edges"], source="web.default") or (
                        time.monotonic() > deadline
                    ):
                        break
    finally:
        stop.set()
        loader.join(5)
    assert find(events[-1]["edges"], source="web.default", destination="api.default"), events[-1]
    assert {"window_seconds", "generated_at", "proxies_reporting", "services"} <= set(events[0])


DENY_ADMIN = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  selector: {matchLabels: {app: api}}
  action: DENY
  rules:
    - to: [{operation: {paths: ["/admin*"]}}]
"""


def test_denials_are_counted_at_the_destination(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("api", {"app": "api"}) + DENY_ADMIN)
    run_service(mesh, "api")
    web = client_sidecar(mesh, "web")
    with web.client() as c:
        wait_for(lambda: c.get(URL + "/admin").status_code == 403, 10, "the policy in force")
        denied = 1
        for _ in range(9):
            assert c.get(URL + "/admin").status_code == 403
            denied += 1
        for _ in range(5):
            assert c.get(URL + "/ok").status_code == 200

    def service() -> dict[str, Any] | None:
        found = find(signals(mesh)["services"], service="api.default")
        return found if found is not None and found["denied"] >= denied else None

    api = wait_for(service, 10, "the denials in the signals")
    assert api["denied"] == denied
    assert api["errors"] == 0  # a 403 is no 5xx
    assert api["requests"] >= denied + 5


def test_proxies_report_again_after_the_control_plane_restarts(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("api", {"app": "api"}))
    run_service(mesh, "api", ttl=60)
    web = client_sidecar(mesh, "web")
    wait_for(lambda: signals(mesh)["proxies_reporting"] >= 2, 10, "both proxies reporting")
    mesh.cp.stop()
    mesh.cp.start()  # same ports and data dir; the signals start empty (memory only)
    assert signals(mesh)["edges"] == []

    def reported() -> bool:
        with web.client() as c:
            c.get(URL + "/again")
        body = signals(mesh)
        return body["proxies_reporting"] >= 2 and bool(
            find(body["edges"], source="web.default", destination="api.default")
        )

    wait_for(reported, 60, "the proxies' telemetry streams back (backoff) with new traffic",
             interval=0.5)  # fmt: skip
