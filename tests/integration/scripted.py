"""Scripted upstreams: TCP servers on 127.0.0.1 that answer exactly what a test says.

A real app answers correctly; these answer the way a broken, slow or hostile one
does (empty lines before a response, a connection closed after a request was read,
a body read and never answered), so a test can check what the sidecar makes of it.
`ScriptedServer` accepts on a free port and serves each connection in a thread of its
own with the test's function; a `Reader` reads what a sidecar sent; `scripted_world`
starts a control plane and a standalone client sidecar in front of one.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from tests.integration.dataplane import Sidecar, client_sidecar
from tests.integration.harness import Mesh


class ScriptedServer:
    """Accepts until closed; `serve(conn, number)` runs per connection (numbered from 1)
    in its own thread; the connection is closed when it returns."""

    def __init__(self, serve: Callable[[socket.socket, int], None]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]
        self._serve = serve
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._run, args=(conn, self.connections), daemon=True).start()

    def _run(self, conn: socket.socket, number: int) -> None:
        with conn:
            self._serve(conn, number)

    def close(self) -> None:
        self.sock.close()


class Request:
    """One request read off a connection: its request line's method and target, its
    header lines, and its Content-Length body (no chunked bodies: not needed here)."""

    def __init__(self, head: bytes, body: bytes) -> None:
        lines = head.split(b"\r\n")
        method, target = lines[0].split(b" ")[:2]
        self.method = method.decode()
        self.target = target.decode("latin-1")
        self.fields = lines[1:]
        self.body = body


class Reader:
    """Reads heads and bodies off one connection, keeping what arrived beyond them."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buf = b""

    def more(self) -> bool:
        try:
            piece = self.conn.recv(65536)
        except OSError:
            return False
        self.buf += piece
        return bool(piece)

    def head(self) -> bytes | None:
        """The next head (without its blank line), or None when the connection ended."""
        while b"\r\n\r\n" not in self.buf:
            if not self.more():
                return None
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        return head

    def request(self) -> Request | None:
        """The next request with its Content-Length body, or None when it ended first."""
        head = self.head()
        if head is None:
            return None
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(self.buf) < length:
            if not self.more():
                return None
        body, self.buf = self.buf[:length], self.buf[length:]
        return Request(head, body)


S = TypeVar("S", bound=ScriptedServer)


@dataclass
class ScriptedWorld(Generic[S]):
    mesh: Mesh
    client: Sidecar  # a standalone `trellis proxy`: the passthrough cluster reaches `upstream`
    upstream: S


@contextlib.contextmanager
def scripted_world(tmp: Path, upstream: S, *proxy_args: str) -> Iterator[ScriptedWorld[S]]:
    """A control plane and a client sidecar (with `proxy_args`) in front of `upstream`;
    all stopped, and `upstream` closed, on exit."""
    mesh = Mesh(tmp)
    try:
        mesh.cp.start()
        yield ScriptedWorld(mesh, client_sidecar(mesh, extra=proxy_args), upstream)
    finally:
        upstream.close()
        mesh.close()
