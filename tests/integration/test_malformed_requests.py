"""Malformed HTTP/1.1 never reaches the app: both listeners of a real sidecar answer it with
the RFC 9110/9112 status and `Connection: close`, then close the connection.

One mesh for the whole module: a control plane, the demo web app under `trellis run`
(`--log-requests`: it prints `REQ METHOD TARGET` for every request it receives) and a
standalone client `trellis proxy`. Every case is sent with a raw socket, in one piece, to
the client sidecar's outbound listener (absolute-form, naming the service) and to the
service sidecar's inbound listener (origin-form). The connection's upstream pool is warmed
first, so a refused request would find a connection to the app at hand; after the refusal a
valid request goes the same way, and it must be the only one of the case the app saw.

Also: a body that holds a second request is only a body (smuggling), and a client that
never finishes its head does not hold up anyone else.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.dataplane import Member, Sidecar, client_sidecar, run_service
from tests.integration.harness import Mesh, wait_for
from tests.integration.rawhttp import Listener, listeners_of, mesh_client_context

pytestmark = pytest.mark.integration

SERVICE = "shop"
IO_TIMEOUT = 5.0  # a socket read that gets nothing for this long fails the test


@dataclass
class World:
    mesh: Mesh
    member: Member
    client: Sidecar
    peer_tls: ssl.SSLContext  # what a peer sidecar speaks to an inbound listener: mesh mTLS


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    mesh = Mesh(Path(tmp_path_factory.mktemp("malformed")))
    try:
        mesh.cp.start()
        member = run_service(mesh, SERVICE, app_args=("--log-requests",))
        client = client_sidecar(mesh)
        yield World(mesh, member, client, mesh_client_context(mesh, "prober"))
    finally:
        mesh.close()


def listener(world: World, name: str) -> Listener:
    return listeners_of(SERVICE, world.member, world.client, world.peer_tls)[name]


# -- raw HTTP/1.1 over a socket -----------------------------------------------------------


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the proxy closed the connection after the response


def exchange(lst: Listener, data: bytes) -> Answer:
    """Send `data` in one piece, read one response, then read on: was the connection closed?"""
    with lst.connect() as sock:
        # The proxy may answer and close before it has read all of a big request.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(data)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> Answer:
    buf = b""
    closed = False
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"connection closed before a response head: {buf!r}")
        buf += piece
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        if not piece:
            break
        rest += piece
    body, extra = rest[:length], rest[length:]
    # What follows the response must be the end of the connection, and soon.
    deadline = time.monotonic() + IO_TIMEOUT
    while not closed and time.monotonic() < deadline:
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            closed = True
            break
        if not piece:
            closed = True
        extra += piece
    assert not extra, f"bytes after the response: {extra[:200]!r}"
    return Answer(status, headers, body, closed)


def app_requests(world: World, token: str) -> list[str]:
    return [line for line in list(world.member.proc.all_lines) if token in line]


def valid_request_reaches_app(world: World, lst: Listener, path: str) -> None:
    """A valid request by the same way: 200 from the app, which logs it."""
    answer = exchange(lst, lst.request(path, headers=(b"Connection: close",)))
    assert answer.status == 200, (answer, answer.body)
    wait_for(lambda: app_requests(world, path), 10, f"the app to log {path}")


# -- the cases ----------------------------------------------------------------------------

Build = Callable[[Listener, str], bytes]


def _post(*headers: bytes, body: bytes = b"") -> Build:
    return lambda lst, path: lst.request(path, method=b"POST", headers=headers, body=body)


def _get(*headers: bytes, version: bytes = b"HTTP/1.1") -> Build:
    return lambda lst, path: lst.request(path, headers=headers, version=version)


CHUNKED = b"Transfer-Encoding: chunked"

CASES: dict[str, tuple[Build, int]] = {
    # The five that issue 3 names.
    "content-length-and-transfer-encoding": (
        _post(b"Content-Length: 5", CHUNKED, body=b"0\r\n\r\n"),
        400,
    ),
    "two-different-content-lengths": (
        _post(b"Content-Length: 3", b"Content-Length: 4", body=b"abcd"),
        400,
    ),
    "bad-chunk-size": (_post(CHUNKED, body=b"zz\r\nhello\r\n0\r\n\r\n"), 400),
    "header-line-without-colon": (_get(b"X-Broken header line"), 400),
    "oversized-headers": (_get(b"X-Big: " + b"a" * (70 * 1024)), 431),
    # A few more.
    "transfer-encoding-then-content-length": (
        _post(CHUNKED, b"Content-Length: 5", body=b"0\r\n\r\n"),
        400,
    ),
    "duplicate-content-length": (
        _post(b"Content-Length: 3", b"Content-Length: 3", body=b"abc"),
        400,
    ),
    "negative-content-length": (_post(b"Content-Length: -1", body=b"abc"), 400),
    "two-host-headers": (_get(b"Host: elsewhere"), 400),
    "obs-fold": (_get(b"X-Folded: a", b" b"), 400),
    "space-before-colon": (_get(b"X-Space : a"), 400),
    "nul-in-value": (_get(b"X-Nul: a\x00b"), 400),
    "bad-chunk-extension": (_post(CHUNKED, body=b"5;\x01\r\nhello\r\n0\r\n\r\n"), 400),
    "chunk-without-crlf": (_post(CHUNKED, body=b"5\r\nhelloX0\r\n\r\n"), 400),
    "chunked-not-final": (_post(b"Transfer-Encoding: chunked, gzip", body=b"0\r\n\r\n"), 400),
    "unknown-transfer-coding": (
        _post(b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"),
        501,
    ),
    "transfer-encoding-in-http-1.0": (
        lambda lst, path: lst.request(
            path, method=b"POST", headers=(CHUNKED,), body=b"0\r\n\r\n", version=b"HTTP/1.0"
        ),
        400,
    ),
    "upgrade-with-content": (
        _post(b"Connection: upgrade", b"Upgrade: h2c", b"Content-Length: 3", body=b"abc"),
        501,
    ),
    "fragment-in-target": (
        lambda lst, path: lst.request(path + "#fragment"),
        400,
    ),
    "missing-host": (lambda lst, path: lst.request(path, host=False), 400),
    "too-many-headers": (_get(*(b"X-H%d: v" % i for i in range(150))), 431),
    "http-2.0": (_get(version=b"HTTP/2.0"), 505),
    "target-too-long": (lambda lst, path: lst.request(path + "/" + "x" * 20_000), 414),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("side", ["outbound", "inbound"])
def test_malformed_request_is_refused_and_never_reaches_the_app(
    world: World, side: str, case: str
) -> None:
    lst = listener(world, side)
    build, status = CASES[case]
    token = f"{side}-{case}"
    # A pooled connection to the app is at hand, so nothing waits for a connect.
    valid_request_reaches_app(world, lst, "/warm")

    answer = exchange(lst, build(lst, f"/bad/{token}"))

    assert answer.status == status, (answer, answer.body)
    assert answer.headers.get("connection", "").lower() == "close", answer.headers
    assert answer.closed, "the proxy kept the connection open after refusing a request"
    valid_request_reaches_app(world, lst, f"/ok/{token}")
    assert app_requests(world, token) == [f"REQ GET /ok/{token}"]


# -- smuggling ----------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["outbound", "inbound"])
def test_a_request_inside_a_body_stays_a_body(world: World, side: str) -> None:
    lst = listener(world, side)
    token = f"{side}-smuggle"
    inner = lst.request(f"/smuggled/{token}")
    for framing in ("content-length", "chunked"):
        outer_path = f"/outer/{token}/{framing}"
        if framing == "content-length":
            headers: tuple[bytes, ...] = (b"Content-Length: %d" % len(inner),)
            body = inner
        else:
            headers = (CHUNKED,)
            body = b"%x\r\n%s\r\n0\r\n\r\n" % (len(inner), inner)
        # Connection: close, so that the check for bytes after the answer (a smuggled
        # request's response) ends at the close instead of waiting out IO_TIMEOUT.
        headers += (b"Connection: close",)
        data = lst.request(outer_path, method=b"POST", headers=headers, body=body)
        answer = exchange(lst, data)
        assert answer.status == 200, (answer, answer.body)
        assert b'"body_bytes": %d' % len(inner) in answer.body, answer.body
    valid_request_reaches_app(world, lst, f"/ok/{token}")
    assert sorted(app_requests(world, token)) == sorted(
        [
            f"REQ POST /outer/{token}/content-length",
            f"REQ POST /outer/{token}/chunked",
            f"REQ GET /ok/{token}",
        ]
    )


SMUGGLERS: dict[str, tuple[bytes, ...]] = {
    # Each frames the body one way for a front end and another way for a back end.
    "cl-te": (b"Content-Length: 4", CHUNKED),
    "te-cl": (CHUNKED, b"Content-Length: 4"),
    "te-obfuscated": (b"Transfer-Encoding: xchunked",),
    "te-space-before-colon": (b"Transfer-Encoding : chunked",),
    "te-twice": (CHUNKED, b"Transfer-Encoding: identity"),
}


@pytest.mark.parametrize("trick", sorted(SMUGGLERS))
@pytest.mark.parametrize("side", ["outbound", "inbound"])
def test_ambiguous_framing_smuggles_nothing(world: World, side: str, trick: str) -> None:
    lst = listener(world, side)
    token = f"{side}-{trick}"
    inner = lst.request(f"/smuggled/{token}")
    body = b"0\r\n\r\n" + inner
    valid_request_reaches_app(world, lst, "/warm")

    answer = exchange(
        lst,
        lst.request(f"/outer/{token}", method=b"POST", headers=SMUGGLERS[trick], body=body),
    )

    assert answer.status in (400, 501), (answer, answer.body)
    assert answer.headers.get("connection", "").lower() == "close"
    assert answer.closed
    valid_request_reaches_app(world, lst, f"/ok/{token}")
    assert app_requests(world, token) == [f"REQ GET /ok/{token}"]


# -- slow clients -------------------------------------------------------------------------


@pytest.mark.parametrize("side", ["outbound", "inbound"])
def test_a_client_that_never_finishes_its_head_blocks_nobody(world: World, side: str) -> None:
    lst = listener(world, side)
    token = f"{side}-slowloris"
    slow = [lst.connect() for _ in range(5)]
    try:
        for sock in slow:
            # Half a head, then nothing.
            sock.sendall(b"GET " + lst.target(f"/slow/{token}") + b" HTTP/1.1\r\nHost: ")
        started = time.monotonic()
        for i in range(3):
            valid_request_reaches_app(world, lst, f"/ok/{token}/{i}")
        assert time.monotonic() - started < 10
        # The slow ones are still open (nothing was answered on them) and got nowhere.
        for sock in slow:
            sock.setblocking(False)
            with pytest.raises((BlockingIOError, ssl.SSLWantReadError)):  # nothing to read
                sock.recv(1)
    finally:
        for sock in slow:
            sock.close()
    assert not [line for line in app_requests(world, token) if "/slow/" in line]


# -- upstream framing ---------------------------------------------------------------------


def test_a_head_response_does_not_desync_the_pooled_upstream_connection(world: World) -> None:
    """The app answers HEAD with a Content-Length and no body; the next request on the same
    pooled connection must get its own response, not be read as that body."""
    url = f"http://{SERVICE}:{world.member.port}"
    with world.client.client() as c:
        for i in range(3):
            head = c.head(f"{url}/head/{i}")
            assert head.status_code == 200 and head.content == b""
            got = c.get(f"{url}/after-head/{i}")
            assert got.status_code == 200, got.text
            assert got.json()["path"] == f"/after-head/{i}"


def test_the_app_is_still_served_after_all_of_it(world: World) -> None:
    with world.client.client() as c:
        r = c.get(f"http://{SERVICE}:{world.member.port}/final")
    assert r.status_code == 200 and r.json()["path"] == "/final"
