"""Host and version rules through both listeners of real sidecars: a request that names no
host (an empty Host, a Host that is only a port, HTTP/1.0 without Host) is 400 and closes
the connection without reaching the app; an absolute-form target names its host whatever
Host says; HTTP/1.2 .. 1.9 are served as HTTP/1.1; other major versions are 505.

One mesh for the module: a control plane, the demo web app under `trellis run`
(`--log-requests`: it prints `REQ METHOD TARGET` for each request it receives) and a
standalone client `trellis proxy`. Requests are raw bytes over a socket: to the client
sidecar's outbound listener (absolute-form, as a forward proxy gets them, or origin-form
with Host) and to the service sidecar's inbound listener over mesh mTLS (origin-form, as
a peer sidecar sends them).
"""

from __future__ import annotations

import asyncio
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.dataplane import Member, Sidecar, client_sidecar, run_service
from tests.integration.harness import Mesh, wait_for
from trellis.proxy.identity.agent import IdentityAgent
from trellis.proxy.identity.svid import Svid
from trellis.proxy.identity.tls import client_context

pytestmark = pytest.mark.integration

SERVICE = "shop"
IO_TIMEOUT = 5.0


@dataclass
class World:
    mesh: Mesh
    member: Member
    client: Sidecar
    peer_tls: ssl.SSLContext


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    mesh = Mesh(Path(tmp_path_factory.mktemp("hosts")))
    try:
        mesh.cp.start()
        member = run_service(mesh, SERVICE, app_args=("--log-requests",))
        client = client_sidecar(mesh)

        async def issue() -> Svid:
            token = mesh.cp.join_token("prober")
            agent = IdentityAgent([mesh.cp.secure], mesh.cp.bundle(), token)
            try:
                return await agent.start()
            finally:
                await agent.aclose()

        yield World(mesh, member, client, client_context(asyncio.run(issue())))
    finally:
        mesh.close()


@dataclass
class Answer:
    status_line: bytes
    headers: dict[str, str]
    body: bytes
    closed: bool  # the sidecar closed the connection after this response

    @property
    def status(self) -> int:
        return int(self.status_line.split()[1])


def connect(world: World, side: str) -> socket.socket:
    address = world.client.outbound if side == "outbound" else world.member.sidecar.inbound
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=IO_TIMEOUT)
    return world.peer_tls.wrap_socket(sock) if side == "inbound" else sock


def read_answer(sock: socket.socket, *, then_closed: bool) -> Answer:
    """One response; with `then_closed`, read on: did the sidecar close the connection?"""
    buf = b""
    while b"\r\n\r\n" not in buf:
        piece = sock.recv(65536)
        assert piece, f"closed before a response head: {buf!r}"
        buf += piece
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        piece = sock.recv(65536)
        assert piece, "closed inside a response body"
        rest += piece
    extra = rest[length:]
    closed = False
    while then_closed and not closed and not extra:
        try:
            piece = sock.recv(65536)
        except TimeoutError:
            break
        except ConnectionResetError:
            piece = b""
        closed = not piece
        extra += piece
    assert not extra, f"bytes after the response: {extra[:200]!r}"
    return Answer(lines[0], headers, rest[:length], closed)


def send(world: World, side: str, data: bytes) -> Answer:
    """`data` in one piece to a listener; its one response, and whether it then closed."""
    with connect(world, side) as sock:
        sock.sendall(data)
        return read_answer(sock, then_closed=True)


def target(world: World, side: str, path: str) -> str:
    """The request-target a listener gets: absolute-form to the outbound listener."""
    if side == "outbound":
        return f"http://{SERVICE}:{world.member.port}{path}"
    return path


def authority(world: World) -> str:
    return f"{SERVICE}:{world.member.port}"


def app_saw(world: World, token: str) -> list[str]:
    return [line for line in list(world.member.proc.all_lines) if token in line]


SIDES = ["outbound", "inbound"]

