"""A request that may have reached the upstream is sent again only when it is idempotent.

A sidecar reuses pooled upstream connections. When the upstream closes one just as a
request goes out on it, no response byte comes back, and the sidecar cannot know
whether the app read the request. Go's transport and ours send it again on a new
connection only if that is safe (RFC 9110 §9.2.2: idempotent methods, or an
Idempotency-Key): a POST is answered 503 (flag UC) and reaches the app once.

A real `trellis proxy` forwards absolute-form requests to a scripted upstream outside
the registry (the passthrough cluster). The upstream answers `/warm` and keeps the
connection; on a connection it has served before, `/vanish` is read whole, recorded,
and the connection closed without an answer (an app that crashed, or closed an idle
connection as the request arrived); on a fresh connection `/vanish` is answered.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.rawhttp import Listener, ResponseStream, address
from tests.integration.scripted import Reader, ScriptedServer, ScriptedWorld, scripted_world

pytestmark = pytest.mark.integration

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class VanishingUpstream(ScriptedServer):
    """Records (connection number, method, path) per request; on a connection it served
    before, `/vanish*` is read whole and never answered."""

    def __init__(self) -> None:
        self.seen: list[tuple[int, str, str]] = []
        super().__init__(self._answer)

    def _answer(self, conn: socket.socket, number: int) -> None:
        reader = Reader(conn)
        served = 0
        while (request := reader.request()) is not None:
            self.seen.append((number, request.method, request.target))
            if request.target.startswith("/vanish") and served:
                return  # read whole, never answered: the connection closes
            served += 1
            conn.sendall(OK)

    def requests(self, path: str) -> list[tuple[int, str, str]]:
        return [s for s in self.seen if s[2] == path]


World = ScriptedWorld[VanishingUpstream]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with scripted_world(Path(tmp_path_factory.mktemp("replay")), VanishingUpstream()) as world:
        yield world


def warm_then(world: World, method: bytes, path: str, *headers: bytes) -> int:
    """On one client connection: GET /warm (which leaves a pooled upstream connection),
    then `method path`; returns the status of the second answer."""
    authority = b"127.0.0.1:%d" % world.upstream.port
    lst = Listener("outbound", address(world.client.outbound), authority, b"http://" + authority)
    with lst.connect() as sock:
        stream = ResponseStream(sock)
        sock.sendall(lst.request("/warm"))
        assert stream.next().status == 200
        body = b"amount=10" if method in (b"POST", b"PUT") else b""
        framing = (b"Content-Length: %d" % len(body),) if body else ()
        sock.sendall(lst.request(path, method=method, headers=(*framing, *headers), body=body))
        return stream.next().status


@pytest.mark.parametrize("method", [b"POST", b"PATCH"])
def test_a_request_that_is_not_idempotent_is_never_sent_twice(world: World, method: bytes) -> None:
    path = f"/vanish-{method.decode().lower()}"
    assert warm_then(world, method, path) == 503
    sent = world.upstream.requests(path)
    assert [m for _, m, _ in sent] == [method.decode()], sent  # once, on the reused connection


@pytest.mark.parametrize("method", [b"GET", b"PUT", b"DELETE"])
def test_an_idempotent_request_is_sent_again_on_a_new_connection(
    world: World, method: bytes
) -> None:
    path = f"/vanish-{method.decode().lower()}"
    assert warm_then(world, method, path) == 200
    sent = world.upstream.requests(path)
    assert len(sent) == 2 and sent[0][0] != sent[1][0], sent  # again, on another connection


def test_a_post_with_an_idempotency_key_is_sent_again(world: World) -> None:
    path = "/vanish-keyed"
    assert warm_then(world, b"POST", path, b"Idempotency-Key: 8e03978e-40d5") == 200
    assert len(world.upstream.requests(path)) == 2
