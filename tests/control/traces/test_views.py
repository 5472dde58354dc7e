"""The API's JSON shapes for traces (trellis.control.traces.views): summaries and whole traces."""

from __future__ import annotations

import json
import math

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from tests.control.traces.otlp_spans import BASE_NS, MS, TestSpan, request, span_id, trace_id

from trellis.control.traces.store import TraceStore
from trellis.control.traces.views import any_value, rfc3339_ns, summary_json, trace_json


def test_any_value_as_plain_json() -> None:
    value = AnyValue()
    array = value.array_value.values
    array.add().string_value = "s"
    array.add().int_value = -(2**63)
    array.add().bool_value = False
    array.add().double_value = math.nan
    array.add().double_value = -math.inf
    array.add().bytes_value = b"\x00\xff"
    kv = array.add().kvlist_value.values.add()
    kv.key = "inner"
    kv.value.double_value = 1.5
    array.add()  # no value at all
    got = any_value(value)
    assert got == ["s", -(2**63), False, "nan", "-inf", "AP8=", {"inner": 1.5}, None]
    json.dumps(got, allow_nan=False)  # what the API's JSONResponse requires


def test_times_in_rfc3339_to_the_microsecond() -> None:
    assert rfc3339_ns(BASE_NS + 123_456_789) == "2027-01-15T08:00:00.123456Z"


def stored(spans: list[TestSpan]) -> TraceStore:
    store = TraceStore(1 << 30)
    store.ingest(request(spans))
    return store


def test_a_summary() -> None:
    store = stored(
        [
            TestSpan(1, 2, parent=1, start_ms=1, end_ms=9, service="reviews", http_status=503),
            TestSpan(1, 1, start_ms=0, end_ms=10, service="web", name="GET /", http_status=200),
        ]
    )
    trace = store.get(trace_id(1))
    assert trace is not None
    assert summary_json(trace) == {
        "traceId": trace_id(1).hex(),
        "rootService": "web",
        "rootName": "GET /",
        "rootMissing": False,
        "start": rfc3339_ns(BASE_NS),
        "startTimeUnixNano": str(BASE_NS),
        "durationNs": 10 * MS,
        "spanCount": 2,
        "error": True,
        "statusClasses": ["2xx", "5xx", "error"],
        "services": ["reviews", "web"],
    }


def test_a_rootless_summary_names_the_earliest_span() -> None:
    store = stored(
        [
            TestSpan(1, 3, parent=9, start_ms=4, name="late"),
            TestSpan(1, 2, parent=9, start_ms=2, name="early"),
        ]
    )
    trace = store.get(trace_id(1))
    assert trace is not None
    summary = summary_json(trace)
    assert (summary["rootName"], summary["rootMissing"]) == ("early", True)


def test_a_whole_trace_in_waterfall_order() -> None:
    store = stored(
        [
            TestSpan(1, 3, parent=2, start_ms=3, end_ms=7, service="ratings", kind=2),
            TestSpan(1, 1, start_ms=0, end_ms=10, service="web", name="GET /"),
            TestSpan(1, 2, parent=1, start_ms=1, end_ms=9, service="reviews", kind=3, error=True),
            TestSpan(1, 8, parent=77, start_ms=5, end_ms=6, service="lost"),
        ]
    )
    req = request([TestSpan(1, 9, parent=1, start_ms=9, end_ms=9.5, service="web")])
    span = req.resource_spans[0].scope_spans[0].spans[0]
    event = span.events.add()
    event.name = "retry"
    event.time_unix_nano = BASE_NS + 9 * MS
    event.attributes.add(key="attempt").value.int_value = 2
    link = span.links.add()
    link.trace_id, link.span_id = trace_id(5), span_id(6)
    span.status.message = "fine"
    span.trace_state = "k=v"
    store.ingest(req)
    trace = store.get(trace_id(1))
    assert trace is not None
    body = trace_json(trace)
    json.dumps(body, allow_nan=False)
    rows = [
        (
            int(s["spanId"], 16),
            s["depth"],
            s["offsetNs"],
            s["durationNs"],
            s["selfNs"],
            s["orphan"],
            s["slowest"],
        )
        for s in body["spans"]
    ]
    assert rows == [
        (1, 0, 0, 10 * MS, 1.5 * MS, False, False),
        (2, 1, 1 * MS, 8 * MS, 4 * MS, False, True),
        (3, 2, 3 * MS, 4 * MS, 4 * MS, False, False),
        (9, 1, 9 * MS, MS // 2, MS // 2, False, False),
        (8, 0, 5 * MS, 1 * MS, 1 * MS, True, False),
    ]
    assert body["slowestSpanId"] == span_id(2).hex()
    assert body["extentNs"] == 10 * MS
    assert body["spanCount"] == 5
    web, reviews = body["spans"][0], body["spans"][1]
    assert web["parentSpanId"] is None and reviews["parentSpanId"] == span_id(1).hex()
    assert (reviews["kind"], reviews["status"]) == ("CLIENT", {"code": "ERROR", "message": ""})
    assert reviews["resource"] == {"service.name": "reviews"}
    assert reviews["scope"] == {"name": "tests", "version": ""}
    assert reviews["startTimeUnixNano"] == str(BASE_NS + MS)
    last = body["spans"][3]
    assert last["events"] == [
        {
            "name": "retry",
            "timeUnixNano": str(BASE_NS + 9 * MS),
            "offsetNs": 9 * MS,
            "attributes": {"attempt": 2},
        }
    ]
    assert last["links"] == [
        {"traceId": trace_id(5).hex(), "spanId": span_id(6).hex(), "attributes": {}}
    ]
    assert (last["status"], last["traceState"]) == ({"code": "UNSET", "message": "fine"}, "k=v")
