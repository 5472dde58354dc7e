"""Raw HTTP/1.1 over a socket, for tests that must control every byte a proxy receives.

httpx and curl normalise what they send (paths, framing, one request at a time); the
cases here need the bytes as written: several requests in one write (pipelining), a
body trickled a byte at a time, a target spelt the way an attacker would. The inbound
listener speaks mesh mTLS, so a `Listener` carries the TLS context a peer sidecar
would use (`mesh_client_context`: a real SVID from the mesh CA).
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from dataclasses import dataclass

from tests.integration.dataplane import Member, Sidecar
from tests.integration.harness import Mesh
from trellis.proxy.identity.agent import IdentityAgent
from trellis.proxy.identity.svid import Svid
from trellis.proxy.identity.tls import client_context

IO_TIMEOUT = 10.0  # a socket read that gets nothing for this long fails the test


def mesh_client_context(mesh: Mesh, service_account: str) -> ssl.SSLContext:
    """A real SVID from the mesh CA (join token, CSR), as a TLS client context."""

    async def issue() -> Svid:
        agent = IdentityAgent(
            [mesh.cp.secure], mesh.cp.bundle(), mesh.cp.join_token(service_account)
        )
        try:
            return await agent.start()
        finally:
            await agent.aclose()

    return client_context(asyncio.run(issue()))


@dataclass
class Listener:
    """Where requests are sent, and how a request there names the service."""

    name: str
    address: tuple[str, int]
    authority: bytes  # the Host header
    prefix: bytes  # prepended to the path: the absolute-form scheme and authority, or nothing
    tls: ssl.SSLContext | None = None  # the inbound listener is mesh mTLS (STRICT)

    def target(self, path: str) -> bytes:
        return self.prefix + path.encode("latin-1")

    def connect(self, timeout: float = IO_TIMEOUT) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=timeout)
        return sock if self.tls is None else self.tls.wrap_socket(sock)

    def request(
        self,
        path: str,
        *,
        method: bytes = b"GET",
        headers: tuple[bytes, ...] = (),
        body: bytes = b"",
        version: bytes = b"HTTP/1.1",
        host: bool = True,
    ) -> bytes:
        """The bytes of one request; the caller states the body's framing in `headers`."""
        lines = [b"%s %s %s" % (method, self.target(path), version)]
        if host:
            lines.append(b"Host: " + self.authority)
        lines.extend(headers)
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


def address(hostport: str) -> tuple[str, int]:
    host, _, port = hostport.rpartition(":")
    return host, int(port)


def listeners_of(
    service: str, member: Member, client: Sidecar, peer_tls: ssl.SSLContext
) -> dict[str, Listener]:
    """The caller's outbound listener (absolute-form, plaintext) and the service's inbound
    listener (origin-form, mesh mTLS as a peer sidecar speaks it)."""
    authority = f"{service}:{member.port}".encode()
    return {
        "outbound": Listener(
            "outbound", address(client.outbound), authority, b"http://" + authority
        ),
        "inbound": Listener("inbound", address(member.sidecar.inbound), authority, b"", peer_tls),
    }


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


class ResponseStream:
    """Responses read one after another from one connection (Content-Length or chunked)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def more(self) -> None:
        piece = self.sock.recv(65536)
        if not piece:
            raise EOFError(f"connection closed; unread: {self.buf[:200]!r}")
        self.buf += piece

    def _line(self) -> bytes:
        while b"\r\n" not in self.buf:
            self.more()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def _take(self, n: int) -> bytes:
        while len(self.buf) < n:
            self.more()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def next(self, head_request: bool = False) -> Response:
        while b"\r\n\r\n" not in self.buf:
            self.more()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if head_request or status in (204, 304) or 100 <= status < 200:
            return Response(status, headers, b"")
        if "chunked" in headers.get("transfer-encoding", ""):
            body = b""
            while True:
                size = int(self._line().split(b";")[0], 16)
                if size == 0:
                    while self._line():
                        pass
                    break
                body += self._take(size)
                self._take(2)
            return Response(status, headers, body)
        return Response(status, headers, self._take(int(headers.get("content-length", "0"))))

    def closed_soon(self, timeout: float = IO_TIMEOUT) -> bool:
        """True when the peer closes (or resets) the connection within `timeout`, with no
        more bytes sent; False when it stays open that long."""
        deadline = time.monotonic() + timeout
        self.sock.settimeout(0.2)
        while time.monotonic() < deadline:
            try:
                piece = self.sock.recv(65536)
            except TimeoutError:
                continue
            except (ConnectionResetError, ssl.SSLError, OSError):
                return True
            if not piece:
                return True
            self.buf += piece
            raise AssertionError(f"unexpected bytes: {self.buf[:200]!r}")
        return False
