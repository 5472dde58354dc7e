"""Serving the API with uvicorn on the caller's event loop, on a socket the caller bound.

The composition root (and tests) own the event loop and the signals: this
server never installs signal handlers. `api_config` is uvicorn's configuration
for the API, the HTTP layer's bounds included: h11 (which holds at most
`API_MAX_HEAD_BYTES` of an unfinished request head; httptools keeps any length
of URL and headers in memory: 50 MB of URL grew a server by 50 MB, measured),
and a head that passes the bound is answered 414 (the request line alone) or 431,
then the connection is closed. The body's bounds are the request guard's.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from trellis.control.config import HostPort
from trellis.control.limits import API_MAX_HEAD_BYTES, size_text

_END_OF_HEAD = re.compile(rb"\n\r?\n")
_REASONS = {414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


def head_refusal(buffered: bytes, limit: int) -> int | None:
    """414 or 431 when the request head starting `buffered` is unfinished after `limit` bytes."""
    if len(buffered) <= limit or _END_OF_HEAD.search(buffered, 0, limit + 3):
        return None
    return 414 if b"\n" not in buffered[:limit] else 431


class ApiHttpProtocol(H11Protocol):
    """uvicorn's h11 protocol, with the RFC's answer to a request head over the bound."""

    def data_received(self, data: bytes) -> None:
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            limit = self.config.h11_max_incomplete_event_size or API_MAX_HEAD_BYTES
            status = head_refusal(self.conn.trailing_data[0] + data, limit)
            if status is not None:
                self._refuse_head(status, limit)
                return
        super().data_received(data)

    def _refuse_head(self, status: int, limit: int) -> None:
        what = "request line" if status == 414 else "request head"
        body = json.dumps(
            {"error": f"the {what} is longer than the API accepts ({size_text(limit)})"}
        ).encode()
        self.transport.write(
            b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
            b"connection: close\r\n\r\n%s" % (status, _REASONS[status], len(body), body)
        )
        self.transport.close()


def api_config(app: Any, **options: Any) -> uvicorn.Config:
    """uvicorn's configuration for the API app: the HTTP protocol and its bounds, no lifespan,
    no logging setup of its own; `options` add to it (log level, graceful shutdown...)."""
    return uvicorn.Config(
        app,
        http=ApiHttpProtocol,
        h11_max_incomplete_event_size=API_MAX_HEAD_BYTES,
        lifespan="off",
        log_config=None,
        **options,
    )


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
