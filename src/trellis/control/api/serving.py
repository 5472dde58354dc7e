"""Serving the API with uvicorn on the caller's event loop, on a socket the caller bound.

The composition root (and tests) own the event loop and the signals: this
server never installs signal handlers.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import uvicorn

from trellis.control.config import HostPort


class ApiServer(uvicorn.Server):
    """uvicorn without its own signal handling: whoever runs it decides when it stops."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def listen_tcp(address: HostPort) -> socket.socket:
    """A listening, non-blocking TCP socket on `address` (port 0 picks a free port)."""
    family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit it: without it, a keep-alive response written in two
        # parts waits for the client's delayed ACK (40 ms per request, measured here).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((address.host, address.port))
        sock.listen(128)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
