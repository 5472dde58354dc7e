"""HTTPRoute filters end to end, through real sidecars: what the app receives and what the
client gets back.

Before this module, RequestHeaderModifier, ResponseHeaderModifier, RequestRedirect and
ReplaceFullPath were checked only in simulation (tests/routing/test_routing_simulation.py:
the translated route table, queried in-process); one ReplacePrefixMatch rewrite reached an
app (test_regex_routes.py), and RequestMirror at 100% to a live or dead mirror
(test_sidecar_mirror.py). Here each filter goes through the client's `trellis proxy`, over
mesh mTLS to the service's `trellis run` sidecar and its app:

- request headers set / added / removed, as the app sees them (repeats included: the app
  is header_echo_app.py, which lists every field as received);
- response headers set / added / removed, as the client sees them;
- redirects (scheme, hostname, port, full path, prefix, status) answered by the client's
  sidecar, the app never reached;
- URL rewrites (hostname, ReplaceFullPath, ReplacePrefixMatch, query kept) as the app sees
  them;
- mirrors: a percentage is a percentage, and a mirror that accepts and never answers (its
  app SIGSTOPped) costs the primary's callers nothing.

One world per module (control plane, the services, one client sidecar): the route is
applied once, each test reads one rule of it.
"""

from __future__ import annotations

import json
import signal
import statistics
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.dataplane import (
    Member,
    Sidecar,
    client_sidecar,
    metric_total,
    run_service,
)
from tests.integration.harness import Mesh, wait_for
from tests.integration.traffic import SERVICE_PORT, app_pid, kill, service_yaml
from trellis.ports import free_port

pytestmark = pytest.mark.integration

ECHO_APP = str(Path(__file__).with_name("header_echo_app.py"))
URL = f"http://web:{SERVICE_PORT}"

ROUTE = """
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: web-filters}
spec:
  parentRefs: [{name: web, port: 9080}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-env, value: prod}]
        add: [{name: x-tag, value: mesh}]
        remove: [x-debug]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        set: [{name: x-cache, value: MISS}]
        add: [{name: x-served-by, value: mesh}]
        remove: [x-internal]
    backendRefs: [{name: web}]
  - matches: [{path: {type: PathPrefix, value: /moved}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        scheme: https
        hostname: new.example
        port: 8443
        statusCode: 301
        path: {type: ReplaceFullPath, replaceFullPath: /landing}
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        statusCode: 308
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
  - matches: [{path: {type: PathPrefix, value: /elsewhere}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: other.example}
  - matches: [{path: {type: PathPrefix, value: /secure}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {scheme: https}
  - matches: [{path: {type: PathPrefix, value: /api/v1}}]
    filters:
    - type: URLRewrite
      urlRewrite:
        hostname: internal.example
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /v2}
    backendRefs: [{name: web}]
  - matches: [{path: {type: PathPrefix, value: /legacy}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /modern}}
    backendRefs: [{name: web}]
  - matches: [{path: {type: PathPrefix, value: /sampled}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: shadow, port: 9080}, percent: 50}
    backendRefs: [{name: web}]
  - matches: [{path: {type: PathPrefix, value: /stalled}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: stalled, port: 9080}}
    backendRefs: [{name: web}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web}]
"""


@dataclass
class World:
    mesh: Mesh
    web: Member
    shadow: Member
    shadow_log: Path
    stalled: Member
    client: Sidecar


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("filters")
    mesh = Mesh(tmp)
    mesh.cp.start()
    try:
        mesh.cp.apply(
            service_yaml("web", {"app": "web"})
            + service_yaml("shadow", {"app": "shadow"})
            + service_yaml("stalled", {"app": "stalled"})
            + ROUTE
        )
        port = free_port()
        echo = [sys.executable, ECHO_APP, "--port", str(port), "--name", "web-echo"]
        log = tmp / "shadow-access.log"
        with ThreadPoolExecutor() as pool:  # side by side: each waits for its endpoint
            started = [
                pool.submit(run_service, mesh, "web", app=echo, port=port),
                pool.submit(run_service, mesh, "shadow", run_args=("--access-log", str(log))),
                pool.submit(run_service, mesh, "stalled"),
            ]
            web, shadow, stalled = (f.result() for f in started)
        client = client_sidecar(mesh)
        with client.client() as c:
            wait_for(lambda: c.get(URL + "/").status_code == 200, 20, "web through the mesh")
            wait_for(lambda: c.get(URL + "/moved").status_code == 301, 20, "the filters route")
        yield World(mesh, web, shadow, log, stalled, client)
    finally:
        mesh.close()


