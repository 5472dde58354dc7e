"""Upstream HTTP/1.1 connections, pooled per host with keep-alive.

`HostPool.acquire(user)` hands out an idle connection at once (most recently
used first), or opens a new one and calls `user.on_connected(conn)` /
`user.on_connect_failed(reason)` later. A connection serves one request at a
time; `release()` puts it back when the response ended cleanly and both sides
keep the connection alive, else closes it.

Idle connections close after `idle_timeout` (3 s by default; the proxy's sweep
runs every second, and a connection idle for longer is never handed out), shorter than
the keep-alive timeout of the usual app servers (Node 5 s, uvicorn 5 s,
nginx 75 s): the proxy, not the app, ends an idle connection, which avoids
the race where a request goes out on a connection the app is closing — the
503s Istio users know. gunicorn's 2 s is shorter: a request that finds its
reused connection closed before any response byte is retried once on a new
connection by the exchange (`reused`).
Pools towards a peer sidecar (an endpoint with a target port) idle for 60 s instead
(cluster.py PEER_IDLE_TIMEOUT): the peer's inbound listener keeps connections for
300 s, and every new mTLS connection costs a handshake on both sidecars — with 3 s,
a burst after a quiet spell opened connections in cascade and stalled requests for
tens of ms (measured at 1000 rps).

Failure: every event ends up in exactly one call on the connection's user
(`on_upstream_*`); a closed connection is never handed out again. `abort()`
(the request was abandoned: timeout, client gone, retry) resets the
connection, so the peer stops working on the request too. An exception that
escapes our own code while this connection's bytes are handled is a bug
(`fault`): counted and logged, the connection reset, and its user told
`on_upstream_fault` — which never sends the request again.

Connection limits (the cluster's circuit breaker, breaker.py): the pools of one
cluster's hosts share a `PoolCounters`, which counts the connections open and
opening; they never exceed `max_connections` together. A request that needs a new
connection when the cluster is at the limit waits in the cluster's pending queue
(at most `max_pending`, `breaker.begin_pending`), first come first served: it gets
the next connection released to its host's pool, or a new connection when a slot
frees (a connection closed, a connect failed). An idle connection to another host
of the cluster is closed to make room at once (it would otherwise hold its slot
until its idle timeout). Beyond `max_pending`, `user.on_pool_overflow()` at once
(503 UO). A request that stops waiting (timeout, client gone, retry elsewhere)
calls `pool.cancel(user)`, which frees its place in the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol, cast

from trellis.proxy.config.resources import CircuitLimits, UpstreamTls
from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import ResponseHead
from trellis.proxy.http1.reader import ResponseReader
from trellis.proxy.identity.tls import peer_spiffe_id
from trellis.proxy.stack.breaker import CircuitBreaker
from trellis.proxy.telemetry.faults import FAULTS

IDLE_TIMEOUT = 3.0
MAX_IDLE_PER_HOST = 64
_LINGER_ZERO = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST


class PoolUser(Protocol):
    """What a request in flight hears from its upstream connection."""

    def on_connected(self, conn: UpstreamConnection) -> None: ...
    def on_connect_failed(self, reason: str) -> None: ...
    # The cluster's circuit breaker refused it (max_connections and max_pending reached):
    # answered 503 with flag UO at once.
    def on_pool_overflow(self) -> None: ...
    def on_upstream_response(self, head: ResponseHead) -> None: ...
    def on_upstream_body(self, data: bytes) -> None: ...
    def on_upstream_end(self) -> None: ...
    def on_upstream_lost(self, reason: str) -> None: ...
    def on_upstream_paused(self, paused: bool) -> None: ...
    def on_upstream_flush(self) -> None: ...
    def on_upstream_fault(self) -> None: ...


class TunnelEnd(Protocol):
    """Where an upstream connection's bytes go once a 101 made it a tunnel."""

    def upstream_data(self, data: bytes) -> None: ...
    def upstream_eof(self) -> None: ...
    def upstream_lost(self) -> None: ...


