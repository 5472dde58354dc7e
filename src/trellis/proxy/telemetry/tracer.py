"""Tracer: the sidecar's spans — one SERVER span per inbound request, one CLIENT span per
outbound try — built when an exchange ends and queued, bounded, for export.

Per request (`begin`): the incoming context is read (tracecontext.py), the
sampling decision taken, and the ids of the hop chosen; the exchange writes
`RequestTrace.header_block()` into the head it sends (the app's request
inbound, each try outbound), so the next hop's work is a child of this
sidecar's span. An unsampled request costs the read, three random ids and
the header lines: no span is built.

Ends: `server_span` when an inbound exchange is recorded; `client_span` when an
outbound try ends (a retried status, a reset, a connect failure, a per-try
timeout, or the final response): each try is its own span, with its endpoint,
its status or failure, and `http.request.resend_count`.

The queue (`SpanQueue`) is bounded: a span that finds it full is dropped and
counted, never waited for. The exporter (telemetry/export.py) takes batches
from it on its own schedule.

Attributes follow OpenTelemetry's HTTP semantic conventions; what they do not
name is under `trellis.` (response flags, cluster, SPIFFE principals).

Must not know how spans are encoded or sent.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from trellis.proxy.telemetry.tracecontext import (
    TraceContext,
    extract,
    headers,
    new_ids,
    new_request_id,
    new_span_id,
    request_id_of,
    sample,
)

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange

SPAN_KIND_SERVER = 2  # OTLP's Span.SpanKind
SPAN_KIND_CLIENT = 3
DEFAULT_QUEUE = 2048  # spans waiting for export; more are dropped and counted

AttrValue = str | int
Attributes = list[tuple[str, AttrValue]]


class Span:
    """One finished span, as the exporter needs it (ids in hex, times in ns since the
    epoch)."""

    __slots__ = (
        "attributes",
        "end_ns",
        "error",
        "kind",
        "name",
        "parent_id",
        "span_id",
        "start_ns",
        "trace_id",
        "tracestate",
    )

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_id: str,
        name: str,
        kind: int,
        start_ns: int,
        end_ns: int,
        attributes: Attributes,
        error: str,
        tracestate: str = "",
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.name = name
        self.kind = kind
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.attributes = attributes
        self.error = error  # "" when the span's status is unset; else ERROR with this message
        self.tracestate = tracestate


class SpanQueue:
    """Finished spans waiting for export: at most `limit`; beyond that, dropped and counted."""

    __slots__ = ("batch", "dropped", "limit", "queued", "spans", "wake")

    def __init__(self, limit: int = DEFAULT_QUEUE) -> None:
        self.spans: deque[Span] = deque()
        self.limit = limit
        self.dropped = 0  # spans that found the queue full
        self.queued = 0  # spans accepted, ever
        # Called (by the exporter's choice) when `batch` spans wait: a batch is ready.
        self.batch = 0
        self.wake: Callable[[], None] | None = None

    def put(self, span: Span) -> bool:
        spans = self.spans
        if len(spans) >= self.limit:
            self.dropped += 1
            return False
        spans.append(span)
        self.queued += 1
        if len(spans) == self.batch and self.wake is not None:
            self.wake()
        return True

    def take(self, count: int) -> list[Span]:
        """Up to `count` spans, oldest first."""
        spans = self.spans
        n = min(count, len(spans))
        return [spans.popleft() for _ in range(n)]

    def __len__(self) -> int:
        return len(self.spans)


class RequestTrace:
    """One exchange's place in its trace: the ids it carries on, and the try in progress."""

    __slots__ = (
        "b3_multi",
        "end_ns",
        "parent_id",
        "passthrough",
        "peer_principal",
        "request_id",
        "sampled",
        "span_id",
        "start_ns",
        "trace_id",
        "tracestate",
        "try_count",
        "try_outcome",
        "try_start_ns",
        "try_status",
    )

    def __init__(self, context: TraceContext, sampled: bool) -> None:
        self.parent_id = context.parent_id  # the caller's span ("" at a trace's root)
        self.sampled = sampled
        self.tracestate = context.tracestate
        self.b3_multi = context.b3_multi
        # Unsampled by the caller's decision, with a trace and a request id: nobody records
        # this hop, so its context goes on as it came (no ids drawn, no fields rewritten).
        self.passthrough = (
            context.sampled == 0 and context.trace_id != "" and context.request_id != ""
        )
        if context.trace_id:
            self.trace_id = context.trace_id
            # inbound: the server span; outbound: this try's span
            self.span_id = "" if self.passthrough else new_span_id()
            self.request_id = context.request_id or new_request_id()
        else:
            self.trace_id, self.span_id = new_ids()
            self.request_id = context.request_id or request_id_of(self.trace_id)
        self.start_ns = 0  # sampled: when this hop began with it (ns since the epoch)
        self.end_ns = 0  # sampled: when the last of the answer was written (0: not yet)
        self.try_count = 0
        self.try_start_ns = 0
        self.try_status = 0  # the try's response status (0: none yet)
        self.try_outcome = ""  # the try's failure, as a response flag (UF, UC, UT)
        self.peer_principal = ""  # the SPIFFE ID of the try's upstream (mTLS)

    def header_block(self) -> bytes:
        """The propagation header lines for the request this hop sends on."""
        return headers(
            self.trace_id,
            self.span_id,
            self.parent_id,
            self.sampled,
            self.tracestate,
            self.request_id,
            self.b3_multi,
        )


