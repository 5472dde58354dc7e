"""OTLP trace load: sidecar-shaped Export batches at a fixed span rate, or as fast as answered.

Batches are made once from a template: one ExportTraceServiceRequest of `spans`
spans shaped as a sidecar's (14 attributes of issue 10's HTTP conventions, ~630
bytes of protobuf each), 4 spans per trace, spread over 4 services' resources, one
trace in a hundred with a 503. Each Export rewrites the template's 8-byte trace-id
prefix in its serialized bytes (`Batches.next`), so every Export carries new traces
and making them costs the load side nothing worth measuring.

- `open_loop`: Export i is due at `start + i * spans / rate`, whatever became of the
  ones before it (no coordinated omission); it waits for a free slot only when
  `max_in_flight` are unanswered, and its send lag says so.
- `closed_loop`: `concurrency` Exports in flight at all times: the receiver's max.
An Export that fails (any gRPC status) and the spans an answer reports as rejected
(OTLP partial success) are counted. Must not know what receives the spans.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field

import grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
SPANS_PER_TRACE = 4
SERVICES = 4

# What a sidecar's client span carries (issue 10's HTTP semantic conventions and ours);
# tests/control/traces/otlp_spans.py builds its batches from the same list.
SIDECAR_ATTRIBUTES: list[tuple[str, str | int]] = [
    ("http.request.method", "GET"),
    ("http.route", "reviews-v1"),
    ("url.path", "/api/v1/reviews/0"),
    ("server.address", "reviews"),
    ("network.peer.address", "127.0.0.1"),
    ("network.peer.port", 41234),
    ("http.response.status_code", 200),
    ("trellis.response_flags", "-"),
    ("trellis.retry_count", 0),
    ("trellis.upstream.address", "127.0.0.1:8080"),
    ("peer.service", "reviews"),
    ("user_agent.original", "python-httpx/0.29"),
    ("trellis.source.principal", "spiffe://cluster.local/ns/default/sa/productpage"),
    ("trellis.destination.principal", "spiffe://cluster.local/ns/default/sa/reviews"),
]


def add_sidecar_scope(request: ExportTraceServiceRequest, service: int) -> ScopeSpans:
    """A resource as sidecar `service-N` describes itself, and its scope to add spans to."""
    resource_spans = request.resource_spans.add()
    for key, value in (
        ("service.name", f"service-{service}"),
        ("service.namespace", "default"),
        ("service.instance.id", f"service-{service}-1"),
        ("telemetry.sdk.name", "trellis"),
    ):
        kv = resource_spans.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    scope_spans = resource_spans.scope_spans.add()
    scope_spans.scope.name = "trellis.proxy"
    return scope_spans


def template(spans: int, prefix: bytes) -> ExportTraceServiceRequest:
    """`spans` sidecar spans (a multiple of SPANS_PER_TRACE is best), trace ids `prefix + n`."""
    request = ExportTraceServiceRequest()
    now = time.time_ns()
    scopes = []
    for service in range(SERVICES):
        scopes.append(add_sidecar_scope(request, service))
    for n in range(spans):
        trace, hop = divmod(n, SPANS_PER_TRACE)
        span = scopes[hop % SERVICES].spans.add()
        span.trace_id = prefix + trace.to_bytes(8, "big")
        span.span_id = (n + 1).to_bytes(8, "big")
        if hop:
            span.parent_span_id = n.to_bytes(8, "big")
        span.name = "GET /api/v1/reviews"
        span.kind = 2 if hop % 2 else 3  # server, client
        span.start_time_unix_nano = now + hop * 100_000
        span.end_time_unix_nano = now + 20_000_000 - hop * 100_000
        for key, value in SIDECAR_ATTRIBUTES:
            kv = span.attributes.add()
            kv.key = key
            if key == "http.response.status_code":
                kv.value.int_value = 503 if trace % 100 == 0 else 200
            elif isinstance(value, int):
                kv.value.int_value = value
            else:
                kv.value.string_value = value
    return request


class Batches:
    """Serialized Exports of `spans` spans each, every one with new trace ids."""

    def __init__(self, spans: int) -> None:
        self.spans = spans
        self._prefix = os.urandom(8)
        self._data = template(spans, self._prefix).SerializeToString()

    @property
    def size(self) -> int:
        return len(self._data)

    def next(self) -> bytes:
        return self._data.replace(self._prefix, os.urandom(8))


@dataclass(slots=True)
class LoadResult:
    spans_per_export: int
    elapsed: float = 0.0
    exports_sent: int = 0
    exports_failed: int = 0
    spans_rejected: int = 0  # reported by the receiver (OTLP partial success)
    latencies: list[float] = field(default_factory=list)  # seconds, answered Exports
    send_lag: list[float] = field(default_factory=list)  # open loop: sent - due, seconds
    failures: dict[str, int] = field(default_factory=dict)

    @property
    def spans_sent(self) -> int:
        return self.exports_sent * self.spans_per_export

    @property
    def spans_failed(self) -> int:
        return self.exports_failed * self.spans_per_export


def _channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    options = [("grpc.max_send_message_length", -1)]
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(target, credentials, options=options)


async def _send(export: grpc.aio.UnaryUnaryMultiCallable, data: bytes, result: LoadResult) -> None:
    began = time.perf_counter()
    try:
        raw = await export(data, timeout=30)
    except grpc.aio.AioRpcError as e:
        result.exports_failed += 1
        name = e.code().name
        result.failures[name] = result.failures.get(name, 0) + 1
        return
    result.latencies.append(time.perf_counter() - began)
    answer = ExportTraceServiceResponse.FromString(raw)
    result.spans_rejected += answer.partial_success.rejected_spans


async def open_loop(
    target: str,
    spans_per_second: float,
    batches: Batches,
    duration: float,
    max_in_flight: int = 64,
    credentials: grpc.ChannelCredentials | None = None,
) -> LoadResult:
    result = LoadResult(batches.spans)
    interval = batches.spans / spans_per_second
    total = max(1, round(duration / interval))
    ready = [batches.next() for _ in range(total)]
    slots = asyncio.Semaphore(max_in_flight)
    async with _channel(target, credentials) as channel:
        export = channel.unary_unary(EXPORT_METHOD)
        tasks: set[asyncio.Task[None]] = set()
        start = time.perf_counter()
        for i, data in enumerate(ready):
            due = start + i * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await slots.acquire()
            result.send_lag.append(time.perf_counter() - due)
            result.exports_sent += 1

            async def one(data: bytes = data) -> None:
                try:
                    await _send(export, data, result)
                finally:
                    slots.release()

            task = asyncio.create_task(one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await asyncio.gather(*tasks)
        # The run lasts its schedule (total Exports, one interval each), or longer if late.
        result.elapsed = max(time.perf_counter() - start, total * interval)
    return result


async def closed_loop(
    target: str,
    batches: Batches,
    duration: float,
    concurrency: int = 2,
    credentials: grpc.ChannelCredentials | None = None,
) -> LoadResult:
    result = LoadResult(batches.spans)
    async with _channel(target, credentials) as channel:
        export = channel.unary_unary(EXPORT_METHOD)
        start = time.perf_counter()
        end = start + duration

        async def worker() -> None:
            while time.perf_counter() < end:
                data = batches.next()
                result.exports_sent += 1
                await _send(export, data, result)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        result.elapsed = time.perf_counter() - start
    return result