class UpstreamConnection:
    __slots__ = (
        "closed",
        "got_bytes",
        "idle_since",
        "keep_alive",
        "peer_identity",
        "pool",
        "reader",
        "reused",
        "transport",
        "tunnel",
        "user",
    )

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.reader = ResponseReader(self)
        self.user: PoolUser | None = None
        self.idle_since = 0.0  # loop time it went back to the pool (0: in use or new)
        self.closed = False
        self.got_bytes = False  # a byte of the current response arrived
        self.keep_alive = True
        self.reused = False  # the current request is not the connection's first
        self.peer_identity = ""  # the upstream's SPIFFE ID (mTLS; tracing names it)
        self.tunnel: TunnelEnd | None = None  # switched protocols: bytes go there, raw

    # -- asyncio.Protocol -----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.transport.set_write_buffer_limits(high=256 * 1024)

    def data_received(self, data: bytes) -> None:
        # Tested through a local: narrowing `self.tunnel` itself would let compiled code
        # assume it stays None after the feed below, which is what sets it.
        tunnel = self.tunnel
        if tunnel is not None:
            try:
                tunnel.upstream_data(data)
            except Exception as error:
                self.fault(error)
            return
        user = self.user
        if user is None:
            self.close()  # bytes on an idle connection: nothing can be framed after this
            return
        self.got_bytes = True
        try:
            rest = self.reader.feed(data)
        except ProtocolError as e:
            self.user = None
            self.close()
            user.on_upstream_flush()
            user.on_upstream_lost(e.reason)
            return
        except Exception as error:  # not `e`: mypyc would type it as the ProtocolError above
            self.fault(error)
            return
        try:
            user.on_upstream_flush()  # one downstream write per upstream read
            if rest is not None:  # a 101: the user made this connection a tunnel, or left
                tunnel = self.tunnel
                if tunnel is None:
                    self.close()
                elif rest:
                    tunnel.upstream_data(rest)
        except Exception as error:  # not `e`: mypyc would type it as the ProtocolError above
            self.fault(error)

    def eof_received(self) -> bool:
        if self.tunnel is not None:
            self.tunnel.upstream_eof()
            return True  # half-closed: the other way may still carry bytes
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._cancel_idle()
        self.pool.forget(self)
        if self.tunnel is not None:
            tunnel, self.tunnel = self.tunnel, None
            tunnel.upstream_lost()
            return
        user = self.user
        if user is None:
            return
        try:
            if self.reader.eof():  # a close-delimited body ended: on_response_end was called
                return
            self.user = None
            user.on_upstream_lost(str(exc) if exc else "connection closed by upstream")
        except Exception as error:
            self.user = user
            self.fault(error)

    def pause_writing(self) -> None:
        if self.user is not None:
            self.user.on_upstream_paused(True)

    def resume_writing(self) -> None:
        if self.user is not None:
            self.user.on_upstream_paused(False)

    # -- ResponseHandler ------------------------------------------------------------------

    def on_response(self, head: ResponseHead) -> None:
        self.keep_alive = head.keep_alive and not head.close_delimited
        if self.user is not None:
            self.user.on_upstream_response(head)

    def on_body(self, data: bytes) -> None:
        if self.user is not None:
            self.user.on_upstream_body(data)

    def on_response_end(self) -> None:
        user = self.user
        if user is not None:
            user.on_upstream_end()

    # -- used by the exchange -------------------------------------------------------------

    def start(self, user: PoolUser, head_request: bool, upgrade: bool = False) -> None:
        """Attach `user` for one request; the caller writes the request next."""
        self._cancel_idle()
        self.user = user
        self.got_bytes = False
        self.reader.expect(head_request, upgrade)

    def become_tunnel(self, tunnel: TunnelEnd) -> None:
        """After a 101: from now on the bytes are `tunnel`'s, and the connection never
        goes back to the pool (it stays counted open until it closes)."""
        self.tunnel = tunnel

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def pause_reading(self, paused: bool) -> None:
        if self.transport is not None and not self.closed:
            if paused:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def release(self, reusable: bool) -> None:
        """The request is over: back to the pool if `reusable` and the response allowed it."""
        self.user = None
        if reusable and self.keep_alive and self.reader.done and not self.closed:
            self.reused = True
            self.pause_reading(False)
            self.pool.put_idle(self)
        else:
            self.close()

    def close(self) -> None:
        self.user = None
        if not self.closed:
            self.closed = True
            self._cancel_idle()
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        """Abandon the request in flight: close with a reset (RST), not a FIN.

        A peer sidecar reads a FIN as a half-close and would keep serving the request
        (and hold its app busy) until the app answers; a reset ends it there too.
        """
        self.user = None
        self.closed = True
        self._cancel_idle()
        self.pool.forget(self)
        if self.transport is not None:
            sock = self.transport.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            self.transport.abort()

    def fault(self, error: Exception) -> None:
        """A bug of ours while handling this connection's bytes: count and log it, reset
        the connection (never pooled again), and end its request without sending it again."""
        FAULTS.record("upstream connection", error)
        user, tunnel = self.user, self.tunnel
        self.tunnel = None
        self.abort()
        try:
            if tunnel is not None:
                tunnel.upstream_lost()
            elif user is not None:
                user.on_upstream_fault()
        except Exception as again:
            FAULTS.record("upstream connection", again)

    def _cancel_idle(self) -> None:
        self.idle_since = 0.0


