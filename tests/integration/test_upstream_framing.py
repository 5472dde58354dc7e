"""What an upstream answers reaches the client framed as one response, whatever the
upstream put around it: a real `trellis proxy` (standalone client sidecar) forwards
absolute-form requests to a scripted upstream outside the registry (the passthrough
cluster), which answers each path with fixed bytes; the test reads the client side raw.

The sidecar forwards a plain response head as it came (no hop-by-hop field, length
framing): these cases check the head it forwards is the response's own, never empty
lines before it or an interim response's, and that what an upstream puts after a
response never reaches the client as one more.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.scripted import Reader, ScriptedServer, ScriptedWorld, scripted_world
from tests.integration.test_malformed_requests import Answer, read_answer

pytestmark = pytest.mark.integration

IO_TIMEOUT = 5.0
SMUGGLED = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"
BODY = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + SMUGGLED  # a body, nothing more

# path -> what the upstream writes back (then it waits for the next request)
ANSWERS: dict[bytes, bytes] = {
    b"/blank-then-204": b"\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"/blank-interim-final": b"\r\n\r\nHTTP/1.1 103 Early Hints\r\nContent-Length: 0\r\n\r\n"
    b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(BODY), BODY),
    b"/204-with-length": b"HTTP/1.1 204 Nothing\r\nContent-Length: 5\r\n\r\n",
    b"/plain": b"HTTP/1.1 200 Fine\r\nContent-Length: 5\r\nX-App: a\r\n\r\nhello",
    b"/then-more": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + SMUGGLED,
}


class ScriptedUpstream(ScriptedServer):
    """Answers each request head with ANSWERS[path], then waits for the next request."""

    def __init__(self) -> None:
        self.seen: list[bytes] = []
        super().__init__(self._answer)

    def _answer(self, conn: socket.socket, number: int) -> None:
        reader = Reader(conn)
        while (head := reader.head()) is not None:
            path = head.split(b" ", 2)[1]
            self.seen.append(path)
            conn.sendall(ANSWERS[path])


World = ScriptedWorld[ScriptedUpstream]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with scripted_world(Path(tmp_path_factory.mktemp("framing")), ScriptedUpstream()) as world:
        yield world


def ask(world: World, paths: list[bytes]) -> list[Answer]:
    """One client connection; each request in turn, each response read whole."""
    host, _, port = world.client.outbound.rpartition(":")
    target = b"http://127.0.0.1:%d" % world.upstream.port
    answers = []
    with socket.create_connection((host, int(port)), timeout=IO_TIMEOUT) as sock:
        for i, path in enumerate(paths):
            last = i == len(paths) - 1
            close = b"Connection: close\r\n" if last else b""
            sock.sendall(
                b"GET %s%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%s\r\n"
                % (target, path, world.upstream.port, close)
            )
            answers.append(read_answer(sock) if last else read_one(sock))
    return answers


def read_one(sock: socket.socket) -> Answer:
    """A response on a connection that stays open: its head, then Content-Length bytes."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        assert piece, f"connection closed before a response head: {buf!r}"
        buf += piece
    head, _, body = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {n.strip().lower(): v.strip() for n, _, v in (x.partition(":") for x in lines[1:])}
    length = int(headers.get("content-length", "0"))
    while len(body) < length:
        piece = sock.recv(65536)
        assert piece, "connection closed inside a body"
        body += piece
    assert len(body) == length, f"bytes after the response: {body[length:]!r}"
    return Answer(int(lines[0].split(" ", 2)[1]), headers, body, closed=False)


def test_a_plain_head_goes_through_as_the_app_wrote_it(world: World) -> None:
    (a,) = ask(world, [b"/plain"])
    assert (a.status, a.body, a.headers["x-app"], a.headers["content-length"]) == (
        200,
        b"hello",
        "a",
        "5",
    )
    assert a.headers["connection"] == "close" and a.closed  # the client asked to close


def test_empty_lines_before_a_response_stay_out_of_it(world: World) -> None:
    first, after = ask(world, [b"/blank-then-204", b"/plain"])
    assert first.status == 204 and first.body == b""
    assert after.status == 200 and after.body == b"hello"  # still in step


def test_an_interim_response_never_stands_for_the_final_one(world: World) -> None:
    final, after = ask(world, [b"/blank-interim-final", b"/plain"])
    assert (final.status, final.body) == (200, BODY)  # the smuggled response is only body
    assert (after.status, after.body) == (200, b"hello")


def test_a_204_loses_its_content_length(world: World) -> None:
    no_content, after = ask(world, [b"/204-with-length", b"/plain"])
    assert no_content.status == 204 and "content-length" not in no_content.headers
    assert (after.status, after.body) == (200, b"hello")


def test_what_an_upstream_sends_after_its_response_is_not_a_response(world: World) -> None:
    first, after = ask(world, [b"/then-more", b"/plain"])
    assert (first.status, first.body) == (200, b"ok")
    # The extra bytes broke that upstream connection (a 502 for whoever was reading it,
    # or a closed connection); the client's next request gets its own answer.
    assert (after.status, after.body) == (200, b"hello")
