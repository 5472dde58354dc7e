"""The JSON shapes of the trace API (`GET /api/v1/traces`, `GET /api/v1/traces/{id}`).

The dashboard and `trellis trace` read these; docs/design/control-plane.md ("Traces")
documents them. Ids are lowercase hex (as OTLP/JSON and W3C traceparent spell
them); times since the epoch are nanoseconds as decimal strings (`...UnixNano`, as
OTLP/JSON: a JavaScript number cannot hold them) and RFC 3339 (`start`); durations
and offsets within a trace are nanoseconds as numbers (`...Ns`). Attribute maps are
objects (`{"http.route": "reviews"}`), with OTLP's AnyValue as plain JSON: arrays,
objects, bytes as base64, doubles that JSON cannot hold (NaN, infinities) as strings.

A trace's spans come in waterfall order (`waterfall.build`), each with its row:
`depth`, `offsetNs`, `durationNs`, `selfNs`, `orphan`, and `slowest` on the one
span with the largest self time. Spans are decoded from the bytes the store kept,
only here. Pure: records in, dicts out.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Iterable
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from trellis.control.traces import waterfall
from trellis.control.traces.records import Origin, SpanRecord, TraceRecord, class_names

Json = dict[str, Any]
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def rfc3339_ns(unix_ns: int) -> str:
    """`2026-12-06T10:00:00.123456Z` (microseconds: what people and browsers read)."""
    when = _EPOCH + dt.timedelta(microseconds=unix_ns // 1000)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def any_value(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "int_value":
        return value.int_value
    if kind == "double_value":
        number = value.double_value
        return number if math.isfinite(number) else str(number)
    if kind == "array_value":
        return [any_value(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return attributes(value.kvlist_value.values)
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode()
    return None


def attributes(pairs: Iterable[KeyValue]) -> Json:
    return {kv.key: any_value(kv.value) for kv in pairs}


def _enum_name(prefix: str, name: str) -> str:
    return name.removeprefix(prefix)


def _kind(kind: int) -> str:
    return _enum_name("SPAN_KIND_", Span.SpanKind.Name(kind)) if kind in _KINDS else str(kind)


def _status_code(code: int) -> str:
    return _enum_name("STATUS_CODE_", Status.StatusCode.Name(code)) if code in _CODES else str(code)


_KINDS = frozenset(Span.SpanKind.values())
_CODES = frozenset(Status.StatusCode.values())


def _name_of(span: SpanRecord) -> str:
    decoded: Span = Span.FromString(span.raw)
    return decoded.name


def summary_json(trace: TraceRecord) -> Json:
    """A search result: who the trace started at, when, how long, how big, how it went."""
    root = trace.root
    first = root or min(trace.spans.values(), key=lambda s: (s.start, s.span_id))
    return {
        "traceId": trace.trace_id.hex(),
        "rootService": first.origin.service,
        "rootName": _name_of(first),
        "rootMissing": root is None,
        "start": rfc3339_ns(trace.start),
        "startTimeUnixNano": str(trace.start),
        "durationNs": trace.duration_ns,
        "spanCount": len(trace.spans),
        "error": trace.error,
        "statusClasses": class_names(trace.bits),
        "services": sorted(trace.services),
    }


class _Origins:
    """Each origin's resource and scope decoded once per answer."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[Json, Json]] = {}

    def of(self, origin: Origin) -> tuple[Json, Json]:
        known = self._seen.get(id(origin))
        if known is None:
            resource = Resource.FromString(origin.resource)
            scope = InstrumentationScope.FromString(origin.scope)
            known = (
                attributes(resource.attributes),
                {"name": scope.name, "version": scope.version, **_maybe_attrs(scope.attributes)},
            )
            self._seen[id(origin)] = known
        return known


def _maybe_attrs(pairs: Iterable[KeyValue]) -> Json:
    found = attributes(pairs)
    return {"attributes": found} if found else {}


def trace_json(trace: TraceRecord) -> Json:
    """The whole trace: the summary's fields, the extent, the slowest span, and every span
    (decoded, in waterfall order, with its row)."""
    records = list(trace.spans.values())
    fall = waterfall.build(
        [waterfall.WaterfallSpan(r.span_id, r.parent_id, r.start, r.end) for r in records]
    )
    origins = _Origins()
    spans: list[Json] = []
    for row in fall.rows:
        record = records[row.span]
        span = Span.FromString(record.raw)
        resource, scope = origins.of(record.origin)
        spans.append(
            {
                "spanId": record.span_id.hex(),
                "parentSpanId": record.parent_id.hex() or None,
                "name": span.name,
                "kind": _kind(span.kind),
                "service": record.origin.service,
                "startTimeUnixNano": str(record.start),
                "endTimeUnixNano": str(record.end),
                "depth": row.depth,
                "offsetNs": row.offset_ns,
                "durationNs": row.duration_ns,
                "selfNs": row.self_ns,
                "orphan": row.orphan,
                "slowest": row.span == fall.slowest,
                "status": {"code": _status_code(span.status.code), "message": span.status.message},
                "attributes": attributes(span.attributes),
                "events": [
                    {
                        "name": e.name,
                        "timeUnixNano": str(e.time_unix_nano),
                        "offsetNs": e.time_unix_nano - fall.start_ns,
                        "attributes": attributes(e.attributes),
                    }
                    for e in span.events
                ],
                "links": [
                    {
                        "traceId": link.trace_id.hex(),
                        "spanId": link.span_id.hex(),
                        "attributes": attributes(link.attributes),
                    }
                    for link in span.links
                ],
                "traceState": span.trace_state,
                "resource": resource,
                "scope": scope,
            }
        )
    slowest = records[fall.slowest].span_id.hex() if fall.slowest is not None else None
    return {
        **summary_json(trace),
        "extentNs": fall.duration_ns,
        "slowestSpanId": slowest,
        "spans": spans,
    }