def _protocol(conn: UpstreamConnection) -> Callable[[], Any]:
    """The protocol factory asyncio wants. UpstreamConnection is a protocol by its methods
    alone (uvloop asks for no base class): without asyncio.Protocol as a base it is a
    native class to compiled code, whose attributes and calls skip dictionary lookups."""
    return lambda: conn


def _no_context() -> ssl.SSLContext | None:
    return None


class PoolWaiter:
    """A request waiting for a connection to `pool`'s host (the cluster was at its limit)."""

    __slots__ = ("pool", "user")

    def __init__(self, pool: HostPool, user: PoolUser) -> None:
        self.pool = pool
        self.user = user


class PoolCounters:
    """Connections of one cluster (shared by its hosts' pools): counts for /clusters, and
    the cluster's connection limit and pending queue (the breaker's max_connections and
    max_pending)."""

    __slots__ = (
        "active",
        "breaker",
        "connect_failures",
        "identity_refused",
        "opened",
        "opening",
        "pools",
        "waiting",
    )

    def __init__(self, breaker: CircuitBreaker | None = None) -> None:
        self.breaker = breaker if breaker is not None else CircuitBreaker(CircuitLimits())
        self.active = 0  # connections open (connected, in use or idle)
        self.opening = 0  # connections being opened (TCP connect, TLS handshake)
        self.opened = 0
        self.connect_failures = 0
        self.identity_refused = 0  # TLS peers whose SPIFFE ID the cluster does not allow
        self.waiting: deque[PoolWaiter] = deque()  # bounded by breaker max_pending
        self.pools: list[HostPool] = []  # the cluster's pools that are not retired

    def room(self) -> bool:
        """A new connection is allowed now."""
        return self.active + self.opening < self.breaker.limits.max_connections

    def slot_freed(self) -> None:
        """A connection closed or failed to open: open one for the first waiters."""
        waiting = self.waiting
        while waiting and self.room():
            waiter = waiting.popleft()
            self.breaker.end_pending()
            waiter.pool.open(waiter.user)

    def evict_idle(self, keep: HostPool) -> bool:
        """Close the longest-idle connection of another pool than `keep`, to make room (it
        frees a slot, which serves the first waiter). False if there is none."""
        oldest: UpstreamConnection | None = None
        for pool in self.pools:
            if pool is not keep and pool._idle:
                first = pool._idle[0]
                if oldest is None or first.idle_since < oldest.idle_since:
                    oldest = first
        if oldest is None:
            return False
        oldest.close()
        return True


