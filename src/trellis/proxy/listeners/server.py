"""ServerConnection: one downstream HTTP/1.1 connection, requests served one at a time.

Theory of operation: bytes go to a `RequestReader`; each request head starts
an exchange through the listener's `RequestHandler.start(conn, head)`, which
attaches itself as `conn.exchange` before it does anything else (it may
answer at once, and `done` detaches it); body
pieces and the end go to that exchange. When the exchange has sent its whole
response it calls `done(keep_alive)`: the connection closes, or takes the next
request. Requests pipelined behind the current one are queued (reading is
paused meanwhile, so the queue stays small) and replayed in order.

A request the reader refuses gets the RFC answer (400, 413, 414, 431, 501,
505) with `Connection: close`, and the connection closes; nothing that arrived
with the bad bytes goes upstream (the reader delivers nothing of a feed that
fails). When the refusal comes while a response is already on its way (the
upstream answered before the request body was over), a second response cannot
follow it: the connection is reset instead. Once the connection is closing,
requests still parsed from it are dropped, not started. A CONNECT request
hands the connection over to a tunnel.

Flow control: when the downstream socket's write buffer is full,
`pause_writing` reaches the exchange, which stops reading from upstream.

Must not know what a listener does with a request.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable
from typing import Any, Protocol, cast

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.http1.reader import RequestReader
from trellis.proxy.http1.writer import local_response
from trellis.proxy.identity.tls import peer_spiffe_id

log = logging.getLogger("trellis.proxy.server")

IDLE_TIMEOUT = 300.0  # a downstream connection with no request in flight for this long
HEAD_TIMEOUT = 30.0  # a request head that has begun must be complete within this (slowloris)


class Exchange(Protocol):
    """What a connection drives: one request and its response."""

    def on_request_body(self, data: bytes) -> None: ...
    def on_request_end(self) -> None: ...
    def on_downstream_lost(self) -> None: ...
    def on_downstream_paused(self, paused: bool) -> None: ...


class TunnelSink(Protocol):
    """Where a connection's bytes go once CONNECT made it a tunnel."""

    def downstream_data(self, data: bytes) -> None: ...
    def downstream_eof(self) -> None: ...


class RequestHandler(Protocol):
    """A listener's per-request entry point."""

    def start(self, conn: ServerConnection, head: RequestHead) -> Exchange: ...
    def protocol_error(self, conn: ServerConnection, error: ProtocolError) -> None: ...


_Event = tuple[str, Any]


