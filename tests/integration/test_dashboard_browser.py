"""The dashboard in headless Chromium (Debian's, driven by Playwright), on the demo mesh
with its load running: without the token the pages and data refuse; logged in, the graph
shows the demo's services and edges with live figures, a service page draws its charts,
routes, endpoints, policy and denials (live, by tap), the proxies page lists every
sidecar, and a trace's waterfall renders. Every request the browser makes stays on
127.0.0.1. Screenshots are saved under `artifacts/screenshots/` (gitignored) for a person
to look at."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.cli.test_trace_commands import sdk_trace
from tests.integration.harness import Proc, wait_for

pytestmark = pytest.mark.integration

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
DEMO_EDGES = [
    ("productpage.default", "reviews.default"),
    ("productpage.default", "details.default"),
    ("reviews.default", "ratings.default"),
]
MS = 1_000_000


DENY_ADMIN = {
    "apiVersion": "trellis.dev/v1alpha1",
    "kind": "AuthorizationPolicy",
    "metadata": {"name": "reviews-deny-admin"},
    "spec": {
        "selector": {"matchLabels": {"app": "reviews"}},
        "action": "DENY",
        "rules": [{"to": [{"operation": {"paths": ["/admin*"]}}]}],
    },
}


@dataclass
class Demo:
    api: str
    xds_address: str
    token: str
    data: Path

    def outbound_of(self, workload: str) -> str:
        """HOST:PORT of a demo workload's sidecar outbound listener (from its log)."""
        log = (self.data / f"{workload}.log").read_text()
        found = re.search(r"sidecar ready: outbound (\S+)", log)
        assert found, log
        return found.group(1)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    data = tmp_path_factory.mktemp("demo")
    argv = [sys.executable, "-m", "trellis.demo", "--seconds", "180", "--data-dir", str(data)]
    proc = Proc(argv, name="demo")
    try:
        head = proc.wait_line(lambda line: "control plane API" in line, 60)
        xds = re.search(r"xDS (\S+)", head)
        line = proc.wait_line(lambda line: line.startswith("dashboard: "), 90)
        found = re.match(r"dashboard: (http://127\.0\.0\.1:\d+)/ui/ .*admin token: (\S+) ;", line)
        assert found and xds, line
        proc.wait_line(lambda line: "calls/s to productpage" in line, 60)
        yield Demo(found.group(1), xds.group(1), found.group(2), data)
    finally:
        proc.stop(timeout=40)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: `make install` installs it (DEB_PACKAGES)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()


def test_without_the_token_the_data_and_pages_refuse(demo: Demo) -> None:
    # `trellis control` says where the dashboard is.
    assert f"dashboard on {demo.api}/ui/" in (demo.data / "control.log").read_text()
    with httpx.Client(base_url=demo.api, timeout=10) as anonymous:
        for path in (
            "/api/v1/signals",
            "/api/v1/signals/history?service=reviews.default",
            "/api/v1/signals/stream",
            "/api/v1/traces",
        ):
            refused = anonymous.get(path)
            assert refused.status_code == 401, (path, refused.text)
        page = anonymous.get("/ui/")
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login"
        wrong = anonymous.post("/api/v1/session", headers={"Authorization": "Bearer wrong"})
        assert wrong.status_code == 401


def _shot(page: object, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / name), full_page=True)  # type: ignore[attr-defined]


