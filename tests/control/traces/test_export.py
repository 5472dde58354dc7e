"""OtlpReceiver: one Export's bytes (protobuf or OTLP/JSON) to stored spans, a partial success
or a refusal; and the OTLP/JSON ids (hex) against the SDK's own JSON encoding."""

from __future__ import annotations

import base64
import json

import pytest
from google.protobuf import json_format
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from tests.control.traces.otlp_spans import TestSpan, request, span_id, trace_id

from trellis.control.limits import MAX_JSON_DEPTH, OTLP_MAX_SPANS_PER_EXPORT
from trellis.control.traces.export import OtlpReceiver, Refusal, Refused, parse_otlp_json
from trellis.control.traces.query import TraceQuery
from trellis.control.traces.store import TraceStore
from trellis.control.traces.views import trace_json


def receiver(max_bytes: int = 4096) -> OtlpReceiver:
    return OtlpReceiver(TraceStore(1 << 30), max_bytes=max_bytes)


def test_an_export_is_stored_and_answered_without_partial_success() -> None:
    r = receiver()
    answer = r.receive(request([TestSpan(1, 1), TestSpan(1, 2, parent=1)]).SerializeToString())
    assert isinstance(answer, ExportTraceServiceResponse)
    assert not answer.HasField("partial_success")
    assert r.statistics()["spans"] == 2
    assert r.statistics()["exports"] == 1


def test_refused_spans_come_back_as_a_partial_success() -> None:
    req = request([TestSpan(1, 1), TestSpan(1, 2)])
    req.resource_spans[0].scope_spans[0].spans[1].trace_id = b"short"
    answer = receiver().receive(req.SerializeToString())
    assert isinstance(answer, ExportTraceServiceResponse)
    assert answer.partial_success.rejected_spans == 1
    assert answer.partial_success.error_message == "trace_id must be 16 bytes, not all zero"


def test_over_the_byte_bound_is_refused_unparsed() -> None:
    r = receiver(max_bytes=100)
    answer = r.receive(b"\xff" * 101)  # not even protobuf: never looked at
    assert answer == Refused(
        Refusal.TOO_LARGE,
        "the export is 101 bytes; the trace store accepts at most 100 bytes in one "
        "(send smaller batches)",
    )
    assert r.statistics()["exportsTooLarge"] == 1


def test_more_spans_than_the_cap_are_refused_whole() -> None:
    r = OtlpReceiver(TraceStore(1 << 30))
    many = request([TestSpan(1, n) for n in range(1, OTLP_MAX_SPANS_PER_EXPORT + 2)])
    answer = r.receive(many.SerializeToString())
    assert isinstance(answer, Refused) and answer.reason is Refusal.TOO_LARGE
    assert f"at most {OTLP_MAX_SPANS_PER_EXPORT}" in answer.message
    assert r.statistics()["spans"] == 0  # none of it stored
    exactly = request([TestSpan(1, n) for n in range(1, OTLP_MAX_SPANS_PER_EXPORT + 1)])
    assert isinstance(r.receive(exactly.SerializeToString()), ExportTraceServiceResponse)


@pytest.mark.parametrize("data", [b"\x0a\xff\xff\xff\xff\x0f", b"\x0a\x05abc", b"\xff\xff"])
def test_bytes_that_are_not_an_export_are_invalid(data: bytes) -> None:
    r = receiver()
    answer = r.receive(data)
    assert isinstance(answer, Refused) and answer.reason is Refusal.INVALID
    assert answer.message.startswith("not an OTLP ExportTraceServiceRequest")
    assert r.statistics()["exportsInvalid"] == 1


def test_an_empty_export_is_fine() -> None:
    assert isinstance(receiver().receive(b""), ExportTraceServiceResponse)


# -- OTLP/JSON -------------------------------------------------------------------------------


def otlp_json(spans: list[TestSpan]) -> bytes:
    """OTLP/JSON as the specification spells it: protobuf's JSON mapping, ids in hex."""
    body = json_format.MessageToDict(request(spans))
    for rs in body["resourceSpans"]:
        for ss in rs["scopeSpans"]:
            for span in ss["spans"]:
                for name in ("traceId", "spanId", "parentSpanId"):
                    if name in span:
                        span[name] = base64.b64decode(span[name]).hex()
    return json.dumps(body).encode()


def test_otlp_json_with_hex_ids() -> None:
    data = otlp_json([TestSpan(7, 1, http_status=503), TestSpan(7, 2, parent=1)])
    assert trace_id(7).hex() in data.decode()  # the ids really are hex in what is sent
    r = receiver(max_bytes=1 << 20)
    answer = r.receive_json(data)
    assert isinstance(answer, ExportTraceServiceResponse)
    trace = r.store.get(trace_id(7))
    assert trace is not None
    assert sorted(trace.spans) == [span_id(1), span_id(2)]
    assert trace.error


def test_otlp_json_is_the_same_export_as_protobuf() -> None:
    spans = [
        TestSpan(3, 1, http_status=200, attributes=(("k", "v"), ("n", 5))),
        TestSpan(3, 2, parent=1),
    ]
    assert parse_otlp_json(otlp_json(spans)) == request(spans)


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"[1]", "the body must be a JSON object"),
        (b"{", "Expecting"),
        (b'{"resourceSpans": 5}', "resourceSpans must be a list of objects"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": "xyz"}]}]}]}', "is not hex"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"traceId": 5}]}]}]}', "hex string"),
        (b'{"resourceSpans": [{"scopeSpans": [{"spans": [{"name": 5}]}]}]}', "name"),
        (b"[" * (MAX_JSON_DEPTH + 1) + b"]" * (MAX_JSON_DEPTH + 1), "nested"),
    ],
)
def test_json_that_is_not_an_export_is_invalid(data: bytes, reason: str) -> None:
    answer = receiver().receive_json(data)
    assert isinstance(answer, Refused) and answer.reason is Refusal.INVALID
    assert reason in answer.message


# -- fuzz: whatever the bytes, an answer or a refusal, never an exception ----------------------

VALID = request(
    [
        TestSpan(1, 1, http_status=200, attributes=(("k", "v"),)),
        TestSpan(1, 2, parent=1, error=True),
        TestSpan(2, 3, parent=9, service="other"),
    ]
).SerializeToString()


@given(st.binary(max_size=512))
def test_any_bytes(data: bytes) -> None:
    answer = receiver(max_bytes=1 << 20).receive(data)
    assert isinstance(answer, ExportTraceServiceResponse | Refused)


@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.integers(0, 255)), max_size=8))
def test_a_valid_export_with_bytes_changed(changes: list[tuple[int, int]]) -> None:
    data = bytearray(VALID)
    for at, value in changes:
        data[at] = value
    r = receiver(max_bytes=1 << 20)
    answer = r.receive(bytes(data))
    assert isinstance(answer, ExportTraceServiceResponse | Refused)
    for trace in r.store.search(TraceQuery(limit=1000)).traces:  # what was stored reads back
        json.dumps(trace_json(trace), allow_nan=False)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(
            st.sampled_from(
                [
                    "resourceSpans",
                    "scopeSpans",
                    "spans",
                    "traceId",
                    "spanId",
                    "parentSpanId",
                    "links",
                    "name",
                    "attributes",
                    "key",
                    "value",
                    "stringValue",
                    "startTimeUnixNano",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@given(json_values)
def test_any_json(value: object) -> None:
    data = json.dumps(value).encode()
    answer = receiver(max_bytes=1 << 20).receive_json(data)
    assert isinstance(answer, ExportTraceServiceResponse | Refused)
