"""OTLP export requests made from short span descriptions, for the trace store's tests.

`TestSpan(trace=1, span=2, parent=1, start_ms=0, end_ms=5, service="reviews")` names ids by
small numbers (`trace_id(1)`, `span_id(2)`) so tests read as trees; `request(spans)`
groups them by service into one ResourceSpans each, as an SDK or a sidecar sends them.
`sidecar_batch` makes many traces of spans shaped as a sidecar's (14 attributes), fast.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from bench.otlpload import SIDECAR_ATTRIBUTES, add_sidecar_scope
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

BASE_NS = 1_800_000_000_000_000_000  # 2027-01-15: a fixed epoch for the spans' times
MS = 1_000_000


def trace_id(n: int) -> bytes:
    return n.to_bytes(16, "big")


def span_id(n: int) -> bytes:
    return n.to_bytes(8, "big")


@dataclass(frozen=True)
class TestSpan:
    trace: int
    span: int
    parent: int | None = None
    start_ms: float = 0.0
    end_ms: float = 1.0
    service: str = "svc"
    name: str = ""
    http_status: int | None = None
    error: bool = False
    kind: int = Span.SPAN_KIND_SERVER
    attributes: tuple[tuple[str, str | int], ...] = ()

    __test__ = False  # not a pytest class

    @property
    def start_ns(self) -> int:
        return BASE_NS + round(self.start_ms * MS)

    @property
    def end_ns(self) -> int:
        return BASE_NS + round(self.end_ms * MS)


def fill(span: Span, s: TestSpan) -> None:
    span.trace_id = trace_id(s.trace)
    span.span_id = span_id(s.span)
    if s.parent is not None:
        span.parent_span_id = span_id(s.parent)
    span.name = s.name or f"span-{s.span}"
    span.kind = s.kind
    span.start_time_unix_nano = s.start_ns
    span.end_time_unix_nano = s.end_ns
    if s.http_status is not None:
        kv = span.attributes.add()
        kv.key = "http.response.status_code"
        kv.value.int_value = s.http_status
    for key, value in s.attributes:
        kv = span.attributes.add()
        kv.key = key
        if isinstance(value, int):
            kv.value.int_value = value
        else:
            kv.value.string_value = value
    if s.error:
        span.status.code = Status.STATUS_CODE_ERROR


def request(spans: Iterable[TestSpan], scope: str = "tests") -> ExportTraceServiceRequest:
    out = ExportTraceServiceRequest()
    by_service: dict[str, list[TestSpan]] = {}
    for s in spans:
        by_service.setdefault(s.service, []).append(s)
    for service, group in by_service.items():
        resource_spans = out.resource_spans.add()
        kv = resource_spans.resource.attributes.add()
        kv.key = "service.name"
        kv.value.string_value = service
        scope_spans = resource_spans.scope_spans.add()
        scope_spans.scope.name = scope
        for s in group:
            fill(scope_spans.spans.add(), s)
    return out


def sidecar_batch(
    traces: int, per_trace: int, attributes: int, services: int = 4
) -> ExportTraceServiceRequest:
    """`traces` traces of `per_trace` spans each, spread over `services` resources."""
    request = ExportTraceServiceRequest()
    prefix = os.urandom(8)
    for service in range(services):
        scope_spans = add_sidecar_scope(request, service)
        for t in range(traces):
            for n in range(per_trace):
                if n % services != service:
                    continue
                span = scope_spans.spans.add()
                span.trace_id = prefix + t.to_bytes(8, "big")
                span.span_id = os.urandom(8)
                if n:
                    span.parent_span_id = os.urandom(8)
                span.name = "GET /api/v1/reviews"
                span.kind = 3
                span.start_time_unix_nano = BASE_NS + t * 1000 + n
                span.end_time_unix_nano = BASE_NS + t * 1000 + n + 5_000_000
                for key, value in SIDECAR_ATTRIBUTES[:attributes]:
                    kv = span.attributes.add()
                    kv.key = key
                    if isinstance(value, int):
                        kv.value.int_value = value
                    else:
                        kv.value.string_value = value
    return request