@pytest.mark.timeout(240)
def test_the_dashboard_shows_the_demo_live(demo: Demo, browser: object) -> None:
    trace_id = sdk_trace(demo, time.time_ns() - 2000 * MS)  # 5 spans over three services
    context = browser.new_context(viewport={"width": 1300, "height": 900})  # type: ignore[attr-defined]
    requested: list[str] = []
    context.on("request", lambda request: requested.append(request.url))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # Not logged in: the dashboard sends the browser to the login page.
        page.goto(f"{demo.api}/ui/")
        assert page.url.endswith("/ui/login")
        page.fill("#token", "wrong")
        page.click("button[type=submit]")
        page.wait_for_selector("#login-error:has-text('Refused')")
        page.fill("#token", demo.token)
        page.click("button[type=submit]")
        page.wait_for_url(f"{demo.api}/ui/")

        # The graph: every demo edge with live figures, from the event stream.
        for source, destination in DEMO_EDGES:
            row = page.wait_for_selector(f"tr[data-edge='{source}->{destination}']", timeout=30000)
            rps = float(row.query_selector_all("td")[2].inner_text())
            assert rps > 0, (source, destination)
        nodes = int(page.get_attribute("#graph", "data-nodes") or 0)
        assert nodes >= 4
        for service in ("productpage", "reviews", "details", "ratings"):
            assert page.query_selector(f"tr[data-service='{service}.default']"), service
        # Live: the figures come again from the event stream, without a reload.
        page.wait_for_selector("#live.on", timeout=10000)
        first = page.inner_text("#graph-status")
        page.wait_for_function(
            "text => document.querySelector('#graph-status').textContent !== text",
            arg=first,
            timeout=10000,
        )
        _shot(page, "graph.png")

        # A service page: charts from the history, routes with the split, endpoints, the
        # policy that selects it, and its denials live (tap) and counted (signals).
        applied = httpx.post(
            f"{demo.api}/api/v1/apply",
            json={"documents": [DENY_ADMIN], "source": "test"},
            headers={"Authorization": f"Bearer {demo.token}"},
        )
        assert applied.status_code == 200, applied.text
        page.goto(f"{demo.api}/ui/#/service/reviews.default")
        page.wait_for_selector("#charts[data-points]", timeout=15000)
        assert len(page.query_selector_all("#charts .uplot")) == 3
        page.wait_for_selector("#routes .route", timeout=10000)
        routes = page.inner_text("#routes")
        assert "reviews-canary" in routes and "90 (90%)" in routes and "10 (10%)" in routes
        endpoints = page.inner_text("#endpoints")
        assert "reviews-v1" in endpoints and "reviews-v2" in endpoints
        assert "healthy" in endpoints
        page.wait_for_selector("#callers a:has-text('productpage.default')", timeout=10000)
        page.wait_for_selector("#policies :text('default/reviews-deny-admin')", timeout=10000)
        assert "DENY" in page.inner_text("#policies")
        outbound = demo.outbound_of("productpage-1")

        def denial_shown() -> bool:
            denied = httpx.get(f"http://{outbound}/admin/x", headers={"Host": "reviews:9080"})
            assert denied.status_code == 403, denied.text
            return page.query_selector("#live-4xx tr[data-tap-status='403']") is not None

        wait_for(denial_shown, 20, "a denial in the service page's live tap", interval=0.5)
        page.wait_for_function(  # and counted in the golden signals, from the stream
            "() => Number(document.querySelector('[data-denied]').textContent) > 0",
            timeout=15000,
        )
        _shot(page, "service-reviews.png")

        # Proxies: every sidecar connected, its xDS types ACKed, its certificate.
        page.goto(f"{demo.api}/ui/#/proxies")
        page.wait_for_selector("tr[data-node]", timeout=10000)
        proxies = page.inner_text("#proxies")
        for workload in ("productpage-1", "reviews-v1", "reviews-v2", "details-1", "ratings-1"):
            assert workload in proxies
        assert "ACK" in proxies
        _shot(page, "proxies.png")

        # Traces: the search finds the trace, the waterfall shows its tree.
        page.goto(f"{demo.api}/ui/#/traces")
        page.fill("input[name=service]", "reviews")
        page.fill("input[name=minDuration]", "250ms")  # the SDK trace's 300 ms, not the demo's
        page.click("#trace-search button[type=submit]")
        page.click(f"tr[data-trace='{trace_id}'] a", timeout=10000)
        page.wait_for_selector("#waterfall[data-spans='5']", timeout=10000)
        rows = page.query_selector_all("#waterfall .span-row[data-span]")
        assert len(rows) == 5
        assert "slowest" in (page.get_attribute("#waterfall .span-row.slowest", "class") or "")
        assert "reviews" in page.inner_text("#waterfall .span-row.slowest")
        rows[2].click()
        page.wait_for_selector("#span-details pre")
        _shot(page, "trace-waterfall.png")

        # Logging out ends the session.
        page.click("#logout")
        page.wait_for_url(f"{demo.api}/ui/login")
        page.goto(f"{demo.api}/ui/")
        assert page.url.endswith("/ui/login")
    finally:
        context.close()
    assert not errors, errors
    hosts = {urlsplit(url).hostname for url in requested if not url.startswith(("data:", "blob:"))}
    assert hosts == {"127.0.0.1"}, sorted(set(requested))
