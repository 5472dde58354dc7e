"""ServerConnection: one downstream HTTP/1.1 connection, requests served one at a time.

Theory of operation: bytes go to a `RequestReader`; each request head starts
an exchange through the listener's `RequestHandler.start(conn, head)`, which
attaches itself as `conn.exchange` before it does anything else (it may
answer at once, and `done` detaches it); body
pieces and the end go to that exchange. When the exchange has sent its whole
response it calls `done(keep_alive)`: the connection closes, or takes the next
request. Requests pipelined behind the current one are queued (reading is
paused meanwhile, so the queue stays small) and started in order, each in a
callback of its own (`call_soon`): never inside the callbacks of the exchange
that just ended, whose upstream connection may be the very one the next request
takes from the pool.

Timeouts (listeners/timeouts.py, checked by the listener's once-a-second `sweep`
over timestamps, no timer per request): a head that has begun must be complete
within `head` (408); a request body must move at least every `body_idle` and be
complete within `body` (408, or a reset once the response has begun; the
exchange drops its upstream connection with a reset, so the app stops waiting
too); time spent with reading paused by the proxy itself (back-pressure) is not
the client's and does not count. A connection with nothing in flight closes
after `idle`.

Faults: an exception that escapes the proxy's own code while it handles this
connection's bytes (`data_received`, a request's start) is a bug. It is logged
and counted (telemetry/faults.py), the exchange in flight is dropped (its upstream
connection reset: never replayed) and this connection answers 500 or, once a
response has begun, is reset.

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
from trellis.proxy.listeners.timeouts import DEFAULT_TIMEOUTS, DownstreamTimeouts
from trellis.proxy.telemetry.faults import FAULTS

# Body bytes still to come that are read and dropped, after an answer that came before
# them, to keep the connection (more: it closes). A pipelined request behind a denied
# POST is then still served.
DRAIN_MAX = 64 * 1024

log = logging.getLogger("trellis.proxy.server")


class Exchange(Protocol):
    """What a connection drives: one request and its response."""

    def on_request_body(self, data: bytes) -> None: ...
    def on_request_end(self) -> None: ...
    def on_downstream_lost(self) -> None: ...
    def on_downstream_paused(self, paused: bool) -> None: ...
    def on_request_timeout(self, idle: bool) -> None: ...


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
        "_body_last",
        "_body_left",
        "_body_since",
        "_draining",
        "_early",
        "_eof",
        "_head_since",
        "_idle_since",
        "_paused_since",
        "_queue",
        "_reading_paused",
        "_upgraded",
        "_write_paused_since",
        "closed",
        "exchange",
        "handler",
        "peer",
        "peer_identity",
        "reader",
        "registry",
        "secure",
        "timeouts",
        "transport",
        "tunnel",
        "write_paused",
    )

    def __init__(
        self,
        handler: RequestHandler,
        registry: set[ServerConnection] | None = None,
        timeouts: DownstreamTimeouts = DEFAULT_TIMEOUTS,
    ) -> None:
        self.handler = handler
        self.registry = registry
        self.timeouts = timeouts
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
        self._body_since = 0.0  # the current request's body is being read since (0: none)
        self._body_last = 0.0  # its last body bytes arrived then
        self._body_left = 0  # its Content-Length bytes still to come (-1: chunked)
        self._draining = False  # answered: the rest of its body is read and dropped
        self._write_paused_since = 0.0  # the client stopped reading then (0: it reads)
        self._paused_since = 0.0  # reading paused by the proxy then (0: not paused)
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
        try:
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
        except Exception as error:  # not `e`: mypyc would type it as the ProtocolError above
            self.fault(error)

    def eof_received(self) -> bool | None:
        # In a tunnel a half-close is passed on. Otherwise the client gave up (as Envoy
        # and nginx read it): the connection closes and the request in flight is dropped
        # upstream too, instead of running until the app answers nobody.
        self._eof = True
        if self.tunnel is not None:
            try:
                self.tunnel.downstream_eof()
            except Exception as error:
                self.fault(error)
                return False
            return True
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_idle()
        self._queue = None
        if self.registry is not None:
            self.registry.discard(self)
        exchange = self.exchange
        self.exchange = None
        if exchange is not None:
            try:
                exchange.on_downstream_lost()
            except Exception as error:
                FAULTS.record("downstream connection lost", error)

    def pause_writing(self) -> None:
        self.write_paused = True
        self._write_paused_since = _now()
        if self.exchange is not None:
            self.exchange.on_downstream_paused(True)

    def resume_writing(self) -> None:
        self.write_paused = False
        self._write_paused_since = 0.0
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
        if head.has_body:
            now = self._body_since = self._body_last = _now()
            self._body_left = -1 if head.chunked else head.content_length or 0
            if self._reading_paused:
                self._paused_since = now  # only what follows is held from the client
        try:
            self.handler.start(self, head)
        except Exception as error:
            self.fault(error)

    def on_body(self, data: bytes) -> None:
        if self.closed:
            return
        if self._queue is not None:
            self._enqueue(("body", data))
            return
        self._body_last = _now()
        self._body_left -= len(data)
        if self.exchange is not None:
            self.exchange.on_request_body(data)

    def on_request_end(self) -> None:
        if self.closed:
            return
        if self._queue is not None:
            self._enqueue(("end", None))
            return
        self._body_since = 0.0
        if self._draining:
            self._draining = False
            self._next()
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
            self._paused_since = _now()
            self.transport.pause_reading()
        else:
            # Time spent paused by the proxy (back-pressure, a queue) is not the client's.
            if self._body_since:
                held = _now() - self._paused_since
                self._body_since += held
                self._body_last += held
            self._paused_since = 0.0
            self.transport.resume_reading()

    def can_drain(self) -> bool:
        """Whether the rest of the current request's body, if any, may be read and dropped
        to keep the connection (an answer before the body ended: a denial, a redirect, an
        early response): its length is known and at most DRAIN_MAX. Else the connection
        closes after the answer (Connection: close)."""
        return not self._body_since or 0 <= self._body_left <= DRAIN_MAX

    def done(self, keep_alive: bool) -> None:
        """The exchange sent its whole response; take the next request or close. Its body,
        if it is still coming, is read and dropped first (the exchange asked `can_drain`)."""
        self.exchange = None
        if not keep_alive or self.closed or self._upgraded or (self._eof and not self._queue):
            self._body_since = 0.0
            self.close()
            return
        if self._body_since:
            if self._body_left < 0 or self._body_left > DRAIN_MAX:
                self._body_since = 0.0
                self.close()
            else:
                self._draining = True  # on_request_end goes on
            return
        self._next()

    def _next(self) -> None:
        """Between requests: start the queued ones, or wait for the next."""
        if self._queue is not None:
            # Pipelined requests wait: the exchange that called us is still inside its
            # upstream connection's callbacks, and that connection may already be back in
            # the pool for the next request to take.
            asyncio.get_running_loop().call_soon(self._next_queued)
            return
        self._idle_since = _now()
        if self._reading_paused:
            self.pause_reading(False)

    def _next_queued(self) -> None:
        """Start the queued requests in order, until one stays in flight."""
        try:
            queue = self._queue
            self._queue = None
            if self.closed or queue is None:
                return
            for i, (kind, value) in enumerate(queue):
                if kind == "head":
                    if self._busy():  # the previous queued request is still in flight
                        self._queue = queue[i:]
                        return
                    self._start(value)
                elif kind == "body":
                    self.on_body(value)
                else:
                    self.on_request_end()
                if self.closed:
                    return
            # All started (nothing can have queued meanwhile: reading was paused).
            if not self._busy():
                self._idle_since = _now()
            if self._reading_paused and not self._upgraded:
                self.pause_reading(False)
        except Exception as error:
            self.fault(error)

    def last_request_at(self) -> float:
        """When a request was last in flight here (time.monotonic; now while one is)."""
        since = self._idle_since
        return since if since else _now()

    def _busy(self) -> bool:
        # A method, not an inline test: compiled code must not narrow `self.exchange` to
        # None across the calls that set it (mypyc then checks the attribute's type).
        return self.exchange is not None

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

    def fault(self, error: Exception) -> None:
        """An exception escaped the proxy's code for this connection: a bug. Count and log
        it, drop the exchange in flight (its upstream connection is reset, never reused
        nor replayed), answer 500 if no response has begun, else reset; close."""
        FAULTS.record("downstream connection", error)
        exchange = self.exchange
        self.exchange = None
        self._queue = None
        answering = False
        if exchange is not None:
            answering = bool(getattr(exchange, "resp_started", False))
            try:
                exchange.on_downstream_lost()
            except Exception as again:
                FAULTS.record("downstream connection", again)
        if self.closed:
            return
        if answering or self.tunnel is not None:
            self.abort()
            return
        self.write(local_response(500, b"internal proxy error\n", close=True))
        self.close()

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
        """Enforce the timeouts: a late head or a slow body (408), a client that stops
        reading its response or an idle connection (closed)."""
        if self.closed or self.tunnel is not None:
            return
        timeouts = self.timeouts
        exchange = self.exchange
        stalled = self._write_paused_since
        if stalled and now - stalled > timeouts.idle:
            # The client has not read for that long: the exchange (and its upstream) go.
            self._queue = None
            self.abort()  # connection_lost follows: the exchange is told there
            return
        if self._draining:
            if now - self._body_last > timeouts.body_idle or now - self._body_since > timeouts.body:
                self.close()
            return
        if exchange is not None:
            if self._body_since and not self._reading_paused:
                if now - self._body_last > timeouts.body_idle:
                    self._body_timeout(exchange, idle=True)
                elif now - self._body_since > timeouts.body:
                    self._body_timeout(exchange, idle=False)
            return
        if self._head_since and now - self._head_since > timeouts.head:
            self.write(local_response(408, b"request head not received in time\n", close=True))
            self.close()
        elif self._idle_since and now - self._idle_since > timeouts.idle:
            self.close()

    def _body_timeout(self, exchange: Exchange, *, idle: bool) -> None:
        self._body_since = 0.0
        self._queue = None
        try:
            exchange.on_request_timeout(idle)
        except Exception as error:
            self.fault(error)
            return
        if self.exchange is exchange:  # it did not end: nothing else can be done
            self.exchange = None
            self.abort()


def connection_factory(
    handler: RequestHandler,
    registry: set[ServerConnection] | None = None,
    timeouts: DownstreamTimeouts = DEFAULT_TIMEOUTS,
) -> Callable[[], Any]:
    """The protocol factory asyncio wants. ServerConnection is a protocol by its methods
    alone (uvloop asks for no base class): without asyncio.Protocol as a base it is a
    native class to compiled code, whose attributes and calls skip dictionary lookups."""
    return lambda: ServerConnection(handler, registry, timeouts)


_now = time.monotonic  # the C function itself: no Python frame per call (hot path)