class HostPool:
    __slots__ = (
        "_idle",
        "_loop",
        "address",
        "connect_timeout",
        "counters",
        "idle_timeout",
        "port",
        "retired",
        "tls",
        "tls_context",
        "total",
    )

    def __init__(
        self,
        address: str,
        port: int,
        counters: PoolCounters,
        *,
        connect_timeout: float = 5.0,
        idle_timeout: float = IDLE_TIMEOUT,
    ) -> None:
        self.address = address
        self.port = port
        self.counters = counters
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self._idle: list[UpstreamConnection] = []
        self._loop = asyncio.get_event_loop()
        self.total: set[UpstreamConnection] = set()
        self.retired = False  # the host left the cluster: no connection goes back to idle
        self.tls: UpstreamTls | None = None  # mesh mTLS to this host (the cluster's setting)
        self.tls_context: Callable[[], ssl.SSLContext | None] = _no_context
        counters.pools.append(self)

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def acquire(self, user: PoolUser) -> UpstreamConnection | None:
        """An idle connection now, or None and a new one reported to `user` later; when the
        cluster is at max_connections, None and `user` waits in the pending queue (or hears
        `on_pool_overflow` at once when that is full too)."""
        idle = self._idle
        if idle:
            deadline = self._loop.time() - self.idle_timeout
            while idle:
                conn = idle.pop()
                if conn.closed:
                    continue
                if conn.idle_since < deadline:  # the sweep has not caught it yet
                    conn.close()
                    continue
                return conn
        counters = self.counters
        if counters.room():
            self.open(user)
        else:
            self._wait(user)
        return None

    def _wait(self, user: PoolUser) -> None:
        counters = self.counters
        breaker = counters.breaker
        breaker.overflow_connections += 1  # Envoy's upstream_cx_overflow: it queues
        if not breaker.begin_pending():
            user.on_pool_overflow()
            return
        counters.waiting.append(PoolWaiter(self, user))
        counters.evict_idle(self)  # room at once, when another host holds an idle one

    def cancel(self, user: PoolUser) -> bool:
        """`user` no longer waits for a connection (timeout, client gone, retry elsewhere):
        its place in the pending queue is freed. False when it was not waiting."""
        counters = self.counters
        if not counters.waiting:
            return False
        for waiter in counters.waiting:
            if waiter.user is user:
                counters.waiting.remove(waiter)
                counters.breaker.end_pending()
                return True
        return False

    def open(self, user: PoolUser) -> None:
        """Open a new connection for `user` (the caller checked the limit)."""
        self.counters.opening += 1
        self._loop.create_task(self._connect(user))

    async def _connect(self, user: PoolUser) -> None:
        conn = UpstreamConnection(self)
        counters = self.counters
        counters.opened += 1
        tls = self.tls
        context = None
        if tls is not None:
            context = self.tls_context()
            if context is None:
                self._connect_failed(user, "mesh TLS is required and this proxy has no identity")
                return
        try:
            await asyncio.wait_for(
                self._loop.create_connection(_protocol(conn), self.address, self.port, ssl=context),
                self.connect_timeout,
            )
        except (OSError, TimeoutError, ssl.SSLError) as e:
            reason = "connect timeout" if isinstance(e, TimeoutError) else str(e)
            self._connect_failed(user, reason or type(e).__name__)
            return
        except BaseException:
            counters.opening -= 1  # cancelled (the loop is closing): the slot is free
            raise
        if tls is not None:
            assert conn.transport is not None
            peer = peer_spiffe_id(conn.transport.get_extra_info("peercert"))
            if not tls.allows(peer):
                # Not the identity the control plane says serves this cluster: an impostor.
                counters.identity_refused += 1
                conn.abort()
                self._connect_failed(user, f"peer identity {peer or '(none)'} is not allowed")
                return
            conn.peer_identity = peer or ""
        counters.opening -= 1
        if conn.closed:
            # Lost between the handshake and now (forget() ran before it was counted): its
            # slot is free; the user finds it closed as it writes (as any lost connection).
            counters.slot_freed()
        else:
            self.total.add(conn)
            counters.active += 1
        user.on_connected(conn)

    def _connect_failed(self, user: PoolUser, reason: str) -> None:
        counters = self.counters
        counters.opening -= 1
        counters.connect_failures += 1
        try:
            user.on_connect_failed(reason)
        finally:
            counters.slot_freed()

    def put_idle(self, conn: UpstreamConnection) -> None:
        if self.counters.waiting and not self.retired and self._hand_over(conn):
            return
        if self.retired or len(self._idle) >= MAX_IDLE_PER_HOST:
            conn.close()
            return
        conn.idle_since = self._loop.time()
        self._idle.append(conn)

    def _hand_over(self, conn: UpstreamConnection) -> bool:
        """Give `conn` to the first request waiting for this host (the cluster is at its
        limit), on the next loop turn: the releasing request may still be inside this
        connection's read. False when no request waits for this host."""
        counters = self.counters
        for waiter in counters.waiting:
            if waiter.pool is self:
                counters.waiting.remove(waiter)
                counters.breaker.end_pending()
                conn.idle_since = 0.0
                self._loop.call_soon(self._handed, conn, waiter.user)
                return True
        return False

    def _handed(self, conn: UpstreamConnection, user: PoolUser) -> None:
        if conn.closed:  # lost meanwhile (its slot went to the next waiter): ask again
            again = self.acquire(user)
            if again is not None:
                user.on_connected(again)
            return
        user.on_connected(conn)

    def sweep(self, now: float) -> None:
        """Close connections idle for longer than `idle_timeout` (called every second; a
        timer per request would cost more than the rest of the pool)."""
        idle = self._idle
        if idle and idle[0].idle_since < now - self.idle_timeout:
            for conn in [c for c in idle if c.idle_since < now - self.idle_timeout]:
                conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        if conn in self.total:
            self.total.discard(conn)
            self.counters.active -= 1
            if self.counters.waiting:
                self.counters.slot_freed()
        if conn in self._idle:
            self._idle.remove(conn)

    def retire(self) -> None:
        """The host left the cluster: close idle connections now, busy ones when their
        request ends (a request in flight is not cut because EDS moved on). Requests
        waiting for this host get a connection when a slot frees, as before."""
        self.retired = True
        if self in self.counters.pools:
            self.counters.pools.remove(self)
        for conn in list(self._idle):
            conn.close()

    def close(self) -> None:
        """Close every connection, busy or not (the proxy is shutting down)."""
        self.retire()
        for conn in list(self.total):
            conn.close()
