"""Exchange: the I/O layer of one request — the downstream connection, the upstream one,
the timers — driven by the layers of stack/chain.py and by the decisions of stack/core.py.

Theory of operation. A listener makes an Exchange when a request head arrives,
selects a Route and calls `run(route)`: the layers (chain.py, read top to bottom)
answer it or bring it to a concrete backend with its core (core.py: breaker, retry,
budget). From there everything happens in callbacks on the event loop (no task per
request):

    attempt: pick host (balance) ─► pool.acquire ─► on_connected
         ─► request head + body out ─► on_upstream_response
              ├─ the core says retry ─► send_again (after the back-off) ─► attempt
              └─ relay head, body, end ─► finish ─► conn.done(keep_alive)
    failures: connect failure, reset before a head, per-try timeout, pool overflow
              ─► the core decides: send again, or answer (503/504 with flags)

The HTTP/1 re-framing (request head for the upstream, response head for the client,
chunks, HTTP/1.0 rules, the `head.raw` pass-through) is the codec's
(http1/framing.py): this layer only chooses what goes where, and when.

The request body streams: it is written upstream as it arrives, and kept for
replay only while it fits in RETRY_BUFFER (64 KiB); a bigger body can still be
sent, but not retried. While no upstream is attached yet, at most that much is
held and the client is paused beyond it. The response body streams to the
client; each side's full write buffer pauses reading on the other.

Response flags (Envoy's): NR no route, NC no cluster, UH no healthy upstream,
UF connect failure, UC upstream reset, UT timeout, URX retries exhausted, UO
overflow (circuit breaker, pool, retry budget), RL rate limited, DI/FI fault
delay/abort, DC downstream closed, DPE downstream protocol error, UPE upstream
protocol error (a transfer coding an HTTP/1.0 client cannot be sent), SI request
body idle timeout, DT request body timeout. A local response carries them in the
`x-trellis-flags` header.

A fault of ours on the upstream connection (pool.py) ends the request with a 502 and
is never retried.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from functools import partial
from typing import TYPE_CHECKING

from trellis.proxy.http1.framing import (
    DROP_UPSTREAM,
    body_end,
    coding_unsendable,
    downstream_response_head,
    frame,
    passes_through,
    raw_head,
    switching_protocols_head,
    upgrade_protocol,
    upstream_request_head,
    with_fields,
)
from trellis.proxy.http1.head import Headers, RequestHead, ResponseHead, end_to_end
from trellis.proxy.http1.writer import CONTINUE_100, LAST_CHUNK, local_response, request_head
from trellis.proxy.stack import chain
from trellis.proxy.stack.balance import hash64
from trellis.proxy.stack.core import ExchangeCore
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.mirror import send_mirrors
from trellis.proxy.stack.pool import UpstreamConnection
from trellis.proxy.stack.retry import replay_safe
from trellis.proxy.stack.split import split_authority
from trellis.proxy.stack.targets import ConcreteTarget, LogicalTarget
from trellis.proxy.stack.tunnel import Tunnel
from trellis.proxy.telemetry.tracecontext import PROPAGATION_FIELDS
from trellis.proxy.telemetry.tracer import RequestTrace, Tracer
from trellis.routing import hash_keys
from trellis.wire import TARGET_PORT_HEADER

if TYPE_CHECKING:
    from trellis.proxy.listeners.server import ServerConnection
    from trellis.proxy.stack.context import ListenerContext

__all__ = ["RETRY_BUFFER", "TARGET_PORT_HEADER", "Exchange", "split_authority"]

RETRY_BUFFER = 64 * 1024
# Traced: the propagation fields that came are replaced by this hop's (tracer.py).
_DROP_TRACED = DROP_UPSTREAM | PROPAGATION_FIELDS


class Exchange:
    __slots__ = (
        "_buffer",
        "_buffered",
        "_down_paused",
        "_host_counted",
        "_out",
        "_resp_chunked",
        "_sent_head",
        "_timer",
        "_try_timer",
        "authz_policy",
        "cluster",
        "cluster_name",
        "conn",
        "core",
        "ctx",
        "finished",
        "flags",
        "head",
        "host",
        "keep_alive",
        "mirror_pending",
        "pending",
        "replayable",
        "req_bytes",
        "req_done",
        "resp_bytes",
        "resp_started",
        "route",
        "shadow_denied_by",
        "start_time",
        "status",
        "trace",
        "tunnel",
        "upstream",
        "upstream_head",
    )

    def __init__(self, conn: ServerConnection, head: RequestHead, ctx: ListenerContext) -> None:
        self.conn = conn
        conn.exchange = self
        self.head = head
        self.ctx = ctx
        self.start_time = ctx.loop.time()
        self.route: LogicalTarget | None = None
        self.cluster: ConcreteTarget | None = None
        self.cluster_name = ""
        self.host: Host | None = None
        self.upstream: UpstreamConnection | None = None
        self.upstream_head = b""
        self.tunnel: Tunnel | None = None
        self.core: ExchangeCore | None = None  # the decisions, once forwarded (core.py)
        self.flags: list[str] = []
        self.authz_policy: str | None = None  # the policy that denied (or allowed) it
        self.shadow_denied_by: str | None = None  # a dry-run policy that would have denied it
        self.status = 0
        self.trace: RequestTrace | None = None  # tracing on: this request's ids (tracer.py)
        self.req_bytes = 0
        self.resp_bytes = 0
        self.req_done = not head.has_body
        self.resp_started = False
        self.finished = False
        self.keep_alive = head.keep_alive and head.method != "CONNECT"
        self.replayable = True
        self.mirror_pending = False
        self._buffer: list[bytes] = []
        self._out: list[bytes] = []  # response bytes of the current upstream read
        self._buffered = 0
        self._sent_head = False
        self._resp_chunked = False
        self._host_counted = False
        self._down_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._try_timer: asyncio.TimerHandle | None = None
        self.pending: asyncio.TimerHandle | asyncio.Task[None] | None = None
        if head.expect_continue and head.has_body:
            conn.write(CONTINUE_100)  # Envoy answers 100-continue itself

    # == entering the stack (chain.py) =====================================================

    def run(self, route: LogicalTarget) -> None:
        """A routed request: down the layers of chain.py."""
        chain.run(self, route)

    def after_fault(self) -> None:
        """The fault layer's delay is over: on down the stack."""
        self.pending = None
        if not self.finished:
            chain.after_fault(self)

    def backend_ready(self, backend: ConcreteTarget) -> None:
        """The split layer's backend arrived (its config was awaited): on down the stack."""
        chain.with_backend(self, backend)

    def forward_original_destination(self) -> None:
        """Send the request where its authority points, outside the mesh (ALLOW_ANY)."""
        chain.forward_original_destination(self)

    # == what the layers ask of the I/O layer ==============================================

    def bind(self, cluster: ConcreteTarget) -> None:
        """The request was admitted to its concrete backend (it holds one of the breaker's
        `max_requests`, released in `_finish`)."""
        self.cluster = cluster
        cluster.active += 1
        cluster.requests += 1

    def arm_route_timer(self, seconds: float) -> None:
        self._timer = self.ctx.loop.call_later(seconds, self._on_timeout)

    def prepare_upstream(self) -> None:
        """The request head for the upstream, built once for every attempt (and mirror)."""
        head = self.head
        route = self.route
        path = head.path
        authority = head.authority
        tracer = self.ctx.tracer
        if tracer.enabled:
            trace = self.trace = tracer.begin(self)
            fields = end_to_end(head.headers, DROP_UPSTREAM if trace.passthrough else _DROP_TRACED)
        else:
            fields = end_to_end(head.headers, DROP_UPSTREAM)
        if route is not None:
            path = route.rewrite_path(path)
            if route.host_rewrite:
                authority = route.host_rewrite
            if route.request_mutations:
                fields = _mutated(route.apply_request_headers, fields)
        self.upstream_head = upstream_request_head(
            head, path, authority, fields, self.ctx.request_headers(self)
        )
        if self.mirror_pending:
            self._mirror()

    def _hash_key(self) -> int | None:
        route = self.route
        if route is None or not route.hash_policies:
            return None
        head = self.head
        keys = hash_keys(route.hash_policies, head, self.conn.peer[0], head.path)
        return hash64("\0".join(keys).encode("utf-8", "replace")) if keys else None

    def attempt(self) -> None:
        """One attempt: balance (an endpoint), then its pool (a connection)."""
        self.pending = None
        if self.finished:
            return
        cluster = self.cluster
        assert cluster is not None
        route = self.route
        hash_key = self._hash_key() if route is not None and route.hash_policies else None
        host = cluster.pick(hash_key, avoid=self.host)
        if host is None:
            self.flags.append("UH")
            self.respond(503, b"no healthy upstream\n")
            return
        self.host = host
        host.active += 1
        host.requests += 1
        self._host_counted = True
        trace = self.trace
        if trace is not None and self.ctx.outbound:
            self.ctx.tracer.begin_try(self, trace)
        if route is not None and route.retry is not None and route.retry.per_try_timeout:
            self._try_timer = self.ctx.loop.call_later(
                route.retry.per_try_timeout, self._on_try_timeout
            )
        conn = host.pool.acquire(self)
        if conn is not None:
            self.on_connected(conn)

    # == the pool's callbacks (pool.py PoolUser) ===========================================

    def on_connected(self, conn: UpstreamConnection) -> None:
        if self.finished or self.upstream is not None or self.host is None:
            conn.pool.put_idle(conn)  # nobody waits for it any more
            return
        if conn.pool is not self.host.pool:
            conn.pool.put_idle(conn)
            return
        self.upstream = conn
        conn.start(self, self.head.method == "HEAD", bool(self.head.upgrade))
        data = self.upstream_head
        host = self.host
        trace = self.trace
        if trace is not None and trace.passthrough:
            trace = None  # its context went on as it came (tracer.py RequestTrace)
        if host.target_port:
            # Tell the peer's inbound sidecar which app port this is for.
            extra = TARGET_PORT_HEADER + b": " + host.target_port + b"\r\n"
            if trace is not None:
                extra += trace.header_block()
            data = with_fields(data, extra)
        elif trace is not None:
            data = with_fields(data, trace.header_block())
        if trace is not None and trace.sampled:
            trace.peer_principal = conn.peer_identity
        chunked = self.head.chunked
        if self._buffer:  # head and what arrived of the body so far: one write
            data += frame(b"".join(self._buffer), chunked)
            if self._buffered > RETRY_BUFFER:
                self.replayable = False
                self._buffer.clear()
        if self.req_done:
            data += body_end(chunked)
        conn.write(data)
        self._sent_head = True
        if self._down_paused:
            self._down_paused = False
            self.conn.pause_reading(False)

    def on_connect_failed(self, reason: str) -> None:
        if self.finished or self.upstream is not None:
            return
        host = self.host
        if self.trace is not None:
            self.trace.try_outcome = "UF"
        self._end_try()
        if host is not None and self.cluster is not None:
            self.cluster.record(host, 503)
        self._decide().connect_failed(reason, self.ctx.loop.time())

    def on_pool_overflow(self) -> None:
        if self.finished or self.upstream is not None:
            return
        self._end_try()
        if self.cluster is not None:
            self.cluster.overflows += 1
        self._decide().pool_overflow()

    def on_upstream_response(self, head: ResponseHead) -> None:
        self._cancel_try_timer()
        status = head.status
        if status == 101:  # only ever read for a request that asked to upgrade
            self._switch_protocols(head)
            return
        if self._may_retry(status):
            core = self._decide()
            retry_after = _field(head.headers, b"retry-after") if core.honours_retry_after() else ""
            delay = core.retry_delay(status, retry_after, self.ctx.loop.time(), time.time())
            if delay >= 0:
                self._record(status)
                self.send_again(delay)
                return
        if coding_unsendable(head, self.head):
            self.respond(
                502,
                b"the upstream response has a transfer coding HTTP/1.0 cannot carry\n",
                flags="UPE",
            )
            return
        self._record(status)
        self.status = status
        self.resp_started = True
        if not self.req_done and not self.conn.can_drain():
            self.keep_alive = False  # said now, in this head: the body left is too big
        route = self.route
        mutate: Callable[[Headers], Headers] | None = None
        if route is not None and route.response_mutations:
            mutate = partial(_mutated, route.apply_response_headers)
        elif passes_through(head):
            # The usual response: its head goes on as it came (no allocation but its bytes).
            self._out.append(raw_head(head, self.flags, self.keep_alive))
            return
        out = downstream_response_head(head, self.head, self.flags, self.keep_alive, mutate)
        self.keep_alive = out.keep_alive
        self._resp_chunked = out.chunked
        # Written with the body bytes of the same upstream read (`on_upstream_flush`):
        # one send for a small response instead of two.
        self._out.append(out.data)

    def on_upstream_body(self, data: bytes) -> None:
        self.resp_bytes += len(data)
        self._out.append(frame(data, self._resp_chunked))

    def on_upstream_flush(self) -> None:
        """The upstream read is parsed: send what it produced."""
        out = self._out
        if out:
            self.conn.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    def on_upstream_end(self) -> None:
        if self._resp_chunked:
            self._out.append(LAST_CHUNK)
        trace = self.trace
        if trace is not None:
            Tracer.answered(trace)
        self.on_upstream_flush()
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.release(reusable=self.req_done)
        self._finish()
        # A body we stopped forwarding may still be coming: the connection reads and drops
        # it, or closes (decided with the response head above).
        self.conn.done(self.keep_alive)

    def on_upstream_lost(self, reason: str) -> None:
        upstream = self.upstream
        self.upstream = None
        if self.finished:
            return
        if self.resp_started:
            self.flags.append("UC")
            self._finish()
            self.conn.abort()  # the response cannot be completed: the client must see it
            return
        self._cancel_try_timer()
        stale = upstream is not None and upstream.reused and not upstream.got_bytes
        if self.trace is not None:
            self.trace.try_outcome = "UC"
        self._end_try()
        if not stale:
            self._record(503)
        self._decide().upstream_lost(reason, stale, self.ctx.loop.time())

    def on_upstream_paused(self, paused: bool) -> None:
        self.conn.pause_reading(paused)

    def on_upstream_fault(self) -> None:
        """The upstream connection hit a bug of ours and was reset (pool.py `fault`): the
        request is never sent again, whatever its method; the client gets a 502, or a reset
        once its response has begun."""
        self.upstream = None
        if self.finished:
            return
        self.replayable = False
        self.keep_alive = False
        self.respond(502, b"internal proxy error\n")

    # == the downstream connection's callbacks (server.py) =================================

    def on_request_body(self, data: bytes) -> None:
        self.req_bytes += len(data)
        if self._sent_head and self.upstream is not None:
            self.upstream.write(frame(data, self.head.chunked))
            if self.replayable:
                self._buffer.append(data)
                self._buffered += len(data)
                if self._buffered > RETRY_BUFFER:
                    self.replayable = False
                    self._buffer.clear()
            return
        if not self.replayable:
            return  # an attempt failed after the buffer was dropped: the answer is on its way
        self._buffer.append(data)
        self._buffered += len(data)
        if self._buffered > RETRY_BUFFER and not self._down_paused:
            self._down_paused = True
            self.conn.pause_reading(True)

    def on_request_end(self) -> None:
        self.req_done = True
        if self._sent_head and self.upstream is not None and self.head.chunked:
            self.upstream.write(LAST_CHUNK)
        if self.mirror_pending and self.upstream_head:
            self._mirror()

    def on_downstream_paused(self, paused: bool) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading(paused)
        elif self.tunnel is not None:
            self.tunnel.pause_upstream(paused)

    def on_downstream_lost(self) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
            self.tunnel = None
        if self.finished:
            return
        if not self.resp_started or (self.head.method != "CONNECT" and self.status != 101):
            self.flags.append("DC")  # not the end of an established tunnel
        self._drop_upstream()
        self._finish()

    def on_request_timeout(self, idle: bool) -> None:
        """The client's body stopped coming, or took too long (server.py `sweep`): 408 and a
        closed connection, or a reset once the response has begun. The upstream connection
        is reset, so the app stops waiting for the rest too."""
        if self.finished:
            return
        self.replayable = False
        self.keep_alive = False
        if idle:
            self.respond(408, b"request body idle timeout\n", flags="SI")
        else:
            self.respond(408, b"request body timeout\n", flags="DT")

    def _mirror(self) -> None:
        """Send the copies the route asks for, once the whole request is known."""
        if not self.req_done:
            return  # again at the end of the body
        self.mirror_pending = False
        route = self.route
        if route is None or not self.replayable:
            return  # a body too big to keep is not copied
        body = b"".join(self._buffer)
        chunked = self.head.chunked
        if chunked:
            body = (frame(body, True) if body else b"") + body_end(True)
        send_mirrors(self.ctx.clusters, route.mirrors, self.upstream_head, body)

    # == timers ============================================================================

    def _on_try_timeout(self) -> None:
        self._try_timer = None
        if self.finished or self.resp_started:
            return
        self._record(504)
        if self.trace is not None:
            self.trace.try_status = 0
            self.trace.try_outcome = "UT"
        self._drop_upstream()
        self._end_try()
        self._decide().try_timed_out(self.ctx.loop.time())

    def _on_timeout(self) -> None:
        self._timer = None
        if self.finished:
            return
        self._decide().route_timed_out(self.resp_started)

    # == the core's commands (core.py ExchangeIO) ==========================================

    def _may_retry(self, status: int) -> bool:
        """Might a response with this status be retried? (Asked for every response: no
        core is made for it.)"""
        core = self.core
        if core is not None:
            return core.wants_status(status)
        route = self.route
        policy = route.retry if route is not None else None
        return policy is not None and policy.num_retries > 0 and policy.should_retry_status(status)

    def _decide(self) -> ExchangeCore:
        """The core, made at the first decision due, told what it decides on: is the body
        still held, may a byte of this attempt have gone out."""
        core = self.core
        if core is None:
            cluster = self.cluster
            assert cluster is not None
            route = self.route
            core = self.core = ExchangeCore(
                self,
                self.flags,
                route.retry if route is not None else None,
                cluster.breaker,
                cluster.budget,
                replay_safe(self.head),
            )
        core.replayable = self.replayable
        core.sent = self._sent_head
        return core

    def send_again(self, delay: float) -> None:
        self._drop_upstream()
        self._end_try()
        self._sent_head = False
        if delay <= 0:
            self.attempt()
        else:
            self.pending = self.ctx.loop.call_later(delay, self.attempt)

    def answer(self, status: int, body: bytes, flag: str) -> None:
        self.respond(status, body, flags=flag)

    def reset_downstream(self, flag: str) -> None:
        if self.finished:
            return
        self.flags.append(flag)
        self._drop_upstream()
        self._finish()
        self.conn.abort()

    # == CONNECT and upgrades ==============================================================

    def open_tunnel(self, cluster: ConcreteTarget) -> None:
        host = cluster.pick(self._hash_key())
        if host is None:
            self.respond(503, b"no healthy upstream\n", flags="UH")
            return
        self.host = host
        host.active += 1
        host.requests += 1
        self._host_counted = True
        preface = None
        if host.target_port:  # a peer sidecar: ask its inbound side for the app port
            target = b"127.0.0.1:" + host.target_port
            fields = [(b"host", target), (TARGET_PORT_HEADER, host.target_port)]
            fields.extend(self.ctx.request_headers(self))
            preface = request_head(b"CONNECT", target, fields)
        self.tunnel = Tunnel(self, host, preface)
        self.tunnel.start()

    def _switch_protocols(self, head: ResponseHead) -> None:
        """The upstream switched protocols (101): say so to the client, then splice the
        two connections. The route timeout stops here (it bounds the answer, not the
        life of a WebSocket)."""
        upstream = self.upstream
        assert upstream is not None and upstream.transport is not None and self.host is not None
        protocol = upgrade_protocol(head)
        if protocol.strip().lower() != self.head.upgrade.lower():
            # Only the protocol the client asked for (and the reader let through) may
            # follow: anything else would carry bytes no policy has seen.
            self._record(502)
            self.respond(502, b"the upstream switched to another protocol\n", flags="UPE")
            return
        self._record(101)
        self.status = 101
        self.resp_started = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.conn.write(switching_protocols_head(head, protocol))
        self.upstream = None  # the tunnel's now; never back to the pool
        tunnel = Tunnel(self, self.host, None)
        self.tunnel = tunnel
        upstream.become_tunnel(tunnel)
        tunnel.splice(upstream.transport)

    def tunnel_established(self) -> None:
        self.status = 200
        self.resp_started = True
        self._record(200)
        self.ctx.record(self)  # a tunnel is recorded as it opens, and again when it ends

    def tunnel_failed(self, status: int, flag: str, reason: str) -> None:
        self.tunnel = None
        if self.finished:
            return
        self._record(status)
        self.respond(status, f"{reason}\n".encode(), flags=flag)

    def tunnel_closed(self, abort: bool) -> None:
        self.tunnel = None
        if self.finished:
            return
        self._finish()
        if abort:
            self.conn.abort()
        else:
            self.conn.close()

    # == endings ===========================================================================

    def respond(
        self, status: int, body: bytes, *, extra: Headers | None = None, flags: str = ""
    ) -> None:
        """Answer locally (errors, redirects, faults). Ends the exchange."""
        if self.finished:
            return
        if flags:
            self.flags.append(flags)
        if self.resp_started:
            self._drop_upstream()  # the request is abandoned upstream too
            self._finish()
            self.conn.abort()
            return
        self.status = status
        self._drop_upstream()
        # Answered before the body ended: the connection stays only if the rest of the
        # body can be read and dropped (server.py `can_drain`).
        keep_alive = self.keep_alive and (self.req_done or self.conn.can_drain())
        trace = self.trace
        if trace is not None:
            Tracer.answered(trace)
        self.conn.write(
            local_response(
                status,
                body,
                flags=",".join(self.flags),
                close=not keep_alive,
                extra=extra,
                head_only=self.head.method == "HEAD",
            )
        )
        self.resp_started = True
        self.resp_bytes = len(body)
        self._finish()
        self.conn.done(keep_alive)

    def _record(self, status: int) -> None:
        trace = self.trace
        if trace is not None:
            trace.try_status = status
        cluster = self.cluster
        if self.host is not None and cluster is not None and cluster.config.outlier is not None:
            cluster.record(self.host, status)

    def _drop_upstream(self) -> None:
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.abort()

    def _end_try(self) -> None:
        self._cancel_try_timer()
        host = self.host
        if self._host_counted and host is not None:
            if self.upstream is None:
                # May still wait in the pool's pending queue (max_connections reached):
                # give its place back (a no-op when nothing waits).
                host.pool.cancel(self)
            host.active -= 1
            self._host_counted = False
            trace = self.trace
            if trace is not None and trace.sampled and self.ctx.outbound:
                self.ctx.tracer.client_span(self, trace)

    def _cancel_try_timer(self) -> None:
        if self._try_timer is not None:
            self._try_timer.cancel()
            self._try_timer = None

    def _finish(self) -> None:
        if self.finished:
            return
        self.finished = True
        self._end_try()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        wait = self.pending
        if wait is not None:
            wait.cancel()
            self.pending = None
        cluster = self.cluster
        if cluster is not None:
            cluster.active -= 1
            cluster.breaker.end_request()
        if self.core is not None:
            self.core.finish()
        tracer = self.ctx.tracer
        if tracer.enabled and not self.ctx.outbound:
            trace = self.trace
            if trace is None:  # answered before it was forwarded (404, 403, ...)
                trace = self.trace = tracer.begin_late(self)
            tracer.server_span(self, trace)
        self.ctx.record(self)

    def duration(self) -> float:
        return self.ctx.loop.time() - self.start_time


def _mutated(
    apply: Callable[[Iterable[tuple[str, str]]], list[tuple[str, str]]], headers: Headers
) -> Headers:
    """Run a route's header mutations (which speak str) over raw header bytes."""
    text = ((n.decode("latin-1"), v.decode("latin-1")) for n, v in headers)
    return [(n.encode("latin-1"), v.encode("latin-1", "replace")) for n, v in apply(text)]


def _field(headers: Headers, name: bytes) -> str:
    """One header's value (`name` lower-case), or "" when absent."""
    for n, v in headers:
        if n.lower() == name:
            return v.decode("latin-1")
    return ""
