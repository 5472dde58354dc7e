"""Pipelined requests through both listeners of real, compiled sidecars: every response in
order, every request delivered to the app exactly once.

A client may write many requests before it reads an answer (RFC 9112 §9.3.2). The
sidecar must answer them in order and forward each once: a request forwarded twice is
a payment made twice. One mesh for the module: a control plane, the demo web app under
`trellis run --log-requests` (it prints `REQ METHOD TARGET` for every request it
receives and answers with the path and the SHA-256 of the body it read) and a standalone
client sidecar. Each case writes all its requests in one `sendall`, GET, HEAD, DELETE
and POST/PUT with Content-Length and chunked bodies mixed, to the client's outbound
listener (plaintext, absolute-form) and to the service's inbound listener (mesh mTLS,
as a peer sidecar speaks).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.dataplane import Member, Sidecar, client_sidecar, run_service
from tests.integration.harness import Mesh, wait_for
from tests.integration.rawhttp import (
    Listener,
    ResponseStream,
    listeners_of,
    mesh_client_context,
)
from trellis import compiled

pytestmark = pytest.mark.integration

SERVICE = "ledger"
_case = itertools.count()


@dataclass
class World:
    mesh: Mesh
    member: Member
    client: Sidecar
    listeners: dict[str, Listener]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # Compiled-only faults (mypyc's type checks and narrowing) are what broke pipelining:
    # this module proves nothing against the interpreted sources alone.
    assert compiled.compiled_modules() == list(compiled.MODULES), compiled.describe()
    mesh = Mesh(Path(tmp_path_factory.mktemp("pipelining")))
    try:
        mesh.cp.start()
        member = run_service(mesh, SERVICE, app_args=("--log-requests",))
        client = client_sidecar(mesh)
        peer_tls = mesh_client_context(mesh, "prober")
        yield World(mesh, member, client, listeners_of(SERVICE, member, client, peer_tls))
    finally:
        mesh.close()


@dataclass
class Sent:
    method: str
    path: str
    body: bytes


def requests_for(lst: Listener, tag: str, count: int) -> tuple[list[Sent], bytes]:
    """`count` requests of mixed methods and framings, each with its own path."""
    sent: list[Sent] = []
    data = b""
    for i in range(count):
        path = f"/pipe/{tag}/{i}"
        kind = i % 6
        body = b""
        if kind == 0:
            method, headers = "GET", ()
        elif kind == 1:
            method, body = "POST", b"payment %d " % i * (i % 7 + 1)
            headers = (b"Content-Length: %d" % len(body),)
        elif kind == 2:
            method, body = "PUT", b"x" * (1000 + i)
            payload = b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
            data += lst.request(
                path, method=b"PUT", headers=(b"Transfer-Encoding: chunked",), body=payload
            )
            sent.append(Sent(method, path, body))
            continue
        elif kind == 3:
            method, headers = "HEAD", ()
        elif kind == 4:
            method, headers = "DELETE", ()
        else:
            method, body = "POST", b""
            headers = (b"Content-Length: 0",)
        data += lst.request(path, method=method.encode(), headers=headers, body=body)
        sent.append(Sent(method, path, body))
    return sent, data


def app_log(world: World, tag: str) -> Counter[str]:
    needle = f"/pipe/{tag}/"
    return Counter(line for line in list(world.member.proc.all_lines) if needle in line)


@pytest.mark.parametrize("count", [10, 100])
@pytest.mark.parametrize("side", ["outbound", "inbound"])
def test_pipelined_requests_are_answered_in_order_and_delivered_once(
    world: World, side: str, count: int
) -> None:
    lst = world.listeners[side]
    tag = f"{side}-{count}-{next(_case)}"
    sent, data = requests_for(lst, tag, count)
    with lst.connect() as sock:
        # A big pipeline is written while responses come back: write from another thread
        # so that neither side waits on a full buffer.
        writer = threading.Thread(target=sock.sendall, args=(data,))
        writer.start()
        stream = ResponseStream(sock)
        for s in sent:
            response = stream.next(head_request=s.method == "HEAD")
            assert response.status == 200, (s, response)
            if s.method != "HEAD":
                answer = json.loads(response.body)
                assert (answer["method"], answer["path"]) == (s.method, s.path)
                assert answer["body_sha256"] == hashlib.sha256(s.body).hexdigest()
        writer.join()
    expected = Counter(f"REQ {s.method} {s.path}" for s in sent)
    wait_for(lambda: app_log(world, tag) == expected, 10, "the app to log each request")
    assert app_log(world, tag) == expected  # each exactly once, none twice


@pytest.mark.parametrize("side", ["outbound", "inbound"])
def test_pipelined_requests_behind_a_close_are_not_served(world: World, side: str) -> None:
    """RFC 9112 §9.6: nothing after `Connection: close` is read."""
    lst = world.listeners[side]
    tag = f"close-{side}-{next(_case)}"
    data = (
        lst.request(f"/pipe/{tag}/0")
        + lst.request(f"/pipe/{tag}/1", headers=(b"Connection: close",))
        + lst.request(f"/pipe/{tag}/2")
    )
    with lst.connect() as sock:
        sock.sendall(data)
        stream = ResponseStream(sock)
        assert stream.next().status == 200
        last = stream.next()
        assert last.status == 200 and last.headers.get("connection") == "close"
        assert stream.closed_soon()
    wait_for(lambda: len(app_log(world, tag)) == 2, 10, "the app to log two requests")
    assert app_log(world, tag) == Counter(
        {f"REQ GET /pipe/{tag}/0": 1, f"REQ GET /pipe/{tag}/1": 1}
    )
