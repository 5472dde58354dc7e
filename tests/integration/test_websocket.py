"""WebSocket through two sidecars (mesh mTLS between them): the Upgrade request is
forwarded hop by hop, the app's 101 comes back, and both sidecars splice the connection;
frames then flow both ways until the client closes. An upgrade the app declines is an
ordinary response, after which the client connection closes (bytes may follow it).

The app is a small WebSocket echo server on raw sockets (RFC 6455 handshake and
frames), under `trellis run`; the client speaks the same through the client sidecar.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import sys

import pytest

from tests.integration.dataplane import client_sidecar, run_service
from tests.integration.harness import Mesh, free_port
from tests.integration.traffic import SERVICE_PORT, service_yaml

pytestmark = pytest.mark.integration

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# Echoes each text frame as "echo: " + payload; /nope answers 400 instead of switching.
ECHO_APP = r"""
import base64, hashlib, socket, struct, sys, threading
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
def read_exact(conn, n):
    data = b""
    while len(data) < n:
        more = conn.recv(n - len(data))
        if not more:
            raise EOFError
        data += more
    return data
def serve(conn):
    with conn:
        head = b""
        while b"\r\n\r\n" not in head:
            more = conn.recv(4096)
            if not more:
                return
            head += more
        lines = head.split(b"\r\n")
        pairs = (line.partition(b":") for line in lines[1:] if line)
        fields = {k.strip().lower(): v.strip() for k, _, v in pairs}
        if b" /nope " in lines[0] or fields.get(b"upgrade", b"").lower() != b"websocket":
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 7\r\n\r\nno ws\r\n")
            return
        accept = base64.b64encode(hashlib.sha1(fields[b"sec-websocket-key"] + GUID).digest())
        conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
        try:
            while True:
                b0, b1 = read_exact(conn, 2)
                size = b1 & 0x7F
                if size == 126:
                    size = struct.unpack("!H", read_exact(conn, 2))[0]
                mask = read_exact(conn, 4)
                payload = bytes(c ^ mask[i % 4] for i, c in enumerate(read_exact(conn, size)))
                if b0 & 0x0F == 8:
                    conn.sendall(b"\x88\x00")
                    return
                out = b"echo: " + payload
                conn.sendall(bytes([0x81, 126]) + struct.pack("!H", len(out)) + out)
        except EOFError:
            return
server = socket.create_server(("127.0.0.1", int(sys.argv[1])))
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def _frame(payload: bytes, opcode: int = 1) -> bytes:
    mask = os.urandom(4)
    masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", len(payload)) + mask + masked


def _read_exact(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        more = sock.recv(n - len(data))
        assert more, "connection closed in the middle of a frame"
        data += more
    return data


def _read_head(sock: socket.socket) -> bytes:
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        more = sock.recv(1)
        assert more, f"closed before the end of the head: {head!r}"
        head += more
    return head


def _upgrade(path: str, key: bytes) -> bytes:
    return (
        (
            f"GET http://web:{SERVICE_PORT}{path} HTTP/1.1\r\nHost: web:{SERVICE_PORT}\r\n"
            "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Key: "
        ).encode()
        + key
        + b"\r\n\r\n"
    )


def _echo_behind_sidecars(mesh: Mesh) -> tuple[str, int]:
    """Service `web` running ECHO_APP under `trellis run`, and a client sidecar's outbound
    (host, port) to reach it through."""
    mesh.cp.apply(service_yaml("web", {"app": "web"}))
    port = free_port()
    run_service(mesh, "web", port=port, app=[sys.executable, "-c", ECHO_APP, str(port)])
    host, _, outbound = client_sidecar(mesh).outbound.rpartition(":")
    return host, int(outbound)


def test_a_websocket_crosses_both_sidecars(mesh: Mesh) -> None:
    host, outbound = _echo_behind_sidecars(mesh)

    key = base64.b64encode(os.urandom(16))
    with socket.create_connection((host, outbound), timeout=10) as sock:
        # The first frame goes right behind the handshake, before any answer.
        sock.sendall(_upgrade("/chat", key) + _frame(b"first"))
        head = _read_head(sock)
        assert head.startswith(b"HTTP/1.1 101"), head
        fields = {
            k.strip().lower(): v.strip()
            for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:] if line)
        }
        assert fields[b"upgrade"].lower() == b"websocket"
        assert fields[b"connection"].lower() == b"upgrade"
        assert fields[b"sec-websocket-accept"] == base64.b64encode(
            hashlib.sha1(key + GUID).digest()
        )
        for text in [b"first", b"second", b"x" * 5000]:
            if text != b"first":
                sock.sendall(_frame(text))
            b0, b1 = _read_exact(sock, 2)
            assert (b0, b1) == (0x81, 126)
            size = struct.unpack("!H", _read_exact(sock, 2))[0]
            assert _read_exact(sock, size) == b"echo: " + text
        sock.sendall(_frame(b"", opcode=8))  # close
        assert _read_exact(sock, 2) == b"\x88\x00"
        assert sock.recv(1) == b""  # the app closed: both sidecars closed after it


def test_an_upgrade_the_app_declines_is_an_ordinary_answer(mesh: Mesh) -> None:
    host, outbound = _echo_behind_sidecars(mesh)
    with socket.create_connection((host, outbound), timeout=10) as sock:
        sock.sendall(_upgrade("/nope", base64.b64encode(os.urandom(16))) + b"\x81\x00")
        data = b""
        while more := sock.recv(4096):
            data += more
    assert data.startswith(b"HTTP/1.1 400"), data
    assert data.endswith(b"no ws\r\n")  # and the connection closed after it
