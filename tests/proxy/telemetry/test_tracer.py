"""The tracer's pure parts: the bounded span queue (drop and count, never grow), a
request's place in its trace (ids, tries, header block), and OTLP encoding of spans.
Runs compiled and interpreted."""

from __future__ import annotations

from opentelemetry.proto.trace.v1 import trace_pb2

from trellis.proxy.http1.head import head_fields
from trellis.proxy.telemetry.otlp_objects import encode, resource
from trellis.proxy.telemetry.tracecontext import TraceContext, extract
from trellis.proxy.telemetry.tracer import (
    SPAN_KIND_CLIENT,
    SPAN_KIND_SERVER,
    RequestTrace,
    Span,
    SpanQueue,
)

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"


def span(n: int = 0, error: str = "") -> Span:
    return Span(
        TID,
        "%016x" % (n + 1),
        SID,
        "GET web",
        SPAN_KIND_CLIENT,
        1_000,
        2_000 + n,
        [("http.response.status_code", 503), ("peer.service", "web")],
        error,
        "a=1",
    )


def test_queue_is_bounded_drops_and_counts() -> None:
    queue = SpanQueue(limit=10)
    accepted = [queue.put(span(i)) for i in range(25)]
    assert accepted == [True] * 10 + [False] * 15
    assert (len(queue), queue.dropped, queue.queued) == (10, 15, 10)
    first = queue.take(4)
    assert [s.span_id for s in first] == ["%016x" % (i + 1) for i in range(4)]  # oldest first
    assert queue.put(span(99)) and len(queue) == 7
    assert len(queue.take(100)) == 7 and len(queue) == 0


def test_queue_wakes_its_exporter_once_per_batch() -> None:
    queue = SpanQueue(limit=100)
    woken: list[int] = []
    queue.batch = 5
    queue.wake = lambda: woken.append(len(queue))
    for i in range(12):
        queue.put(span(i))
    assert woken == [5]
    queue.take(10)
    for i in range(3):
        queue.put(span(i))
    assert woken == [5, 5]


def test_request_trace_joins_or_starts_and_makes_ids() -> None:
    joined = RequestTrace(TraceContext(TID, SID, 1, "a=1", "rid"), True)
    assert (joined.trace_id, joined.parent_id, joined.request_id) == (TID, SID, "rid")
    assert len(joined.span_id) == 16 and joined.span_id != SID
    fresh = RequestTrace(TraceContext(), False)
    assert len(fresh.trace_id) == 32 and fresh.parent_id == "" and len(fresh.request_id) == 36


def test_header_block_names_this_hops_span_as_parent() -> None:
    trace = RequestTrace(TraceContext(TID, SID, 1, "a=1", "rid"), True)
    fields = head_fields(b"GET / HTTP/1.1\r\n" + trace.header_block() + b"\r\n")
    ctx = extract(fields)
    assert (ctx.trace_id, ctx.parent_id, ctx.sampled) == (TID, trace.span_id, 1)
    assert (ctx.tracestate, ctx.request_id) == ("a=1", "rid")
    assert {n for n, _ in fields} == {b"traceparent", b"tracestate", b"b3", b"x-request-id"}
    # A caller that speaks B3 multi gets it written on too, with the parent.
    multi = extract([(b"x-b3-traceid", TID.encode()), (b"x-b3-spanid", SID.encode())])
    fields = head_fields(b"GET / HTTP/1.1\r\n" + RequestTrace(multi, True).header_block() + b"\r\n")
    assert dict(fields)[b"x-b3-parentspanid"] == SID.encode()
    assert dict(fields)[b"x-b3-traceid"] == TID.encode()


def test_an_unsampled_callers_context_passes_through() -> None:
    ctx = TraceContext(TID, SID, 0, "", "rid")
    trace = RequestTrace(ctx, False)
    assert trace.passthrough and trace.span_id == ""
    # No decision, or no request id: this hop writes its own.
    assert not RequestTrace(TraceContext(TID, SID, -1, "", "rid"), False).passthrough
    assert not RequestTrace(TraceContext(TID, SID, 0, "", ""), False).passthrough
    assert not RequestTrace(TraceContext(TID, SID, 1, "", "rid"), True).passthrough


def test_a_new_trace_draws_its_ids_and_request_id_once() -> None:
    trace = RequestTrace(TraceContext(), False)
    rid = trace.request_id
    assert rid.replace("-", "")[:12] == trace.trace_id[:12]
    assert rid[14] == "4" and rid[19] in "89ab" and len(rid) == 36


def test_encode_spans_as_otlp() -> None:
    request = encode([span(0), span(1, error="HTTP 503")], resource([("service.name", "web")]))
    (rs,) = request.resource_spans
    assert rs.resource.attributes[0].key == "service.name"
    assert rs.resource.attributes[0].value.string_value == "web"
    (ss,) = rs.scope_spans
    assert ss.scope.name == "trellis-sidecar"
    ok, failed = ss.spans
    assert ok.trace_id.hex() == TID and ok.parent_span_id.hex() == SID
    assert ok.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    assert (ok.start_time_unix_nano, ok.end_time_unix_nano) == (1_000, 2_000)
    assert ok.trace_state == "a=1"
    attrs = {kv.key: kv.value for kv in ok.attributes}
    assert attrs["http.response.status_code"].int_value == 503
    assert attrs["peer.service"].string_value == "web"
    assert ok.status.code == trace_pb2.Status.STATUS_CODE_UNSET
    assert failed.status.code == trace_pb2.Status.STATUS_CODE_ERROR
    assert failed.status.message == "HTTP 503"
    root = Span(TID, SID, "", "GET r", SPAN_KIND_SERVER, 1, 2, [], "")
    (encoded,) = encode([root], resource([])).resource_spans[0].scope_spans[0].spans
    assert encoded.parent_span_id == b"" and encoded.kind == trace_pb2.Span.SPAN_KIND_SERVER


def test_wire_encoding_is_what_protobuf_builds() -> None:
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    from trellis.proxy.telemetry.otlpwire import export_request, resource_bytes, span_bytes

    spans = [
        span(0),
        span(1, error="HTTP 503"),
        Span(TID, SID, "", "GET r", SPAN_KIND_SERVER, 1, 2**63 + 5, [("n", -3), ("é", "ü")], ""),
    ]
    attrs = [("service.name", "web"), ("service.namespace", "default")]
    wire = export_request(resource_bytes(attrs), "trellis-sidecar", [span_bytes(s) for s in spans])
    parsed = trace_service_pb2.ExportTraceServiceRequest.FromString(wire)
    assert parsed == encode(spans, resource(attrs))
