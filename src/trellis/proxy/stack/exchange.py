"""Exchange: one request through the stack — route action, fault, timeout, retry, balance,
pool, upstream — and its response back. Envoy's router filter, callback-driven.

Theory of operation. A listener makes an Exchange when a request head arrives,
selects a Route and calls `run(route)`. From there everything happens in
callbacks on the event loop (no task per request):

    run ─► redirect / direct response ─► respond()
     └─► fault delay? (timer) ─► fault abort? ─► respond()
          └─► pick cluster (weighted) ─► not there yet? wait for config (the only task)
               └─► limits ─► route timeout armed ─► attempt:
                    pick host (P2C / RR / ring) ─► pool.acquire ─► on_connected
                    ─► request head + body out ─► on_upstream_response
                         ├─ retriable status, attempts left ─► backoff (timer) ─► attempt
                         └─ relay head, body, end ─► finish ─► conn.done(keep_alive)
    failures: connect failure (UF), reset before a head (UC), per-try timeout (UT)
              ─► retry when the policy says so, else a local 503/504 with flags.

The request body streams: it is written upstream as it arrives, and kept for
replay only while it fits in RETRY_BUFFER (64 KiB); a bigger body can still be
sent, but not retried. While no upstream is attached yet, at most that much is
held and the client is paused beyond it. The response body streams to the
client; each side's full write buffer pauses reading on the other.

Response flags (Envoy's): NR no route, NC no cluster, UH no healthy upstream,
UF connect failure, UC upstream reset, UT timeout, URX retries exhausted, UO
overflow (circuit breaker), DI/FI fault delay/abort, DC downstream closed,
DPE downstream protocol error, UPE upstream protocol error (a transfer coding an
HTTP/1.0 client cannot be sent), SI request body idle timeout, DT request body
timeout. A local response carries them in the `x-trellis-flags` header.

Sending again: a request goes out again (a retry, or a pooled connection found
closed as it was reused) only while its body is held and, once a byte of it may
have reached the upstream, only when it is idempotent (`_may_resend`): a POST is
never delivered twice. A fault of ours on the upstream connection (pool.py) ends
the request with a 502 and is never retried.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from trellis.proxy.config.resources import ClusterConfig
from trellis.proxy.config.types import PASSTHROUGH_CLUSTER
from trellis.proxy.http1.head import HOP_BY_HOP, Headers, RequestHead, ResponseHead, end_to_end
from trellis.proxy.http1.writer import (
    CONTINUE_100,
    CRLF,
    LAST_CHUNK,
    chunk,
    local_response,
    request_head,
    response_head,
)
from trellis.proxy.stack.balance import hash64
from trellis.proxy.stack.cluster import ClusterRuntime
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.mirror import MirrorRequest, shadow_head
from trellis.proxy.stack.pool import UpstreamConnection
from trellis.proxy.stack.retry import RetryState, replay_safe
from trellis.proxy.stack.tunnel import Tunnel
from trellis.proxy.telemetry.tracecontext import PROPAGATION_FIELDS
from trellis.proxy.telemetry.tracer import RequestTrace, Tracer
from trellis.routing import (
    DirectResponseAction,
    ForwardAction,
    RedirectAction,
    Route,
    hash_keys,
)

if TYPE_CHECKING:
    from trellis.proxy.listeners.server import ServerConnection
    from trellis.proxy.stack.context import ListenerContext

RETRY_BUFFER = 64 * 1024
TARGET_PORT_HEADER = b"x-trellis-target-port"
FLAGS_HEADER = b"x-trellis-flags"
PEER_HEADER = b"x-trellis-peer"
_DROP_UPSTREAM = HOP_BY_HOP | {b"host", b"expect", TARGET_PORT_HEADER, PEER_HEADER}
# Traced: the propagation fields that came are replaced by this hop's (tracer.py).
_DROP_TRACED = _DROP_UPSTREAM | PROPAGATION_FIELDS


class Exchange:
    __slots__ = (
        "_buffer",
        "_buffered",
        "_down_paused",
        "_host_counted",
        "_mirror_pending",
        "_out",
        "_resp_chunked",
        "_retried_stale",
        "_sent_head",
        "_timer",
        "_try_timer",
        "authz_policy",
        "cluster",
        "cluster_name",
        "conn",
        "ctx",
        "finished",
        "flags",
        "head",
        "host",
        "keep_alive",
        "pending",
        "replayable",
        "req_bytes",
        "req_done",
        "resp_bytes",
        "resp_started",
        "retry",
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
        self.route: Route | None = None
        self.cluster: ClusterRuntime | None = None
        self.cluster_name = ""
        self.host: Host | None = None
        self.upstream: UpstreamConnection | None = None
        self.upstream_head = b""
        self.tunnel: Tunnel | None = None
        self.retry: RetryState | None = None
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
        self._buffer: list[bytes] = []
        self._out: list[bytes] = []  # response bytes of the current upstream read
        self._buffered = 0
        self._sent_head = False
        self._resp_chunked = False
        self._host_counted = False
        self._mirror_pending = False
        self._retried_stale = False
        self._down_paused = False
        self._timer: asyncio.TimerHandle | None = None
        self._try_timer: asyncio.TimerHandle | None = None
        self.pending: asyncio.TimerHandle | asyncio.Task[None] | None = None
        if head.expect_continue and head.has_body:
            conn.write(CONTINUE_100)  # Envoy answers 100-continue itself

    # == route action ======================================================================

    def run(self, route: Route) -> None:
        self.route = route
        action = route.action
        if route.fault is None and type(action) is ForwardAction:
            # The common case, in as few calls as it takes: no fault, forward.
            clusters = action.clusters
            self.forward(clusters[0][0] if len(clusters) == 1 else action.pick(random.random()))
            return
        if isinstance(action, RedirectAction):
            location = action.location(self.ctx.scheme, self.head.authority, self.head.path)
            self.respond(action.status, b"", extra=[(b"location", location.encode("latin-1"))])
            return
        if isinstance(action, DirectResponseAction):
            self.respond(action.status, action.body)
            return
        if not isinstance(action, ForwardAction):
            self.respond(500, f"route {route.name!r}: action not for sidecars\n".encode())
            return
        fault = route.fault
        if fault is not None:
            delay = fault.delay_for(random.random())
            if delay:
                self.flags.append("DI")
                self.pending = self.ctx.loop.call_later(delay, self._after_delay)
                return
        self._after_delay()

    def _after_delay(self) -> None:
        self.pending = None
        if self.finished:
            return
        route = self.route
        assert route is not None
        if route.fault is not None:
            status = route.fault.abort_for(random.random())
            if status:
                self.flags.append("FI")
                self.respond(status, b"fault filter abort\n")
                return
        action = route.action
        assert isinstance(action, ForwardAction)
        self.forward(action.pick(random.random()))

    def forward(self, cluster_name: str) -> None:
        """Send the request to `cluster_name` (waiting for its config if needed)."""
        self.cluster_name = cluster_name
        cluster = self.ctx.clusters.get(cluster_name)
        if cluster is None:
            self.pending = self.ctx.wait_for(
                lambda: self.ctx.clusters.get(cluster_name) is not None,
                self._cluster_ready,
                f"cluster {cluster_name}",
            )
            return
        self._begin(cluster)

    def _cluster_ready(self, ok: bool, why: str) -> None:
        self.pending = None
        if self.finished:
            return
        cluster = self.ctx.clusters.get(self.cluster_name) if ok else None
        if cluster is None:
            self.flags.append("NC")
            self.respond(503, f"no cluster: {why}\n".encode())
            return
        self._begin(cluster)

    def forward_original_destination(self) -> None:
        """Send the request where its authority points, outside the mesh (ALLOW_ANY)."""
        self.cluster_name = PASSTHROUGH_CLUSTER
        cluster = self._original_destination(None)
        if cluster is not None:
            self._begin(cluster)

    def _original_destination(self, parent: ClusterConfig | None) -> ClusterRuntime | None:
        host, port = split_authority(self.head.authority, 80)
        if not host:
            self.respond(400, b"no destination host in the request\n", flags="NR")
            return None
        if (host, port) in self.ctx.own_addresses:
            self.respond(508, b"the request names this proxy: loop refused\n", flags="NR")
            return None
        return self.ctx.clusters.original_destination(host, port, parent)

    # == upstream request ==================================================================

    def _begin(self, cluster: ClusterRuntime) -> None:
        if cluster.config.discovery == "ORIGINAL_DST":
            original = self._original_destination(cluster.config)
            if original is None:
                return
            cluster = original
        limits = cluster.config.limits
        if cluster.active >= limits.max_requests:
            cluster.overflows += 1
            self.flags.append("UO")
            self.respond(503, b"upstream overflow\n")
            return
        self.cluster = cluster
        cluster.active += 1
        cluster.requests += 1
        if self.head.method == "CONNECT":
            self._start_tunnel(cluster)
            return
        route = self.route
        loop = self.ctx.loop
        if route is not None:
            if route.timeout:
                self._timer = loop.call_later(route.timeout, self._on_timeout)
            policy = route.retry
            if policy is not None and policy.num_retries > 0:
                self.retry = RetryState(policy)
        self.upstream_head = self._request_head()
        if route is not None and route.mirrors:
            self._mirror_pending = True
            self._mirror()
        self._attempt()

    def _request_head(self) -> bytes:
        head = self.head
        route = self.route
        path = head.path
        authority = head.authority
        tracer = self.ctx.tracer
        if tracer.enabled:
            trace = self.trace = tracer.begin(self)
            headers = end_to_end(
                head.headers, _DROP_UPSTREAM if trace.passthrough else _DROP_TRACED
            )
        else:
            headers = end_to_end(head.headers, _DROP_UPSTREAM)
        if route is not None:
            path = route.rewrite_path(path)
            if route.host_rewrite:
                authority = route.host_rewrite
            if route.request_mutations:
                headers = _mutated(route.apply_request_headers, headers)
        headers.insert(0, (b"host", authority.encode("latin-1")))
        if head.upgrade:  # hop-by-hop, so re-stated for the next hop (RFC 9110 §7.8)
            headers += [(b"connection", b"upgrade"), (b"upgrade", head.upgrade)]
        headers.extend(self.ctx.request_headers(self))
        if head.content_length is not None:
            headers.append((b"content-length", b"%d" % head.content_length))
        elif head.chunked:
            headers.append((b"transfer-encoding", b"chunked"))
        return request_head(head.method.encode("ascii"), path.encode("latin-1"), headers)

    def _hash_key(self) -> int | None:
        route = self.route
        if route is None or not route.hash_policies:
            return None
        head = self.head
        keys = hash_keys(route.hash_policies, head, self.conn.peer[0], head.path)
        return hash64("\0".join(keys).encode("utf-8", "replace")) if keys else None

    def _attempt(self) -> None:
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
            data = data[:-2] + extra + b"\r\n"
        elif trace is not None:
            data = data[:-2] + trace.header_block() + b"\r\n"
        if trace is not None and trace.sampled:
            trace.peer_principal = conn.peer_identity
        if self._buffer:  # head and what arrived of the body so far: one write
            body = b"".join(self._buffer)
            data += chunk(body) if self.head.chunked else body
            if self._buffered > RETRY_BUFFER:
                self.replayable = False
                self._buffer.clear()
        if self.req_done and self.head.chunked:
            data += LAST_CHUNK
        conn.write(data)
        self._sent_head = True
        if self._down_paused:
            self._down_paused = False
            self.conn.pause_reading(False)

    def _write_body(self, data: bytes) -> None:
        assert self.upstream is not None
        self.upstream.write(chunk(data) if self.head.chunked else data)

    def on_connect_failed(self, reason: str) -> None:
        if self.finished or self.upstream is not None:
            return
        host = self.host
        if self.trace is not None:
            self.trace.try_outcome = "UF"
        self._end_try()
        if host is not None and self.cluster is not None:
            self.cluster.record(host, 503)
        delay = self.retry.after_connect_failure() if self.retry and self.replayable else None
        if delay is not None:
            self._retry_in(delay)
            return
        self.flags.append("UF")
        if self.retry is not None and self.retry.retries:
            self.flags.append("URX")
        self.respond(503, f"upstream connect error: {reason}\n".encode())

    def on_pool_overflow(self) -> None:
        if self.finished or self.upstream is not None:
            return
        self._end_try()
        self.respond(503, b"upstream overflow: connection pool full\n", flags="UO")

    # == CONNECT ===========================================================================

    def _start_tunnel(self, cluster: ClusterRuntime) -> None:
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
            headers = [(b"host", target), (TARGET_PORT_HEADER, host.target_port)]
            headers.extend(self.ctx.request_headers(self))
            preface = request_head(b"CONNECT", target, headers)
        self.tunnel = Tunnel(self, host, preface)
        self.tunnel.start()

    def _switch_protocols(self, head: ResponseHead) -> None:
        """The upstream switched protocols (101): say so to the client, then splice the
        two connections. The route timeout stops here (it bounds the answer, not the
        life of a WebSocket)."""
        upstream = self.upstream
        assert upstream is not None and upstream.transport is not None and self.host is not None
        protocol = b""
        for name, value in head.headers:
            if name.lower() == b"upgrade":
                protocol = value
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
        headers = end_to_end(head.headers)
        headers += [(b"connection", b"upgrade"), (b"upgrade", protocol)]
        self.conn.write(response_head(101, headers, head.reason))
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

    # == downstream request body ===========================================================

    def on_request_body(self, data: bytes) -> None:
        self.req_bytes += len(data)
        if self._sent_head and self.upstream is not None:
            self._write_body(data)
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
        if self._mirror_pending:
            self._mirror()

    def _mirror(self) -> None:
        """Send the copies the route asks for, once the whole request is known."""
        if not self.req_done:
            return  # again at the end of the body
        self._mirror_pending = False
        route = self.route
        if route is None or not self.replayable:
            return  # a body too big to keep is not copied
        body = b"".join(self._buffer)
        if self.head.chunked:
            body = (chunk(body) if body else b"") + LAST_CHUNK
        head = shadow_head(self.upstream_head)
        for name, fraction in route.mirrors:
            if fraction < 1.0 and random.random() >= fraction:
                continue
            cluster = self.ctx.clusters.get(name)
            if cluster is not None:
                MirrorRequest(cluster, head, body).start()

    # == upstream response =================================================================

    def on_upstream_response(self, head: ResponseHead) -> None:
        self._cancel_try_timer()
        status = head.status
        if status == 101:  # only ever read for a request that asked to upgrade
            self._switch_protocols(head)
            return
        retry = self.retry
        if retry is not None and retry.wants_status(status) and self._may_resend():
            delay = retry.after_status(status)
            if delay is not None:
                self._record(status)
                self._drop_upstream()
                self._end_try()
                self._retry_in(delay)
                return
            self.flags.append("URX")
        if head.codings and self.head.version != "1.1":
            # RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client, and without it
            # the coded body could not be read.
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
        if (
            head.plain
            and not head.chunked
            and not head.close_delimited
            and head.version == "1.1"
            and (route is None or not route.response_mutations)
        ):
            # The usual response: nothing hop-by-hop, length-framed, nothing to rewrite.
            # Its head goes on as it came, with our fields (if any) before the blank line.
            raw = head.raw
            if self.flags or not self.keep_alive:
                extra = b""
                if self.flags:
                    extra = FLAGS_HEADER + b": " + ",".join(self.flags).encode("ascii") + CRLF
                if not self.keep_alive:
                    extra += b"connection: close\r\n"
                raw = raw[:-2] + extra + CRLF
            self._out.append(raw)
            return
        headers = end_to_end(head.headers)
        if route is not None and route.response_mutations:
            headers = _mutated(route.apply_response_headers, headers)
        if self.head.method == "HEAD":
            headers.extend((n, v) for n, v in head.headers if n.lower() == b"content-length")
        elif head.content_length is not None:
            headers.append((b"content-length", b"%d" % head.content_length))
        elif head.chunked or head.close_delimited:
            if self.head.version == "1.1":
                self._resp_chunked = True
                te = head.codings + b", chunked" if head.codings else b"chunked"
                headers.append((b"transfer-encoding", te))
            else:
                self.keep_alive = False
        if self.flags:
            headers.append((FLAGS_HEADER, ",".join(self.flags).encode("ascii")))
        if not self.keep_alive:
            headers.append((b"connection", b"close"))
        # Written with the body bytes of the same upstream read (`on_upstream_flush`):
        # one send for a small response instead of two.
        self._out.append(response_head(status, headers, head.reason))

    def on_upstream_body(self, data: bytes) -> None:
        self.resp_bytes += len(data)
        self._out.append(chunk(data) if self._resp_chunked else data)

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
        if stale and not self._retried_stale and self._may_resend():
            # The pooled connection was closed by the peer as we reused it: once, at once
            # (idempotent requests only: the peer may have read it before it closed).
            self._retried_stale = True
            self._sent_head = False
            self._attempt()
            return
        self._record(503)
        delay = self.retry.after_reset() if self.retry and self._may_resend() else None
        if delay is not None:
            self._retry_in(delay)
            return
        self.flags.append("UC")
        if self.retry is not None and self.retry.retries:
            self.flags.append("URX")
        self.respond(503, f"upstream reset before response: {reason}\n".encode())

    def on_upstream_paused(self, paused: bool) -> None:
        self.conn.pause_reading(paused)

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
        delay = self.retry.after_per_try_timeout() if self.retry and self._may_resend() else None
        if delay is not None:
            self._retry_in(delay)
            return
        self.flags.append("UT")
        self.respond(504, b"upstream request timeout\n")

    def _on_timeout(self) -> None:
        self._timer = None
        if self.finished:
            return
        self.flags.append("UT")
        if self.resp_started:
            self._drop_upstream()
            self._finish()
            self.conn.abort()
            return
        self._drop_upstream()
        self.respond(504, b"upstream request timeout\n")

    def _retry_in(self, delay: float) -> None:
        self._sent_head = False
        self.pending = self.ctx.loop.call_later(delay, self._attempt)

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

    def _may_resend(self) -> bool:
        """The request may go out again: its body is still held and, when a byte of it may
        have reached the upstream, it is idempotent (stack/retry.py `replay_safe`)."""
        return self.replayable and (not self._sent_head or replay_safe(self.head))

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
        if self._host_counted and self.host is not None:
            self.host.active -= 1
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
        if self.cluster is not None:
            self.cluster.active -= 1
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


def split_authority(authority: str, default_port: int) -> tuple[str, int]:
    """(host, port) of `host[:port]` or `[v6][:port]`; ("", 0) when it is not one."""
    host, port = authority, default_port
    if authority.startswith("["):
        end = authority.find("]")
        if end < 0:
            return "", 0
        host, rest = authority[1:end], authority[end + 1 :]
        if rest.startswith(":") and rest[1:].isdigit():
            port = int(rest[1:])
        elif rest:
            return "", 0
    elif ":" in authority:
        host, _, text = authority.rpartition(":")
        if not text.isdigit():
            return "", 0
        port = int(text)
    if not host or not 0 < port < 65536:
        return "", 0
    return host, port
