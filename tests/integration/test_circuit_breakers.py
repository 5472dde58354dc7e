"""Circuit breakers through a real client sidecar, checked on the upstream's side: the
sidecar never has more connections open to a destination than `maxConnections` (the
backend counts what it accepts); requests beyond the connections wait, at most
`maxPendingRequests` of them, and the rest get 503 with flag UO at once; requests beyond
`maxRequests` in flight get 503 UO at once too. The waiting ones are served on the
connections released, and everything is counted in /clusters and the metrics."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.integration.counting_backend import CountingBackend, register
from tests.integration.dataplane import Sidecar, client_sidecar, metric_total
from tests.integration.harness import Mesh, wait_for
from tests.integration.traffic import FLAGS

pytestmark = pytest.mark.integration

URL = "http://web:9080/"
HOLD = 1.5  # seconds the backend holds each response


def policy(**pool: int) -> str:
    fields = ", ".join(f"{k}: {v}" for k, v in pool.items())
    return f"""---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {{name: web}}
spec:
  service: web
  connectionPool: {{{fields}}}
"""


@pytest.fixture
def backend() -> Iterator[CountingBackend]:
    b = CountingBackend("web-0")
    try:
        yield b
    finally:
        b.close()


def web_cluster(sidecar: Sidecar) -> dict[str, Any]:
    for c in sidecar.clusters():
        if c["name"].startswith("outbound|9080||web."):
            return c
    raise AssertionError("no cluster for web")


def ready(sidecar: Sidecar, **limits: int) -> None:
    with sidecar.client() as c:

        def limits_in_force() -> bool:
            c.get(URL)  # the sidecar asks for the service's cluster on its first request
            breaker = web_cluster(sidecar)["circuit_breaker"]
            return all(breaker[k] == v for k, v in limits.items())

        wait_for(limits_in_force, 20, f"the web cluster with {limits}")


def burst(sidecar: Sidecar, n: int) -> list[tuple[int, str, float]]:
    """`n` requests at once, each on a connection of its own: (status, flags, seconds)."""
    with sidecar.client(limits=httpx.Limits(max_connections=n), timeout=20) as c:

        def call(_: int) -> tuple[int, str, float]:
            started = time.monotonic()
            r = c.get(URL)
            return r.status_code, r.headers.get(FLAGS, ""), time.monotonic() - started

        with ThreadPoolExecutor(n) as pool:
            return list(pool.map(call, range(n)))


def test_connections_never_exceed_max_and_pending_beyond_max_get_503_uo(
    mesh: Mesh, backend: CountingBackend
) -> None:
    register(mesh, "web", [backend], policy(maxConnections=2, maxPendingRequests=2))
    sidecar = client_sidecar(mesh)
    ready(sidecar, max_connections=2, max_pending_requests=2)
    backend.hold = HOLD
    accepted = backend.accepted
    results = burst(sidecar, 8)
    served = [r for r in results if r[0] == 200]
    refused = [r for r in results if r[0] == 503]
    # Two on the two connections, two waiting for them; four refused at once.
    assert len(served) == 4 and len(refused) == 4, results
    assert all("UO" in flags.split(",") for _, flags, _ in refused), refused
    assert all(seconds < HOLD / 2 for *_, seconds in refused), refused
    # The waiting ones went out on the connections released: served after one hold.
    assert sorted(s for *_, s in served)[-1] >= 2 * HOLD * 0.9
    assert backend.most_open <= 2, backend.most_open
    assert backend.accepted - accepted <= 2

    cluster = web_cluster(sidecar)
    overflow = cluster["circuit_breaker"]["overflow"]
    assert overflow["pending"] == 4 and overflow["connections"] >= 6, overflow
    assert cluster["connections"] <= 2 and cluster["pending_requests"] == 0
    text = sidecar.metrics()
    name = cluster["name"]
    assert (
        metric_total(text, "trellis_circuit_breaker_overflows_total", cluster=name, kind="pending")
        == 4
    )


def test_requests_beyond_max_requests_get_503_uo_at_once(
    mesh: Mesh, backend: CountingBackend
) -> None:
    register(mesh, "web", [backend], policy(maxRequests=3))
    sidecar = client_sidecar(mesh)
    ready(sidecar, max_requests=3)
    backend.hold = HOLD
    results = burst(sidecar, 7)
    got = Counter(status for status, _, _ in results)
    assert got == {200: 3, 503: 4}, results
    refused = [r for r in results if r[0] == 503]
    assert all("UO" in flags.split(",") for _, flags, _ in refused), refused
    assert all(seconds < HOLD / 2 for *_, seconds in refused), refused
    assert web_cluster(sidecar)["overflows"] == 4  # the 503 UO answers
