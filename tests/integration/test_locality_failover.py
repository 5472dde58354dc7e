"""Locality failover through real sidecars: a caller registered in zone a (`trellis run
--region r --zone a`) calls a service with two endpoints in its own zone and two in zone
b, with locality failover on. Traffic stays in zone a while its endpoints serve; when both
fail (answer 500 and are ejected by outlier detection), it fails over to zone b.

Needs the control plane's per-caller EDS priorities (branch `config`) and the sidecar's
priority load (stack/locality.py)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.counting_backend import CountingBackend, register
from tests.integration.dataplane import Sidecar, run_service
from tests.integration.harness import Mesh, wait_for

pytestmark = pytest.mark.integration

URL = "http://web:9080/"
POLICY = """---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: web}
spec:
  service: web
  loadBalancer: {localityLbSetting: {enabled: true}}
  outlierDetection:
    consecutive5xxErrors: 1
    interval: 1s
    baseEjectionTime: 60s
    maxEjectionPercent: 100
"""


@pytest.fixture
def backends() -> Iterator[list[CountingBackend]]:
    made = [CountingBackend(f"web-{zone}{i}") for zone in "ab" for i in range(2)]
    try:
        yield made
    finally:
        for b in made:
            b.close()


def zones(client: httpx.Client, n: int) -> Counter[str]:
    """The zone of the endpoint that answered each of `n` calls (`HTTP <code>` if none)."""
    out: Counter[str] = Counter()
    for _ in range(n):
        r = client.get(URL)
        out[r.json()["name"][4] if r.status_code == 200 else f"HTTP {r.status_code}"] += 1
    return out


def priorities(sidecar: Sidecar) -> dict[str, int]:
    for c in sidecar.clusters():
        if c["name"].startswith("outbound|9080||web."):
            return {h["workload"].split(".")[0]: h["priority"] for h in c["hosts"]}
    return {}


def test_traffic_stays_in_the_callers_zone_until_its_endpoints_fail(
    mesh: Mesh, backends: list[CountingBackend]
) -> None:
    register(mesh, "web", [], "")
    text = ""
    for b in backends:
        zone = b.name[4]
        text += f"""---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: {b.name}, labels: {{app: web}}}}
spec:
  address: 127.0.0.1
  ports: [{{name: http, port: {b.port}, protocol: http}}]
  inbound: {{port: {b.port}}}
  locality: {{region: r, zone: {zone}}}
"""
    mesh.cp.apply(text + POLICY)
    caller = run_service(mesh, "caller", run_args=("--region", "r", "--zone", "a")).sidecar
    want = {"web-a0": 0, "web-a1": 0, "web-b0": 1, "web-b1": 1}
    with caller.client() as c:

        def placed() -> bool:
            c.get(URL)  # the sidecar asks for the service's cluster on its first request
            return priorities(caller) == want

        wait_for(placed, 30, f"the caller's EDS with priorities {want}")
        assert zones(c, 100) == {"a": 100}
        for b in backends[:2]:
            b.failing = True
        # Each failing endpoint answers one 500 and is ejected; then zone b serves.
        wait_for(lambda: zones(c, 10) == {"b": 10}, 20, "failover to zone b")
        assert zones(c, 100) == {"b": 100}
    assert all(b.requests > 0 for b in backends)