def fields(answer: httpx.Response) -> list[tuple[str, str]]:
    assert answer.status_code == 200, (answer.status_code, answer.text)
    return [(k, v) for k, v in answer.json()["fields"]]


def values(pairs: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in pairs if k == name]


# -- header modifiers -----------------------------------------------------------------------


def test_request_header_modifier_sets_adds_and_removes(world: World) -> None:
    sent = {"x-env": "dev", "x-tag": "client", "x-debug": "1", "x-keep": "yes"}
    with world.client.client() as c:
        got = fields(c.get(URL + "/headers", headers=sent))
        bare = fields(c.get(URL + "/headers"))
        plain = fields(c.get(URL + "/", headers=sent))
    # set replaces the client's value; add keeps it and adds one; remove drops it; the rest
    # passes untouched.
    assert values(got, "x-env") == ["prod"], got
    assert values(got, "x-tag") == ["client", "mesh"], got
    assert values(got, "x-debug") == [], got
    assert values(got, "x-keep") == ["yes"], got
    # Without the client's fields: set and add both create theirs.
    assert values(bare, "x-env") == ["prod"] and values(bare, "x-tag") == ["mesh"], bare
    # A rule without the filter passes what the client sent.
    assert values(plain, "x-env") == ["dev"] and values(plain, "x-debug") == ["1"], plain
    assert values(plain, "x-tag") == ["client"], plain


def test_response_header_modifier_sets_adds_and_removes(world: World) -> None:
    # The app answers with the fields the query asks for (header_echo_app.py `respond=`).
    query = "?respond=x-cache:HIT&respond=x-served-by:app&respond=x-internal:secret"
    with world.client.client() as c:
        got = c.get(URL + "/headers" + query)
        plain = c.get(URL + "/" + query)
    assert got.status_code == 200 and plain.status_code == 200
    assert got.headers.get_list("x-cache") == ["MISS"], got.headers
    assert sorted(got.headers.get_list("x-served-by")) == ["app", "mesh"], got.headers
    assert "x-internal" not in got.headers, got.headers
    # The body is the app's, intact (the head was rebuilt, the framing kept).
    assert got.json()["name"] == "web-echo"
    # A rule without the filter passes the app's answer untouched.
    assert plain.headers.get_list("x-cache") == ["HIT"], plain.headers
    assert plain.headers.get_list("x-served-by") == ["app"], plain.headers
    assert plain.headers["x-internal"] == "secret", plain.headers


# -- redirects ------------------------------------------------------------------------------


def app_count(world: World) -> int:
    """How many requests reached the web app: its sidecar's inbound (destination) count."""
    text = world.web.sidecar.metrics()
    return int(metric_total(text, "trellis_requests_total", reporter="destination"))


@pytest.mark.parametrize(
    ("path", "status", "location"),
    [
        # Every part replaced: scheme, host, port, the whole path (the query kept).
        ("/moved/page?q=1", 301, "https://new.example:8443/landing?q=1"),
        # Only the matched prefix replaced; host and the service port kept; 308 as asked.
        ("/old/page/7?q=1", 308, f"http://web:{SERVICE_PORT}/new/page/7?q=1"),
        # Only the hostname: Gateway API's default status 302, the port kept.
        ("/elsewhere/x", 302, f"http://other.example:{SERVICE_PORT}/elsewhere/x"),
    ],
)
def test_redirects_are_answered_by_the_client_sidecar(
    world: World, path: str, status: int, location: str
) -> None:
    with world.client.client() as c:
        before = app_count(world)
        answers = [c.get(URL + path) for _ in range(3)]
        probe = c.get(URL + "/probe")
        assert probe.status_code == 200
    for r in answers:
        assert r.status_code == status, (r.status_code, r.headers, r.text)
        assert r.headers["location"] == location, r.headers
    # Only the probe reached the app: the redirects were answered on the client's side.
    wait_for(lambda: app_count(world) == before + 1, 5, "the probe in the app's count")


