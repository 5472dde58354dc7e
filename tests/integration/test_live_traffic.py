"""`trellis tap` and `trellis top` on real traffic: real sidecars (the backend under
`trellis run` on the secure port, mTLS; callers as standalone `trellis proxy`), the real
CLI as a process, the tap API over HTTP.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from tests.integration.dataplane import TRELLIS, Sidecar, client_sidecar, run_service
from tests.integration.harness import TOKEN, Mesh, Proc, wait_for
from tests.integration.traffic import SERVICE_PORT, service_yaml

pytestmark = pytest.mark.integration

URL = f"http://api:{SERVICE_PORT}"
TRACE = "0af7651916cd43dd8448eb211c80319c"


def cli(mesh: Mesh, *args: str, token: bool = True) -> Proc:
    env = {"TRELLIS_CONFIG": str(mesh.tmp / "no-cli-config.json"), "TRELLIS_TOKEN": ""}
    if token:
        env["TRELLIS_TOKEN"] = TOKEN
    proc = Proc([TRELLIS, *args, "--server", mesh.cp.api], env=env, name=f"trellis {args[0]}")
    mesh.procs.append(proc)
    return proc


def json_lines(proc: Proc) -> list[dict[str, Any]]:
    return [json.loads(line) for line in list(proc.all_lines) if line.startswith("{")]


@pytest.fixture
def api_and_web(mesh: Mesh) -> Sidecar:
    mesh.cp.apply(service_yaml("api", {"app": "api"}))
    run_service(mesh, "api")
    return client_sidecar(mesh, "web")


@contextmanager
def load(web: Sidecar, path: str = "/x", pause: float = 0.01) -> Iterator[list[int]]:
    sent = [0]
    stop = threading.Event()

    def run() -> None:
        with web.client() as c:
            while not stop.is_set():
                c.get(URL + path)
                sent[0] += 1
                time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield sent
    finally:
        stop.set()
        thread.join(10)


def test_tap_shows_live_traffic_within_two_seconds(mesh: Mesh, api_and_web: Sidecar) -> None:
    tap = cli(mesh, "tap", "api", "-o", "json")
    wait_for(lambda: any("tapping api.default" in x for x in tap.stderr_lines), 15, "tap start")
    started = time.monotonic()
    with api_and_web.client() as c:
        r = c.get(
            URL + "/hello?q=1",
            headers={"traceparent": f"00-{TRACE}-b7ad6b7169203331-01", "authorization": "secret"},
        )
    assert r.status_code == 200
    wait_for(lambda: len(json_lines(tap)) >= 2, 2.0, "both ends' events within 2 s")
    assert time.monotonic() - started < 2.0
    events = {e["direction"]: e for e in json_lines(tap)}
    assert set(events) == {"inbound", "outbound"}, events
    for e in events.values():
        assert e["type"] == "event"
        assert (e["source"], e["destination"]) == ("web.default", "api.default")
        assert (e["method"], e["path"], e["status"]) == ("GET", "/hello?q=1", 200)
        assert e["authority"].startswith("api")
        assert e["trace_id"] == TRACE
        assert e["latency_ms"] > 0
        assert e["mtls"] is True
        # Values redacted except the allow-list.
        assert e["headers"]["authorization"] == "<redacted>"
        assert e["headers"]["user-agent"].startswith("python-httpx")
        assert e["headers"]["traceparent"].startswith("00-")
    # The api's proxy is connected over the secure port (mTLS): tapped too.
    with mesh.cp.client() as c:
        stats = c.get("/api/v1/signals/statistics").json()
    api_proxy = [p for p in stats["proxies"] if p["service"] == "api.default"]
    assert api_proxy and all(p["secure"] for p in api_proxy), stats["proxies"]
    assert events["inbound"]["proxy"].startswith("sidecar~api")
    # The client going away stops the taps at the proxies.
    tap.stop()

    def ended() -> bool:
        with mesh.cp.client() as c:
            return not c.get("/api/v1/signals/statistics").json()["taps"]["active"]

    wait_for(ended, 10, "the tap session to end when its client goes")


def test_tap_filters_path_method_status(mesh: Mesh, api_and_web: Sidecar) -> None:
    tap = cli(mesh, "tap", "api", "--path", "/a", "--method", "POST", "--status", "5xx", "-o",
              "json")  # fmt: skip
    wait_for(lambda: any("tapping" in x for x in tap.stderr_lines), 15, "tap start")
    with api_and_web.client() as c:
        for _ in range(3):
            c.get(URL + "/a?status=500")  # wrong method
            c.post(URL + "/b?status=500")  # wrong path
            c.post(URL + "/a")  # 200: wrong status
            assert c.post(URL + "/a/z?status=500").status_code == 500  # the one
        # A last match: each proxy sends its events in order, so once this one is in from
        # both ends, anything wrongly matched before it would be in too.
        assert c.post(URL + "/a/last?status=500").status_code == 500
    wait_for(
        lambda: sum(e["path"] == "/a/last?status=500" for e in json_lines(tap)) == 2,
        5,
        "the last match, both ends",
    )
    events = json_lines(tap)
    assert Counter((e["method"], e["path"], e["status"]) for e in events) == {
        ("POST", "/a/z?status=500", 500): 6,
        ("POST", "/a/last?status=500", 500): 2,
    }, events
    # No trace headers were sent: each request still shows the trace and request ids its
    # caller's sidecar gave it, the same at both ends.
    last = [e for e in events if e["path"] == "/a/last?status=500"]
    assert re.fullmatch("[0-9a-f]{32}", last[0]["trace_id"]), last
    assert last[0]["request_id"], last
    assert {(e["trace_id"], e["request_id"]) for e in last} == {
        (last[0]["trace_id"], last[0]["request_id"])
    }, last


def test_tap_rate_is_bounded(mesh: Mesh, api_and_web: Sidecar) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    lines: list[dict[str, Any]] = []
    with load(api_and_web, pause=0.0) as sent:
        wait_for(lambda: sent[0] > 20, 10, "load")
        with httpx.stream(
            "GET", mesh.cp.api + "/api/v1/tap", params={"service": "api", "rate": 5, "duration": 3},
            headers=headers, timeout=20,
        ) as r:  # fmt: skip
            assert r.status_code == 200
            for line in r.iter_lines():
                lines.append(json.loads(line))
        total = sent[0]
        # A limit ends the stream after so many events.
        with httpx.stream(
            "GET", mesh.cp.api + "/api/v1/tap", params={"service": "api", "limit": 3},
            headers=headers, timeout=20,
        ) as r:  # fmt: skip
            limited = [json.loads(line) for line in r.iter_lines()]
    start, *events, end = lines
    assert start["type"] == "start" and end["type"] == "end" and end["reason"] == "duration"
    per_proxy = Counter(e["proxy"] for e in events)
    # 5 a second per proxy for 3 s: a window may straddle, so at most 4 windows' worth.
    assert per_proxy and all(n <= 20 for n in per_proxy.values()), per_proxy
    assert total > 60, total  # far more than the bound let through
    assert end["droppedByProxies"] > 0, end
    assert [x["type"] for x in limited] == ["start", "event", "event", "event", "end"]
    assert limited[-1]["reason"] == "limit"


def test_top_shows_busiest_paths_and_edges(mesh: Mesh, api_and_web: Sidecar) -> None:
    top = cli(mesh, "top", "api", "-o", "json", "--duration", "20")
    wait_for(lambda: json_lines(top), 15, "top's first frame")
    with load(api_and_web, "/top-path"):
        started = time.monotonic()

        def row() -> dict[str, Any] | None:
            for frame in json_lines(top):
                for r in frame["rows"]:
                    if r["path"] == "/top-path" and r["rps"] > 0:
                        return dict(r)
            return None

        found = wait_for(row, 2.0, "the path in top within 2 s")
        assert time.monotonic() - started < 2.0
        assert (found["source"], found["destination"], found["method"]) == (
            "web.default", "api.default", "GET",
        )  # fmt: skip
        assert found["success_rate"] == 1.0 and found["p99_ms"] >= found["p50_ms"]
        # Without a service: the mesh's busiest edges (golden signals), as a table.
        edges = cli(mesh, "top", "--duration", "6")
        wait_for(
            lambda: any("web.default" in x and "api.default" in x for x in edges.all_lines),
            8,
            "the web -> api edge in top's table",
        )
    top.stop()


@pytest.mark.parametrize("command", [("tap", "api"), ("top", "api"), ("top",)])
def test_tap_and_top_refused_without_the_token(mesh: Mesh, command: tuple[str, ...]) -> None:
    proc = cli(mesh, *command, token=False)
    assert proc.wait(20) == 1
    assert any("needs the admin token" in line for line in proc.stderr_lines), proc.stderr_lines
    bad = Proc(
        [TRELLIS, *command, "--server", mesh.cp.api],
        env={"TRELLIS_CONFIG": str(mesh.tmp / "none.json"), "TRELLIS_TOKEN": "wrong"},
    )
    mesh.procs.append(bad)
    assert bad.wait(20) == 1
    assert any("invalid admin token" in line for line in bad.stderr_lines), bad.stderr_lines
