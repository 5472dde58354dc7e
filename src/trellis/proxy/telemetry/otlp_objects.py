"""OTLP trace messages built with OpenTelemetry's message objects: the reference the
wire-format writer (otlpwire.py) is tested against, and a readable statement of what a
sidecar sends. Not used on the proxy's path (objects cost several times the bytes)."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from trellis.proxy.telemetry.tracer import Span

SCOPE = common_pb2.InstrumentationScope(name="trellis-sidecar")


def resource(attributes: Sequence[tuple[str, str]]) -> resource_pb2.Resource:
    return resource_pb2.Resource(
        attributes=[
            common_pb2.KeyValue(key=k, value=common_pb2.AnyValue(string_value=v))
            for k, v in attributes
        ]
    )


def _value(v: str | int) -> common_pb2.AnyValue:
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    return common_pb2.AnyValue(string_value=v)


def encode(
    spans: Sequence[Span], res: resource_pb2.Resource
) -> trace_service_pb2.ExportTraceServiceRequest:
    """One ExportTraceServiceRequest: this proxy's resource, one scope, the spans."""
    out = []
    for s in spans:
        span = trace_pb2.Span(
            trace_id=bytes.fromhex(s.trace_id),
            span_id=bytes.fromhex(s.span_id),
            parent_span_id=bytes.fromhex(s.parent_id) if s.parent_id else b"",
            trace_state=s.tracestate,
            name=s.name,
            kind=s.kind,  # type: ignore[arg-type]
            start_time_unix_nano=s.start_ns,
            end_time_unix_nano=s.end_ns,
            attributes=[common_pb2.KeyValue(key=k, value=_value(v)) for k, v in s.attributes],
        )
        if s.error:
            span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
            span.status.message = s.error
        out.append(span)
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[
            trace_pb2.ResourceSpans(
                resource=res, scope_spans=[trace_pb2.ScopeSpans(scope=SCOPE, spans=out)]
            )
        ]
    )