NO_HOST: dict[str, str] = {
    # request line version, the Host line ("" for none)
    "empty-host": "HTTP/1.1|Host:",
    "blank-host": "HTTP/1.1|Host:   ",
    "port-only-host": "HTTP/1.1|Host: :9080",
    "http-1.0-without-host": "HTTP/1.0|",
    "http-1.0-empty-host": "HTTP/1.0|Host:",
}


@pytest.mark.parametrize("case", sorted(NO_HOST))
@pytest.mark.parametrize("side", SIDES)
def test_a_request_that_names_no_host_is_refused(world: World, side: str, case: str) -> None:
    version, host = NO_HOST[case].split("|")
    token = f"/nohost/{side}/{case}"
    lines = [f"GET {token} {version}", *([host] if host else []), "Connection: keep-alive"]
    answer = send(world, side, ("\r\n".join(lines) + "\r\n\r\n").encode())
    assert answer.status == 400, (answer.status_line, answer.body)
    assert answer.headers.get("connection", "").lower() == "close"
    assert answer.closed
    # The same way with a host gets through (the listener is fine), and only that did.
    good = f"/named/{side}/{case}"
    request = f"GET {good} HTTP/1.1\r\nHost: {authority(world)}\r\nConnection: close\r\n\r\n"
    assert send(world, side, request.encode()).status == 200
    wait_for(lambda: app_saw(world, good), 10, f"the app to log {good}")
    assert app_saw(world, token) == []


@pytest.mark.parametrize("host", ["Host:", "Host: elsewhere.example"])
def test_an_absolute_form_target_names_the_host_whatever_host_says(world: World, host: str) -> None:
    path = f"/absolute/{len(host)}"
    request = (
        f"GET {target(world, 'outbound', path)} HTTP/1.1\r\n{host}\r\nConnection: close\r\n\r\n"
    )
    answer = send(world, "outbound", request.encode())
    assert answer.status == 200, (answer.status_line, answer.body)
    seen = json.loads(answer.body)
    # The app gets the target's authority as Host, rebuilt by the sidecars.
    assert seen["path"] == path and seen["headers"]["host"] == authority(world), seen


@pytest.mark.parametrize("minor", [2, 5, 9])
@pytest.mark.parametrize("side", SIDES)
def test_a_higher_minor_version_is_served_as_http_1_1(world: World, side: str, minor: int) -> None:
    path = f"/version/{side}/1.{minor}"
    request = (
        f"POST {target(world, side, path)} HTTP/1.{minor}\r\nHost: {authority(world)}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
    with connect(world, side) as sock:
        sock.sendall(request.encode())
        answer = read_answer(sock, then_closed=False)
        assert answer.status_line.startswith(b"HTTP/1.1 200"), answer.status_line
        assert b'"body_bytes": 3' in answer.body, answer.body
        # HTTP/1.1's semantics: the connection stays open for the next request.
        again = f"GET {target(world, side, path)}/again HTTP/1.{minor}\r\nHost: {authority(world)}"
        sock.sendall(again.encode() + b"\r\nConnection: close\r\n\r\n")
        assert read_answer(sock, then_closed=True).status == 200
    wait_for(lambda: len(app_saw(world, path)) == 2, 10, f"the app to log {path} twice")
    assert app_saw(world, path) == [f"REQ POST {path}", f"REQ GET {path}/again"]


@pytest.mark.parametrize("version", ["HTTP/0.9", "HTTP/2.0", "HTTP/3.0", "HTTP/9.9"])
@pytest.mark.parametrize("side", SIDES)
def test_another_major_version_is_505(world: World, side: str, version: str) -> None:
    path = f"/major/{side}/{version}"
    request = f"GET {target(world, side, path)} {version}\r\nHost: {authority(world)}\r\n\r\n"
    answer = send(world, side, request.encode())
    assert answer.status == 505, (answer.status_line, answer.body)
    assert answer.closed
    assert app_saw(world, path) == []
