"""Retries that cannot cause a storm, through real sidecars: the retry budget (on by
default: retries at most 20% of the requests plus 10 per second, per destination) caps
what a backend failing everything sees, whatever the route's attempts; and safe retries
(on by default): a POST that may have reached the app is not sent again on a 5xx, a GET is.

The backend is the demo web app under `trellis run`, which counts the requests it
serves (`count` in every answer, 503s included); the client is the test, through a
standalone `trellis proxy`.
"""

from __future__ import annotations

import time
from collections import Counter

import pytest

from tests.integration.dataplane import client_sidecar, run_service
from tests.integration.harness import Mesh
from tests.integration.traffic import FLAGS, SERVICE_PORT, service_yaml

pytestmark = pytest.mark.integration

URL = f"http://web:{SERVICE_PORT}"
ATTEMPTS = 3
ROUTE = f"""
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: web}}
spec:
  parentRefs: [{{name: web, port: 9080}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /retried}}}}]
    backendRefs: [{{name: web}}]
    retry: {{codes: [503], attempts: {ATTEMPTS}, backoff: 1ms}}
  - matches: [{{path: {{type: PathPrefix, value: /}}}}]
    backendRefs: [{{name: web}}]
"""
# The default budget (proxy/config/resources.py RetryBudgetConfig).
RATIO, MIN_PER_SECOND, TTL = 0.2, 10.0, 10.0


def served(c: object) -> int:
    """How many requests the app has served so far (this probe included)."""
    r = c.get(URL + "/count")  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    return int(r.json()["count"])


def test_a_backend_failing_everything_sees_at_most_the_budget(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("web", {"app": "web"}) + ROUTE)
    run_service(mesh, "web")
    sidecar = client_sidecar(mesh)
    requests = 600
    with sidecar.client() as c:
        before = served(c)
        started = time.monotonic()
        answers = [c.get(URL + "/retried?status=503") for _ in range(requests)]
        elapsed = time.monotonic() - started
        upstream = served(c) - before - 1  # the probes are not the test's requests
    assert Counter(r.status_code for r in answers) == {503: requests}
    # Without a budget every request would cost 1 + ATTEMPTS tries (2,400 here). With it:
    # at most (1 + ratio) x the requests plus the minimum rate over the windows it ran.
    windows = elapsed + TTL
    bound = (1 + RATIO) * requests + MIN_PER_SECOND * windows
    assert requests <= upstream <= bound, (upstream, bound, elapsed)
    assert upstream < 2 * requests, "the budget did not cap the retries"
    flags = Counter(r.headers.get(FLAGS, "") for r in answers)
    # The retries that were allowed ran out of attempts (URX); the rest were refused by
    # the budget before an attempt was spent (UO, as Envoy flags a retry overflow).
    assert flags["UO"] > requests // 2, flags
    assert set(flags) <= {"URX", "UO"}, flags


def test_a_post_is_not_retried_on_a_5xx_by_default_and_a_get_is(mesh: Mesh) -> None:
    mesh.cp.apply(service_yaml("web", {"app": "web"}) + ROUTE)
    run_service(mesh, "web")
    sidecar = client_sidecar(mesh)
    with sidecar.client() as c:
        url = URL + "/retried?fail=odd"
        before = served(c)
        gets = [c.get(url) for _ in range(20)]
        middle = served(c)
        posts = [c.post(url, content=b"pay 1") for _ in range(20)]
        after = served(c)
    # GETs: each 503 is retried, so every call succeeds; the app saw 20 + the retries.
    assert Counter(r.status_code for r in gets) == {200: 20}
    assert middle - before - 1 > 20
    # POSTs: the app alternates, so every other POST meets a 503 that reaches the client
    # as it is; the app saw each POST exactly once.
    assert Counter(r.status_code for r in posts) == {200: 10, 503: 10}
    assert after - middle - 1 == 20
    assert all("URX" not in r.headers.get(FLAGS, "") for r in posts)
