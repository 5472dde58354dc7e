"""The incident drill of docs/runbooks/route-around-failure.md, played end to end: a canary
(v2) failing half its requests behind a 90/10 split, under 200 GETs a second.

1. See it: `trellis top web` shows the canary's edge failing; `trellis tap web --status
   5xx` shows its 500s as they happen; the caller's sidecar shows the canary's host
   ejected by outlier detection (`/clusters`).
2. Contain it: the route's retries (`codes: [500, 503], attempts: 2`) mask what they
   may: the client sees a small fraction of the canary's 500s.
3. Route around it: `trellis apply -f` of the same route with the canary's weight 0;
   within 1 s every call goes to v1, and from then on not one fails.

The canary is alone in its Service (`web-v2`), as GAMMA splits go: ejecting its only
host cannot take it out of its cluster — a cluster whose every host is ejected uses them
all (Envoy's panic mode) rather than fail every request — so ejection is what tells the
operator which host is bad, retries are what contain it, and the weight change is what
routes around it. The runbook says so.

Real processes throughout: the control plane, `trellis run` around the apps (the canary is
flaky_app.py, failing 50% at random with 500), the test's own `trellis proxy`, and the
`trellis` CLI as the operator runs it.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.dataplane import (
    TRELLIS,
    Member,
    Sidecar,
    client_sidecar,
    metric_total,
    run_service,
)
from tests.integration.harness import TOKEN, Mesh, Proc, wait_for
from tests.integration.paced_load import PacedLoad
from tests.integration.traffic import SERVICE_PORT, service_yaml, start_members
from trellis.ports import free_port

# Serial: its figures (rates, zero failures, "within 1 s") are about time, measured
# with the machine to itself (make test runs the rest concurrently first).
pytestmark = [pytest.mark.integration, pytest.mark.serial]

URL = f"http://web:{SERVICE_PORT}/"
RATE = 200.0
FLAKY_APP = str(Path(__file__).with_name("flaky_app.py"))
CANARY_CLUSTER = f"outbound|{SERVICE_PORT}||web-v2.default.svc.mesh"

# What the operator had applied before the incident: the split, with retries, and outlier
# detection for both versions (docs/runbooks/route-around-failure.md, "Before").
OUTLIER = """
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {{name: {service}}}
spec:
  service: {service}
  outlierDetection:
    consecutive5xxErrors: 5
    interval: 1s
    baseEjectionTime: 30s
    maxEjectionPercent: 100
---
"""


def split(v1: int, v2: int) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: web, port: {SERVICE_PORT}}}]
  rules:
  - backendRefs:
    - {{name: web-v1, weight: {v1}}}
    - {{name: web-v2, weight: {v2}}}
    retry: {{codes: [500, 503], attempts: 2, backoff: 5ms}}
"""


def cli(mesh: Mesh, *args: str) -> Proc:
    """The `trellis` CLI as the operator runs it (the admin token in its environment)."""
    env = {"TRELLIS_CONFIG": str(mesh.tmp / "no-cli-config.json"), "TRELLIS_TOKEN": TOKEN}
    proc = Proc([TRELLIS, *args, "--server", mesh.cp.api], env=env, name=f"trellis {args[0]}")
    mesh.procs.append(proc)
    return proc


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(proc.all_lines) if line.startswith("{")]


@pytest.fixture
def drill(tmp_path: Path) -> Iterator[tuple[Mesh, list[Member], Member, Sidecar]]:
    mesh = Mesh(tmp_path)
    mesh.cp.start()
    try:
        mesh.cp.apply(
            service_yaml("web", {"app": "web"})
            + service_yaml("web-v1", {"app": "web", "version": "v1"})
            + service_yaml("web-v2", {"app": "web", "version": "v2"})
            + OUTLIER.format(service="web-v1")
            + OUTLIER.format(service="web-v2")
            + split(90, 10)
        )
        port = free_port()
        canary_app = [sys.executable, FLAKY_APP, "--port", str(port), "--name", "web-canary"]
        canary = run_service(
            mesh, "web", workload="web-canary", labels={"version": "v2"}, app=canary_app, port=port
        )
        stable = start_members(mesh, "web", [{"version": "v1"}, {"version": "v1"}])
        client = client_sidecar(mesh)
        yield mesh, stable, canary, client
    finally:
        mesh.close()


