"""Ways around an inbound policy other than spelling the path, tried through real sidecars:
switching the connection to another protocol behind an allowed request, naming one host
in the target and another in Host, and a denied request with a body in a pipeline.

One mesh (MeshConfig PERMISSIVE): `switch` and `liar` are tests/integration/
switching_app.py under `trellis run` — an app that answers any `Upgrade` with 101 and
then serves the requests that follow on the same connection, as servers accepting
`h2c` do (`liar` always names `h2c` in its 101, whatever was asked) — with a DENY on
`/admin`, `/admin/*` and on the host `internal.switch`; and a client `trellis proxy`.
Requests go with raw sockets through the client's outbound listener (to the peer over
mTLS) and straight at the service's inbound listener (plaintext).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.dataplane import Member, Sidecar, client_sidecar, run_service
from tests.integration.harness import Mesh, free_port, wait_for
from tests.integration.rawhttp import Listener, ResponseStream, address

pytestmark = pytest.mark.integration

APP = str(Path(__file__).with_name("switching_app.py"))
PERMISSIVE = """
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {mtls: {mode: PERMISSIVE}}
"""
POLICIES = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: deny-admin}
spec:
  action: DENY
  rules:
  - to: [{operation: {paths: [/admin, /admin/*]}}]
  - when: [{key: "request.headers[host]", values: [internal.switch]}]
"""
H2C = (
    b"Connection: Upgrade, HTTP2-Settings",
    b"Upgrade: h2c",
    b"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
)
WEBSOCKET = (
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
    b"Sec-WebSocket-Version: 13",
)
_case = itertools.count()


@dataclass
class World:
    mesh: Mesh
    members: dict[str, Member]
    client: Sidecar

    def listener(self, service: str, side: str) -> Listener:
        authority = f"{service}:{self.members[service].port}".encode()
        if side == "outbound":
            return Listener(side, address(self.client.outbound), authority, b"http://" + authority)
        return Listener(side, address(self.members[service].sidecar.inbound), authority, b"")

    def app_log(self, service: str, needle: str) -> list[str]:
        return [line for line in list(self.members[service].proc.all_lines) if needle in line]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    mesh = Mesh(Path(tmp_path_factory.mktemp("evasions")))
    try:
        mesh.cp.start()
        mesh.cp.apply(PERMISSIVE + "---\n" + POLICIES)
        members = {}
        for name, extra in (("switch", ()), ("liar", ("--answer-upgrade", "h2c"))):
            port = free_port()
            app = [sys.executable, APP, "--port", str(port), "--name", name, *extra]
            members[name] = run_service(mesh, name, app=app, port=port)
        world = World(mesh, members, client_sidecar(mesh))
        for service in members:
            for side in ("outbound", "inbound"):
                lst = world.listener(service, side)
                wait_for(
                    lambda lst=lst: status_of(lst, "/admin") == 403,
                    20,
                    f"the policy at {service}'s {side} side",
                )
        yield world
    finally:
        mesh.close()


def status_of(lst: Listener, path: str) -> int:
    with lst.connect() as sock:
        sock.sendall(lst.request(path, headers=(b"Connection: close",)))
        return ResponseStream(sock).next().status


SIDES = ["outbound", "inbound"]


@pytest.mark.parametrize("upgrade", ["h2c", "x-raw"])
@pytest.mark.parametrize("side", SIDES)
def test_an_upgrade_to_another_protocol_than_websocket_is_ignored(
    world: World, side: str, upgrade: str
) -> None:
    """The upgrade is not forwarded: the allowed request is served as HTTP/1.1, and the
    request written behind it (for the protocol the client hoped for) reaches nobody."""
    lst = world.listener("switch", side)
    case = next(_case)
    headers = H2C if upgrade == "h2c" else (b"Connection: Upgrade", b"Upgrade: x-raw")
    data = lst.request(f"/public/up-{case}", headers=headers) + (
        b"GET /admin/secrets-%d HTTP/1.1\r\nHost: x\r\n\r\n" % case
    )
    with lst.connect() as sock:
        sock.sendall(data)
        stream = ResponseStream(sock)
        response = stream.next()
        assert response.status == 200, response
        assert response.headers.get("connection") == "close"
        assert stream.closed_soon()
    wait_for(lambda: world.app_log("switch", f"/public/up-{case}"), 10, "the allowed request")
    assert world.app_log("switch", f"/public/up-{case}") == [f"REQ GET /public/up-{case}"]
    assert world.app_log("switch", f"/admin/secrets-{case}") == []


@pytest.mark.parametrize("side", SIDES)
def test_an_app_that_switches_to_another_protocol_than_asked_gets_502(
    world: World, side: str
) -> None:
    lst = world.listener("liar", side)
    case = next(_case)
    with lst.connect() as sock:
        sock.sendall(lst.request(f"/ws-{case}", headers=WEBSOCKET))
        response = ResponseStream(sock).next()
    assert response.status == 502, response
    wait_for(lambda: world.app_log("liar", f"/ws-{case}"), 10, "the request")
    assert world.app_log("liar", f"/ws-{case}") == [f"REQ GET /ws-{case}"]


def test_a_host_policy_checks_the_host_the_app_receives(world: World) -> None:
    """An absolute-form target names the host forwarded to the app, whatever Host says."""
    lst = world.listener("switch", "inbound")
    case = next(_case)
    with lst.connect() as sock:
        sock.sendall(
            b"GET /h-%d HTTP/1.1\r\nHost: internal.switch\r\n\r\n" % case
            + b"GET http://internal.switch/h-%d-abs HTTP/1.1\r\nHost: other\r\n\r\n" % case
        )
        stream = ResponseStream(sock)
        assert stream.next().status == 403
        assert stream.next().status == 403
    assert world.app_log("switch", f"/h-{case}") == []


@pytest.mark.parametrize("side", SIDES)
def test_a_denied_post_in_a_pipeline_keeps_the_connection_and_what_follows(
    world: World, side: str
) -> None:
    """Its body is read and dropped; the requests behind it are served, in order."""
    lst = world.listener("switch", side)
    case = next(_case)
    data = (
        lst.request(f"/admin/pay-{case}", method=b"POST",
                    headers=(b"Content-Length: 3",), body=b"abc")
        + lst.request(f"/public/after-{case}")
        + lst.request(f"/admin/pay-{case}-chunked", method=b"POST",
                      headers=(b"Transfer-Encoding: chunked",), body=b"3\r\nabc\r\n0\r\n\r\n")
        + lst.request(f"/public/after-{case}-2")
    )  # fmt: skip
    with lst.connect() as sock:
        sock.sendall(data)
        stream = ResponseStream(sock)
        first = stream.next()
        assert first.status == 403 and first.headers.get("connection") != "close", first
        second = stream.next()
        assert second.status == 200 and f"/public/after-{case}".encode() in second.body
        third = stream.next()
        assert third.status == 403, third
        if side == "inbound":
            # Denied before its body was read, and a chunked body's length is unknown:
            # the connection closes. (The outbound side had read and forwarded it all
            # when the peer's denial came back: it keeps the connection.)
            assert third.headers.get("connection") == "close", third
            assert stream.closed_soon()
        else:
            assert stream.next().status == 200
    expected = [f"REQ GET /public/after-{case}"]
    if side == "outbound":
        expected.append(f"REQ GET /public/after-{case}-2")
    # The app's log is read from its output by another thread: a line may lag the answer.
    wait_for(lambda: len(world.app_log("switch", f"-{case}")) >= len(expected), 10, "the log")
    assert world.app_log("switch", f"-{case}") == expected
