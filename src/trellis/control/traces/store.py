"""`TraceStore`: recent traces within a bound of memory, indexed for search.

Theory of operation:
- **Ingest.** `ingest(request)` takes an OTLP `ExportTraceServiceRequest` (parsed)
  and stores each valid span under its trace, whatever the order and however many
  batches a trace's spans come in. A span is kept as its protobuf bytes plus the
  fields the tree and the indexes need (`records`). Refused spans are counted and
  reported back: ids of the wrong length or all zero (`rejected`, as OTLP's partial
  success), spans of a trace that already holds `max_spans_per_trace` (`dropped`).
  A span id the trace already has is a resend (an exporter's retry): skipped,
  counted as `duplicate`, not refused.
- **Bound.** Every stored object is charged its cost (`records`: bytes kept plus a
  measured per-object overhead). After each span, while the charge is over
  `max_bytes`, the trace that arrived first is evicted whole, whichever trace that
  is (the one being added to included): the store is a ring of traces by arrival.
- **Indexes.** Traces by id; by service (`service.name` of the span's resource);
  by status class (`1xx`..`5xx`, `error`); all of them in arrival order. A search
  starts from the smallest index that applies, filters on the rest (duration, time)
  and answers the newest starts first.

Runs on the event loop that receives the spans: no locks, no I/O, no clock (the
caller gives `now` where a query needs it). Knows OTLP's messages, not their transport.
"""

from __future__ import annotations

import heapq
import operator
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from trellis.control.traces.query import TraceQuery
from trellis.control.traces.records import (
    SERVICE_OVERHEAD,
    STATUS_CLASSES,
    STATUS_OVERHEAD,
    TRACE_OVERHEAD,
    Origin,
    SpanRecord,
    TraceRecord,
    class_bit,
    status_bits,
)

# A trace's spans are served whole (`GET /api/v1/traces/{id}` and its waterfall): past
# this many, the rest of a runaway trace is dropped rather than answered as a 50 MB page.
MAX_SPANS_PER_TRACE: Final = 10_000
# What OpenTelemetry calls a service whose resource does not say (the SDKs' default).
UNKNOWN_SERVICE: Final = "unknown_service"
# Where the HTTP response status is, in the current and in the older semantic conventions.
HTTP_STATUS_KEYS: Final = frozenset({"http.response.status_code", "http.status_code"})

_ZERO_TRACE: Final = bytes(16)
_ZERO_SPAN: Final = bytes(8)
_ERROR: Final = Status.STATUS_CODE_ERROR
_NEWEST: Final = operator.attrgetter("start", "trace_id")


@dataclass(slots=True)
class Ingested:
    """What became of one request's spans."""

    accepted: int = 0
    rejected: int = 0  # invalid: refused for good (OTLP partial success)
    dropped: int = 0  # their trace was full
    duplicate: int = 0  # already stored: a resend
    problems: list[str] = field(default_factory=list)  # why, one line per kind of refusal

    @property
    def refused(self) -> int:
        """What the client is told was not accepted (OTLP's `rejected_spans`)."""
        return self.rejected + self.dropped


@dataclass(frozen=True, slots=True)
class Found:
    traces: list[TraceRecord]  # newest start first, at most the query's limit
    matched: int  # how many matched in all