def canary_host(client: Sidecar) -> dict[str, Any] | None:
    for cluster in client.clusters():
        if cluster["name"] == CANARY_CLUSTER and cluster["hosts"]:
            return dict(cluster["hosts"][0])
    return None


def test_route_around_a_failing_canary(
    drill: tuple[Mesh, list[Member], Member, Sidecar],
) -> None:
    mesh, stable, canary, client = drill
    v1 = {m.workload for m in stable}
    top = cli(mesh, "top", "web", "-o", "json", "--duration", "30")
    tap = cli(mesh, "tap", "web", "--status", "5xx", "-o", "json", "--duration", "30")
    with client.client() as c, PacedLoad(c, URL, RATE) as load:
        started = time.monotonic()
        # 1. See it. The caller's sidecar ejected the canary's host (five 500s in a row,
        # retries included: at 50% that comes within a few hundred of its calls).
        ejected = wait_for(
            lambda: (h := canary_host(client)) is not None and h["health"] == "ejected" and h,
            20,
            "the canary's host ejected in the caller's /clusters",
        )
        assert ejected["workload"].startswith("web-canary"), ejected

        # 2. Contain it: run a while with the canary in, then count.
        wait_for(lambda: len(load.outcomes) > 1500, 20, "load with the canary in")
        before = list(load.outcomes)
        canary_500s = metric_total(
            canary.sidecar.metrics(), "trellis_requests_total", reporter="destination",
            response_code="500",
        )  # fmt: skip
        # 3. Route around it, as the operator does.
        manifest = mesh.tmp / "route-v2-0.yaml"
        manifest.write_text(split(100, 0))
        launched = time.monotonic()
        apply = cli(mesh, "apply", "-f", str(manifest))
        said = apply.wait_line(lambda line: "web" in line, 20)  # e.g. "httproute/web configured"
        applied = time.monotonic()  # the control plane has taken the change
        assert apply.wait(20) == 0, apply.stderr_lines
        describe = cli(mesh, "describe", "service", "web")  # the runbook's "Verify"
        assert describe.wait(20) == 0, describe.stderr_lines
        assert any("backends web-v1=100,web-v2=0" in line for line in describe.all_lines), (
            describe.all_lines
        )
        wait_for(lambda: load.count(lambda o: o.started > applied + 3) > 300, 15, "load after")
    after = load.since(applied)
    top.stop()
    tap.stop()

    # What the operator saw. top: the edge to web below 100% success.
    rows = [r for frame in json_lines(top) for r in frame["rows"]]
    assert any(r["destination"] == "web.default" and r["success_rate"] < 1 for r in rows), rows
    # tap --status 5xx: the 500s come from one proxy's inbound side, the canary's.
    inbound = [e for e in json_lines(tap) if e.get("direction") == "inbound"]
    assert inbound and {e["proxy"] for e in inbound} == {f"sidecar~{canary.workload}.default"}, {
        e["proxy"] for e in inbound
    }
    assert {e["status"] for e in inbound} == {500}

    # Contained: the client saw a fraction of the canary's failures (each call routed to
    # it is tried up to three times: a call fails for good with one chance in eight, more
    # when the retry budget runs out), and far fewer than the 5% the split alone
    # would have let through (10% of calls, half of them failing).
    failed_before = [o for o in before if o.status != 200]
    assert canary_500s >= 2 * len(failed_before), (canary_500s, len(failed_before))
    assert len(failed_before) <= 0.03 * len(before), load.report(started)
    # URX: its attempts used up; UO: the retry budget or the breaker's maxRetries refused
    # a retry (issue 11's stack).
    assert {o.flags for o in failed_before} <= {"URX", "UO"}, load.report(started)
    # Routed around within 1 s: the last call the canary answered (or failed) was sent
    # within 1 s of the apply; every call after that went to v1 and succeeded.
    canary_calls = [o for o in load.since(launched) if o.name == canary.workload or o.status != 200]
    last = max((o.started for o in canary_calls), default=launched)
    assert last - applied <= 1.0, f"the canary served calls {last - applied:.2f}s after the apply"
    settled = [o for o in after if o.started > applied + 1.0]
    assert len(settled) > 300
    assert all(o.status == 200 and o.name in v1 for o in settled), load.report(applied)
    print(f"{said!r} {applied - launched:.2f}s after the CLI started; the canary's last call")
    print(f"was sent {last - applied:+.3f}s from then")
