"""A request body that stops coming, or trickles in for too long, is timed out (408, or a
reset once the response has begun) and its upstream connection is released.

A client that sends a head and then its body at one byte a second would otherwise hold
a client connection and an upstream connection (and the app's attention) for ever.
One standalone `trellis proxy` with short timeouts (`--body-idle-timeout 1
--body-timeout 4`) in front of a scripted upstream that records what it reads and when
its connection closes: through the outbound listener (absolute-form, the passthrough
cluster) and through the inbound listener (mesh mTLS as a peer speaks it, to the app
port the proxy was given with `--app-port`).
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.dataplane import Sidecar, client_sidecar
from tests.integration.harness import Mesh, wait_for
from tests.integration.rawhttp import Listener, ResponseStream, address, mesh_client_context
from tests.integration.scripted import Reader, ScriptedServer

pytestmark = pytest.mark.integration

BODY_IDLE = 1.0
BODY_TOTAL = 4.0
EARLY = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nearly\r\n"


@dataclass
class Seen:
    path: str
    body: bytes = b""
    closed: bool = False


class RecordingUpstream(ScriptedServer):
    """Reads request heads and bodies, never answers (but `/early`, which answers its head
    at once with the start of a chunked response); records when each connection closes."""

    def __init__(self) -> None:
        self.seen: dict[str, Seen] = {}
        super().__init__(self._answer)

    def _answer(self, conn: socket.socket, number: int) -> None:
        reader = Reader(conn)
        head = reader.head()
        if head is None:
            return
        path = head.split(b" ", 2)[1].decode()
        seen = self.seen[path] = Seen(path, reader.buf)
        if path.startswith("/early"):
            conn.sendall(EARLY)
        while reader.more():
            seen.body = reader.buf
        seen.closed = True


@dataclass
class World:
    mesh: Mesh
    proxy: Sidecar
    upstream: RecordingUpstream
    listeners: dict[str, Listener]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    mesh = Mesh(Path(tmp_path_factory.mktemp("slow-bodies")))
    upstream = RecordingUpstream()
    try:
        mesh.cp.start()
        timeouts = ("--body-idle-timeout", str(BODY_IDLE), "--body-timeout", str(BODY_TOTAL))
        proxy = client_sidecar(mesh, extra=(*timeouts, "--app-port", str(upstream.port)))
        passthrough = b"127.0.0.1:%d" % upstream.port
        listeners = {
            "outbound": Listener(
                "outbound", address(proxy.outbound), passthrough, b"http://" + passthrough
            ),
            "inbound": Listener(
                "inbound",
                address(proxy.inbound),
                b"client:%d" % upstream.port,
                b"",
                mesh_client_context(mesh, "prober"),
            ),
        }
        yield World(mesh, proxy, upstream, listeners)
    finally:
        upstream.close()
        mesh.close()


def upstream_released(world: World, path: str) -> None:
    wait_for(lambda: world.upstream.seen[path].closed, 10, f"the upstream connection of {path}")


SIDES = ["outbound", "inbound"]


@pytest.mark.parametrize("side", SIDES)
def test_a_body_that_stops_coming_gets_408_and_releases_the_upstream(
    world: World, side: str
) -> None:
    lst = world.listeners[side]
    path = f"/stall-{side}"
    with lst.connect() as sock:
        sock.sendall(lst.request(path, method=b"POST", headers=(b"Content-Length: 100",)))
        sock.sendall(b"0123456789")  # ...and then nothing
        stream = ResponseStream(sock)
        response = stream.next()
        assert response.status == 408, response
        assert response.headers.get("x-trellis-flags") == "SI"
        assert response.headers.get("connection") == "close"
        assert stream.closed_soon()
    upstream_released(world, path)
    assert world.upstream.seen[path].body == b"0123456789"


@pytest.mark.parametrize("side", SIDES)
def test_a_body_trickled_past_the_total_timeout_gets_408(world: World, side: str) -> None:
    lst = world.listeners[side]
    path = f"/trickle-{side}"
    stop = threading.Event()

    def trickle(sock: socket.socket) -> None:
        # One byte every 0.25 s: never idle for BODY_IDLE, never done (100 bytes: 25 s).
        with contextlib.suppress(OSError):
            for _ in range(100):
                if stop.wait(0.25):
                    return
                sock.sendall(b"x")

    with lst.connect() as sock:
        sock.sendall(lst.request(path, method=b"POST", headers=(b"Content-Length: 100",)))
        writer = threading.Thread(target=trickle, args=(sock,))
        writer.start()
        try:
            began = time.monotonic()
            response = ResponseStream(sock).next()
            waited = time.monotonic() - began
        finally:
            stop.set()
            writer.join()
    assert response.status == 408, response
    assert response.headers.get("x-trellis-flags") == "DT"
    assert waited < 20, "answered by the total timeout, long before the body could end"
    upstream_released(world, path)
    assert 0 < len(world.upstream.seen[path].body) < 100


@pytest.mark.parametrize("side", SIDES)
def test_a_body_that_stops_after_the_response_began_is_reset(world: World, side: str) -> None:
    lst = world.listeners[side]
    path = f"/early-{side}"
    with lst.connect() as sock:
        sock.sendall(lst.request(path, method=b"POST", headers=(b"Content-Length: 100",)))
        sock.sendall(b"0123456789")
        stream = ResponseStream(sock)
        while b"early" not in stream.buf:
            stream.more()
        assert stream.buf.startswith(b"HTTP/1.1 200 OK\r\n"), stream.buf
        # No second response can follow the first: the connection ends, without the
        # chunked body's last chunk.
        assert stream.closed_soon(timeout=10)
        assert not stream.buf.endswith(b"0\r\n\r\n")
    upstream_released(world, path)
