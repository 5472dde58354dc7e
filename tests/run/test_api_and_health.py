"""`trellis run`'s standard-library clients against real servers on 127.0.0.1: the REST
client (run/api.py) and the app health probe (run/health.py)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from trellis.ports import free_port
from trellis.run.api import ApiClient, ApiUnreachable
from trellis.run.health import HealthWatch, probe
from trellis.run.registration import Registration

SEEN: list[dict[str, Any]] = []


class _Handler(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        SEEN.append(
            {
                "method": self.command,
                "path": self.path,
                "auth": self.headers.get("Authorization"),
                "type": self.headers.get("Content-Type"),
                "body": body,
            }
        )
        status = (
            int(self.path.split("/status/")[1].split("?")[0]) if "/status/" in self.path else 200
        )
        out = json.dumps({"path": self.path}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    SEEN.clear()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_get_with_params_carries_the_token(server: str) -> None:
    api = ApiClient(server + "/", "secret")
    r = api.get("/api/v1/services/web", params={"namespace": "shop"})
    assert r.status_code == 200
    assert r.json() == {"path": "/api/v1/services/web?namespace=shop"}
    assert SEEN[-1]["auth"] == "Bearer secret"


def test_post_and_put_send_json(server: str) -> None:
    api = ApiClient(server, "t")
    assert api.post("/api/v1/tokens", {"a": 1}).status_code == 200
    assert api.put("/api/v1/services/x", {"b": [2]}, params={"namespace": "n"}).status_code == 200
    post, put = SEEN[-2], SEEN[-1]
    assert (post["method"], post["type"], json.loads(post["body"])) == (
        "POST",
        "application/json",
        {"a": 1},
    )
    assert (put["method"], put["path"], json.loads(put["body"])) == (
        "PUT",
        "/api/v1/services/x?namespace=n",
        {"b": [2]},
    )


def test_an_error_status_is_an_answer_not_an_exception(server: str) -> None:
    r = ApiClient(server, "t").get("/status/404")
    assert r.status_code == 404
    assert "/status/404" in r.text


def test_a_control_plane_that_is_not_there_is_unreachable() -> None:
    api = ApiClient(f"http://127.0.0.1:{free_port()}", "t", timeout=2)
    with pytest.raises(ApiUnreachable, match="GET /api/v1/info"):
        api.get("/api/v1/info")


def test_a_url_that_is_not_http_is_refused() -> None:
    with pytest.raises(ValueError, match="not http"):
        ApiClient("ftp://example", "t")


async def test_probe_by_path_reads_the_status(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    assert await probe(port, "/healthz") is True
    assert await probe(port, "/status/302") is True
    assert await probe(port, "/status/503") is False
    assert SEEN[0]["method"] == "GET" and SEEN[0]["path"] == "/healthz"


async def test_probe_fails_on_a_closed_port_and_on_a_non_http_answer() -> None:
    port = free_port()
    assert await probe(port, "/healthz") is False
    assert await probe(port, None) is False
    # A server that answers something other than HTTP.
    listener = socket.create_server(("127.0.0.1", 0))

    def garbage() -> None:
        conn, _ = listener.accept()
        conn.recv(1024)
        conn.sendall(b"SSH-2.0-OpenSSH\r\n")
        conn.close()

    thread = threading.Thread(target=garbage, daemon=True)
    thread.start()
    try:
        assert await probe(listener.getsockname()[1], "/healthz") is False
        assert await probe(listener.getsockname()[1], None) is True  # TCP alone is up
    finally:
        listener.close()


async def test_the_watch_needs_three_failed_checks_in_a_row_and_one_good_one(
    server: str,
) -> None:
    port = int(server.rsplit(":", 1)[1])
    changes: list[bool] = []
    watch = HealthWatch(port, "/healthz", changes.append)

    async def check(path: str) -> bool:
        watch.path = path
        return await watch.check()

    for path in ("/status/503", "/status/503", "/healthz", "/status/503", "/status/503"):
        assert await check(path)  # never three failures in a row: still healthy
    assert changes == []
    assert not await check("/status/503")  # the third in a row
    assert changes == [False]
    assert not await check("/status/503")
    assert await check("/healthz")  # one good check brings it back
    assert changes == [False, True]
    assert [s["path"] for s in SEEN][-1] == "/healthz"  # real checks of the app


async def test_an_app_that_never_came_up_is_watched_from_unhealthy(server: str) -> None:
    port = int(server.rsplit(":", 1)[1])
    changes: list[bool] = []
    watch = HealthWatch(port, "/healthz", changes.append, healthy=False)
    watch.path = "/status/503"
    assert not await watch.check()  # still unhealthy: nothing to report
    assert changes == []
    watch.path = "/healthz"
    assert await watch.check()  # one good check
    assert changes == [True]


def test_a_registration_that_starts_unhealthy_says_so_at_once(server: str) -> None:
    workload = {"metadata": {"name": "app-1", "namespace": "shop"}, "spec": {}}
    registration = Registration(server, "t", workload, ttl=30)
    registration.healthy = False
    registration.start()
    try:
        # Registered, then a heartbeat carrying the health: not a ttl/3 later.
        paths = [s["path"] for s in SEEN]
        assert paths == ["/api/v1/registry/register", "/api/v1/registry/heartbeat"]
        assert json.loads(SEEN[1]["body"])["healthy"] is False
    finally:
        registration.close(deregister=False)
    SEEN.clear()
    healthy = Registration(server, "t", workload, ttl=30)
    healthy.start()
    healthy.close(deregister=False)
    assert [s["path"] for s in SEEN] == ["/api/v1/registry/register"]