class TraceStore:
    def __init__(self, max_bytes: int, max_spans_per_trace: int = MAX_SPANS_PER_TRACE) -> None:
        if max_bytes <= 0:
            raise ValueError("the trace store needs a positive bound")
        self.max_bytes = max_bytes
        self.max_spans_per_trace = max_spans_per_trace
        self._traces: dict[bytes, TraceRecord] = {}
        self._arrival: deque[TraceRecord] = deque()
        self._by_service: dict[str, dict[TraceRecord, None]] = {}
        self._by_status: dict[int, dict[TraceRecord, None]] = {
            class_bit(name): {} for name in STATUS_CLASSES
        }
        self._origins: dict[tuple[bytes, bytes], Origin] = {}
        self._bytes = 0
        self._spans = 0
        self._counts = {
            "spansAccepted": 0,
            "spansRejected": 0,
            "spansDropped": 0,
            "spansDuplicate": 0,
            "tracesEvicted": 0,
            "spansEvicted": 0,
        }

    # -- ingest -------------------------------------------------------------------------------

    def ingest(self, request: ExportTraceServiceRequest) -> Ingested:
        result = Ingested()
        for resource_spans in request.resource_spans:
            resource = resource_spans.resource
            resource_bytes = resource.SerializeToString()
            service = _service_name(resource.attributes)
            for scope_spans in resource_spans.scope_spans:
                key = (resource_bytes, scope_spans.scope.SerializeToString())
                origin = self._origins.get(key) or Origin(key[0], key[1], service)
                for span in scope_spans.spans:
                    self._add(span, origin, result)
        counts = self._counts
        counts["spansAccepted"] += result.accepted
        counts["spansRejected"] += result.rejected
        counts["spansDropped"] += result.dropped
        counts["spansDuplicate"] += result.duplicate
        return result

    def _add(self, span: Span, origin: Origin, result: Ingested) -> None:
        trace_id = span.trace_id
        span_id = span.span_id
        parent_id = span.parent_span_id
        if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
            _refuse(result, "trace_id must be 16 bytes, not all zero")
            return
        if len(span_id) != 8 or span_id == _ZERO_SPAN:
            _refuse(result, "span_id must be 8 bytes, not all zero")
            return
        if parent_id == _ZERO_SPAN:
            parent_id = b""
        elif parent_id and len(parent_id) != 8:
            _refuse(result, "parent_span_id must be empty or 8 bytes")
            return
        trace = self._traces.get(trace_id)
        if trace is None:
            trace = TraceRecord(trace_id)
            self._traces[trace_id] = trace
            self._arrival.append(trace)
            self._bytes += TRACE_OVERHEAD
        elif span_id in trace.spans:
            result.duplicate += 1
            return
        elif len(trace.spans) >= self.max_spans_per_trace:
            result.dropped += 1
            problem = f"a trace holds at most {self.max_spans_per_trace} spans"
            if problem not in result.problems:
                result.problems.append(problem)
            return
        start = span.start_time_unix_nano
        end = max(start, span.end_time_unix_nano)
        record = SpanRecord(span_id, parent_id, start, end, origin, span.SerializeToString())
        before = trace.cost
        trace.add(record)
        if origin.service not in trace.services:
            trace.services = (*trace.services, origin.service)
            self._by_service.setdefault(origin.service, {})[trace] = None
            trace.cost += SERVICE_OVERHEAD
        bits = status_bits(_http_status(span), span.status.code == _ERROR) & ~trace.bits
        if bits:
            trace.bits |= bits
            for bit, index in self._by_status.items():
                if bits & bit:
                    index[trace] = None
                    trace.cost += STATUS_OVERHEAD
        self._bytes += trace.cost - before
        self._spans += 1
        if origin.spans == 0:
            self._origins[origin.key] = origin
            self._bytes += origin.cost
        origin.spans += 1
        result.accepted += 1
        while self._bytes > self.max_bytes and self._arrival:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        trace = self._arrival.popleft()
        trace.live = False
        del self._traces[trace.trace_id]
        for service in trace.services:
            index = self._by_service[service]
            del index[trace]
            if not index:
                del self._by_service[service]
        for bit, index in self._by_status.items():
            if trace.bits & bit:
                del index[trace]
        for span in trace.spans.values():
            origin = span.origin
            origin.spans -= 1
            if origin.spans == 0:
                del self._origins[origin.key]
                self._bytes -= origin.cost
        self._bytes -= trace.cost
        self._spans -= len(trace.spans)
        self._counts["tracesEvicted"] += 1
        self._counts["spansEvicted"] += len(trace.spans)

    # -- reading ------------------------------------------------------------------------------

    def get(self, trace_id: bytes) -> TraceRecord | None:
        return self._traces.get(trace_id)

    def search(self, query: TraceQuery) -> Found:
        pools: list[Iterable[TraceRecord]] = []
        sizes: list[int] = []
        if query.service is not None:
            by_service = self._by_service.get(query.service, {})
            pools.append(by_service)
            sizes.append(len(by_service))
        if query.status is not None:
            by_status = self._by_status[class_bit(query.status)]
            pools.append(by_status)
            sizes.append(len(by_status))
        pool: Iterable[TraceRecord] = (
            pools[sizes.index(min(sizes))] if pools else self._traces.values()
        )
        matched = [t for t in pool if query.matches(t)] if query.filters else list(pool)
        newest = heapq.nlargest(query.limit, matched, key=_NEWEST)
        return Found(newest, len(matched))

    def services(self) -> list[str]:
        return sorted(self._by_service)

    def statistics(self) -> dict[str, int]:
        """Now: traces, spans, bytes charged, the bound; since start: the counters."""
        return {
            "traces": len(self._traces),
            "spans": self._spans,
            "bytes": self._bytes,
            "maxBytes": self.max_bytes,
            **self._counts,
        }


def _refuse(result: Ingested, problem: str) -> None:
    result.rejected += 1
    if problem not in result.problems:
        result.problems.append(problem)


def _service_name(attributes: Iterable[KeyValue]) -> str:
    for kv in attributes:
        if kv.key == "service.name":
            name = kv.value.string_value
            return sys.intern(name) if name else UNKNOWN_SERVICE
    return UNKNOWN_SERVICE


def _http_status(span: Span) -> int:
    """The span's HTTP response status (int or digits), 0 when it has none."""
    for kv in span.attributes:
        if kv.key in HTTP_STATUS_KEYS:
            value = kv.value
            if value.HasField("int_value"):
                return int(value.int_value)
            text = value.string_value
            return int(text) if text.isdigit() and len(text) == 3 else 0
    return 0