class ServerConnection:
    __slots__ = (
        "_early",
        "_eof",
        "_head_since",
        "_idle_since",
        "_queue",
        "_reading_paused",
        "_upgraded",
        "closed",
        "exchange",
        "handler",
        "peer",
        "peer_identity",
        "reader",
        "registry",
        "secure",
        "transport",
        "tunnel",
        "write_paused",
    )

    def __init__(
        self, handler: RequestHandler, registry: set[ServerConnection] | None = None
    ) -> None:
        self.handler = handler
        self.registry = registry
        self.reader = RequestReader(self)
        self.transport: asyncio.Transport | None = None
        self.exchange: Exchange | None = None
        self.peer: tuple[str, int] = ("", 0)
        self.secure = False  # the connection is mesh mTLS
        self.peer_identity = ""  # the client's SPIFFE ID (mTLS only)
        self.closed = False
        self.write_paused = False
        self._queue: list[_Event] | None = None  # events of pipelined requests
        self._reading_paused = False
        self._eof = False
        self._early = b""  # bytes after a CONNECT head, before its tunnel exists
        self._upgraded = False
        # Timestamps read by `sweep` (the listener calls it every second): cheaper on the
        # hot path than a timer armed and cancelled per request.
        self._idle_since = 0.0  # no request in flight since then (0: one is in flight)
        self._head_since = 0.0  # the current request's first bytes arrived then (0: none)
        self.tunnel: TunnelSink | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        if self.registry is not None:
            self.registry.add(self)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple):
            self.peer = (str(peer[0]), int(peer[1]))
        if transport.get_extra_info("ssl_object") is not None:  # mTLS (the inbound acceptor)
            self.secure = True
            self.peer_identity = peer_spiffe_id(transport.get_extra_info("peercert"))
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=256 * 1024)
        self._idle_since = _now()

    def data_received(self, data: bytes) -> None:
        if self.tunnel is not None:
            self.tunnel.downstream_data(data)
            return
        if self.exchange is None and not self._head_since:
            self._head_since = _now()
        try:
            rest = self.reader.feed(data)
        except ProtocolError as e:
            self._protocol_error(e)
            return
        if rest is not None:  # a CONNECT head: what follows belongs to the tunnel
            if self.tunnel is not None:
                if rest:
                    self.tunnel.downstream_data(rest)
            elif self.exchange is not None:  # the tunnel is being set up: hold the bytes
                self._early = rest
                self._upgraded = True
                self.pause_reading(True)
            else:
                self.close()  # refused: the answer was written

    def eof_received(self) -> bool | None:
        # In a tunnel a half-close is passed on. Otherwise the client gave up (as Envoy
        # and nginx read it): the connection closes and the request in flight is dropped
        # upstream too, instead of running until the app answers nobody.
        self._eof = True
        if self.tunnel is not None:
            self.tunnel.downstream_eof()
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_idle()
        if self.registry is not None:
            self.registry.discard(self)
        exchange = self.exchange
        self.exchange = None
        if exchange is not None:
            exchange.on_downstream_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self.exchange is not None:
            self.exchange.on_downstream_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        if self.exchange is not None:
            self.exchange.on_downstream_paused(False)

    # -- RequestReader events -------------------------------------------------------------

    def on_request(self, head: RequestHead) -> None:
        if self.closed:
            return  # pipelined behind a request that closed the connection
        if self.exchange is not None or self._queue is not None:
            self._enqueue(("head", head))
            return
        self._idle_since = self._head_since = 0.0  # _cancel_idle(), inlined: hot
        self._start(head)

    def _start(self, head: RequestHead) -> None:
        """Start the listener's exchange (it attaches itself as `exchange`). A bug in it
        must not leave the client without an answer: 500, logged, connection closed."""
        try:
            self.handler.start(self, head)
        except Exception:
            log.exception("request %s %s failed in the proxy", head.method, head.target)
            exchange, self.exchange = self.exchange, None
            if exchange is not None:
                exchange.on_downstream_lost()
            if not self.closed:
                body = b"internal proxy error\n"
                self.write(local_response(500, body, flags="DPE", close=True))
                self.close()

    def on_body(self, data: bytes) -> None:
        if self.closed:
            return
        if self._queue is not None:
            self._enqueue(("body", data))
        elif self.exchange is not None:
            self.exchange.on_request_body(data)

    def on_request_end(self) -> None:
        if self.closed:
            return
        if self._queue is not None:
            self._enqueue(("end", None))
        elif self.exchange is not None:
            self.exchange.on_request_end()

    def _enqueue(self, event: _Event) -> None:
        if self._queue is None:
            self._queue = []
        self._queue.append(event)
        self.pause_reading(True)

    # -- used by exchanges ----------------------------------------------------------------

    def attach_tunnel(self, sink: TunnelSink) -> None:
        """From now on the connection's bytes go to `sink` (CONNECT succeeded)."""
        self.tunnel = sink
        early, self._early = self._early, b""
        if early:
            sink.downstream_data(early)
        self.pause_reading(False)

    def write(self, data: bytes) -> None:
        if not self.closed and self.transport is not None:
            self.transport.write(data)

    def pause_reading(self, paused: bool) -> None:
        if self.transport is None or self.closed or paused == self._reading_paused:
            return
        self._reading_paused = paused
        if paused:
            self.transport.pause_reading()
        else:
            self.transport.resume_reading()

    def done(self, keep_alive: bool) -> None:
        """The exchange sent its whole response; serve the next request or close."""
        self.exchange = None
        if not keep_alive or self.closed or self._upgraded or (self._eof and not self._queue):
            self.close()
            return
        queue = self._queue
        self._queue = None
        if queue:
            for i, (kind, value) in enumerate(queue):
                if kind == "head":
                    if self.exchange is not None:  # the replayed request is still in flight
                        self._queue = queue[i:]
                        return
                    self._start(value)
                elif kind == "body":
                    self.on_body(value)
                else:
                    self.on_request_end()
                if self.closed:
                    return
        if self.exchange is None:
            self._idle_since = _now()
        if self._queue is None and self._reading_paused:
            self.pause_reading(False)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self._cancel_idle()
            self.transport.close()

    def abort(self) -> None:
        if not self.closed and self.transport is not None:
            self.closed = True
            self._cancel_idle()
            self.transport.abort()

    def _protocol_error(self, e: ProtocolError) -> None:
        self.pause_reading(True)
        exchange = self.exchange
        answering = False
        if exchange is not None:
            # The stack's exchange says whether its response has begun (others answer at
            # once and are never in flight here).
            answering = bool(getattr(exchange, "resp_started", False))
            self.exchange = None
            exchange.on_downstream_lost()
        self.handler.protocol_error(self, e)
        if answering:
            self.abort()  # a response is half sent: an error response cannot follow it
        elif not self.closed:
            body = f"{e.reason}\n".encode()
            self.write(local_response(e.status, body, flags="DPE", close=True))
            self.close()

    def _arm_idle(self) -> None:
        self._idle_since = _now()

    def _cancel_idle(self) -> None:
        self._idle_since = 0.0
        self._head_since = 0.0

    def sweep(self, now: float) -> None:
        """Close the connection if a head is late (408) or it idled too long."""
        if self.closed or self.exchange is not None or self.tunnel is not None:
            return
        if self._head_since and now - self._head_since > HEAD_TIMEOUT:
            self.write(local_response(408, b"request head not received in time\n", close=True))
            self.close()
        elif self._idle_since and now - self._idle_since > IDLE_TIMEOUT:
            self.close()


def connection_factory(
    handler: RequestHandler, registry: set[ServerConnection] | None = None
) -> Callable[[], Any]:
    """The protocol factory asyncio wants. ServerConnection is a protocol by its methods
    alone (uvloop asks for no base class): without asyncio.Protocol as a base it is a
    native class to compiled code, whose attributes and calls skip dictionary lookups."""
    return lambda: ServerConnection(handler, registry)


_now = time.monotonic  # the C function itself: no Python frame per call (hot path)