class Tracer:
    """The proxy's tracing settings (from its listeners' HCM `tracing`) and its span queue.
    `enabled` False: requests pass untouched (no context read, no headers written)."""

    __slots__ = (
        "enabled",
        "principal",
        "queue",
        "sampling",
        "spans_started",
    )

    def __init__(self, queue: SpanQueue | None = None) -> None:
        self.enabled = False
        self.sampling = 1.0  # percent
        self.queue = queue if queue is not None else SpanQueue()
        self.principal = ""  # this proxy's SPIFFE ID, when it has one
        self.spans_started = 0  # sampled requests

    def configure(self, enabled: bool, sampling: float) -> None:
        self.enabled = enabled
        self.sampling = sampling

    def begin(self, ex: Exchange) -> RequestTrace:
        context = extract(ex.head.headers)
        sampled = sample(context, self.sampling, random.random())
        trace = RequestTrace(context, sampled)
        if sampled:
            self.spans_started += 1
            trace.start_ns = time.time_ns()
        return trace

    # -- spans --------------------------------------------------------------------------------

    @staticmethod
    def answered(trace: RequestTrace) -> None:
        """The last of the answer is about to be written: the server span ends here (after
        the write, the caller may already have read it and ended its own span)."""
        if trace.sampled:
            trace.end_ns = time.time_ns()

    def begin_late(self, ex: Exchange) -> RequestTrace:
        """`begin` for a request answered before it was forwarded (404, 403, ...): its
        start is the exchange's (to the loop clock's resolution)."""
        trace = self.begin(ex)
        if trace.sampled:
            trace.start_ns -= int((ex.ctx.loop.time() - ex.start_time) * 1e9)
        return trace

    def begin_try(self, ex: Exchange, trace: RequestTrace) -> None:
        """An outbound try starts: a fresh span id from the second on (the head written for
        it names that span as the upstream's parent)."""
        if trace.try_count and not trace.passthrough:
            trace.span_id = new_span_id()
        trace.try_count += 1
        trace.try_status = 0
        trace.try_outcome = ""
        trace.peer_principal = ""
        if trace.sampled:
            trace.try_start_ns = time.time_ns()

    def client_span(self, ex: Exchange, trace: RequestTrace) -> None:
        """The try in progress ended with `trace.try_status` (0: no response) and, for a
        failure, a response flag (`trace.try_outcome`)."""
        if not trace.sampled or not trace.try_count:
            return
        status = trace.try_status
        outcome = trace.try_outcome
        end = time.time_ns()
        head = ex.head
        host = ex.host
        route = ex.route
        service = ex.cluster_name.rpartition("|")[2] or ex.cluster_name
        attrs: Attributes = [
            ("http.request.method", head.method),
            ("url.path", head.path.partition("?")[0]),
            ("server.address", _host_of(head.authority)),
            ("peer.service", service),
            ("trellis.upstream_cluster", ex.cluster_name),
            ("trellis.request_id", trace.request_id),
        ]
        if route is not None:
            attrs.append(("http.route", route.name))
        if host is not None:
            attrs.append(("network.peer.address", host.key[0]))
            attrs.append(("network.peer.port", host.key[1]))
            if host.config.workload:
                attrs.append(("trellis.upstream_workload", host.config.workload))
        if trace.try_count > 1:
            attrs.append(("http.request.resend_count", trace.try_count - 1))
        if status:
            attrs.append(("http.response.status_code", status))
        flags = outcome or ",".join(ex.flags)
        if flags:
            attrs.append(("trellis.response_flags", flags))
        if trace.peer_principal:
            attrs.append(("trellis.principal.destination", trace.peer_principal))
        if self.principal:
            attrs.append(("trellis.principal.source", self.principal))
        error = ""
        if status >= 500:
            error = f"HTTP {status}"
        elif not status:
            error = outcome or "no response"
        self.queue.put(
            Span(
                trace.trace_id,
                trace.span_id,
                trace.parent_id,
                f"{head.method} {service}",
                SPAN_KIND_CLIENT,
                trace.try_start_ns,
                end,
                attrs,
                error,
                trace.tracestate,
            )
        )

    def server_span(self, ex: Exchange, trace: RequestTrace) -> None:
        """An inbound exchange ended (answered by the app, or locally)."""
        if not trace.sampled:
            return
        # Wall-clock ns at both ends (the loop's clock has ms resolution under uvloop:
        # too coarse for spans nested across processes).
        start = trace.start_ns
        end = trace.end_ns or time.time_ns()
        head = ex.head
        route = ex.route
        status = ex.status
        conn = ex.conn
        attrs: Attributes = [
            ("http.request.method", head.method),
            ("url.path", head.path.partition("?")[0]),
            ("server.address", _host_of(head.authority)),
            ("network.peer.address", conn.peer[0]),
            ("network.peer.port", conn.peer[1]),
            ("http.response.status_code", status),
            ("trellis.request_id", trace.request_id),
        ]
        if route is not None:
            attrs.append(("http.route", route.name))
        caller = _peer_service(head.peer)
        if caller:
            attrs.append(("peer.service", caller))
        if ex.flags:
            attrs.append(("trellis.response_flags", ",".join(ex.flags)))
        if ex.authz_policy is not None:
            attrs.append(("trellis.authz_policy", ex.authz_policy))
        if conn.peer_identity:
            attrs.append(("trellis.principal.source", conn.peer_identity))
        if self.principal:
            attrs.append(("trellis.principal.destination", self.principal))
        agent = head.get("user-agent")
        if agent:
            attrs.append(("user_agent.original", agent[:256]))
        name = f"{head.method} {route.name}" if route is not None else head.method
        self.queue.put(
            Span(
                trace.trace_id,
                trace.span_id,
                trace.parent_id,
                name,
                SPAN_KIND_SERVER,
                start,
                end,
                attrs,
                f"HTTP {status}" if status >= 500 else "",
                trace.tracestate,
            )
        )

    def statistics(self) -> dict[str, object]:
        return {
            "enabled": self.enabled,
            "sampling_percent": self.sampling,
            "sampled_requests": self.spans_started,
            "queued": len(self.queue),
            "queue_limit": self.queue.limit,
            "dropped_queue_full": self.queue.dropped,
        }


def _host_of(authority: str) -> str:
    if authority.startswith("["):
        return authority[1:].partition("]")[0]
    return authority.rpartition(":")[0] if ":" in authority else authority


def _peer_service(peer: bytes | None) -> str:
    """The caller's `workload` from its sidecar's x-trellis-peer header ("" if none)."""
    if not peer:
        return ""
    for part in peer.decode("latin-1").split(";")[:8]:
        key, _, value = part.partition("=")
        if key == "app" and 0 < len(value) <= 128:
            return value
    return ""