def test_a_redirect_to_https_drops_the_service_port(world: World) -> None:
    """Gateway API: with a scheme and no port, the scheme's well-known port (443) is used,
    and a well-known port is left out of Location."""
    with world.client.client() as c:
        r = c.get(URL + "/secure/a?b=c")
    assert r.status_code == 302, (r.status_code, r.text)
    assert r.headers["location"] in (
        "https://web/secure/a?b=c",
        "https://web:443/secure/a?b=c",
    ), r.headers


# -- URL rewrites ---------------------------------------------------------------------------


def test_url_rewrites_reach_the_app(world: World) -> None:
    with world.client.client() as c:
        prefix = c.get(URL + "/api/v1/orders/7?expand=items")
        exact = c.get(URL + "/api/v1")
        full = c.get(URL + "/legacy/reports/2024?fmt=csv")
        plain = c.get(URL + "/api/v10/x")  # not under /api/v1: whole segments only
    # ReplacePrefixMatch: the matched prefix replaced, the rest and the query kept; the
    # hostname rewritten for the app.
    assert prefix.json()["target"] == "/v2/orders/7?expand=items", prefix.json()
    assert values(fields(prefix), "host") == ["internal.example"], fields(prefix)
    assert exact.json()["target"] == "/v2", exact.json()
    # ReplaceFullPath: the whole path replaced, the query kept, the host not touched.
    assert full.json()["target"] == "/modern?fmt=csv", full.json()
    host = values(fields(full), "host")
    assert host and host[0].startswith("web"), fields(full)
    assert plain.json()["target"] == "/api/v10/x", plain.json()


# -- mirrors --------------------------------------------------------------------------------


def copies(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def settled(read: Any, quiet: float = 0.5) -> Any:
    """Poll `read()` until two reads `quiet` seconds apart agree."""
    last = read()
    while True:
        time.sleep(quiet)
        now = read()
        if now == last:
            return now
        last = now


def test_a_mirror_percentage_copies_about_that_share(world: World) -> None:
    calls = 400
    with world.client.client() as c:
        for i in range(calls):
            r = c.get(URL + f"/sampled/{i}")
            assert r.status_code == 200 and r.json()["name"] == "web-echo", r.text

    def sampled() -> int:
        return sum(1 for e in copies(world.shadow_log) if e["path"].startswith("/sampled/"))

    wait_for(sampled, 10, "a mirrored copy")
    got = settled(sampled)
    # 50% of 400: ±60 is 6 standard deviations (sd = 10).
    assert abs(got - calls / 2) <= 60, f"{got} copies of {calls} calls at 50%"
    paths = [e["path"] for e in copies(world.shadow_log) if e["path"].startswith("/sampled/")]
    assert len(paths) == len(set(paths)), "a call was mirrored twice"


def in_flight(sidecar: Sidecar) -> int:
    return int(sidecar.admin_get("/stats").json()["in_flight"])


def test_a_mirror_that_never_answers_costs_the_primary_nothing(world: World) -> None:
    with world.client.client() as c:
        baseline = []
        for _ in range(20):
            started = time.monotonic()
            assert c.get(URL + "/").status_code == 200
            baseline.append(time.monotonic() - started)
    app = app_pid(world.stalled)
    kill(app, signal.SIGSTOP)  # the mirror's app accepts (kernel backlog) and never answers
    try:
        latencies = []
        with world.client.client(timeout=5) as c:
            for i in range(40):
                started = time.monotonic()
                r = c.get(URL + f"/stalled/{i}")
                latencies.append(time.monotonic() - started)
                assert r.status_code == 200 and r.json()["name"] == "web-echo", r.text
        # The copies did reach the mirror's sidecar, and wait there for its app.
        wait_for(lambda: in_flight(world.stalled.sidecar) > 0, 5, "copies at the stalled mirror")
    finally:
        kill(app, signal.SIGCONT)
    # Not one call waited for the mirror (it never answers: a wait would be the client's
    # 5 s timeout); the median as before, with room for a shared machine.
    assert max(latencies) < 2.0, latencies
    assert statistics.median(latencies) < max(0.25, 5 * statistics.median(baseline)), (
        latencies,
        baseline,
    )
