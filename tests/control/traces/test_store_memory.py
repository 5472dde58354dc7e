"""The trace store's charge against the memory it really holds (tracemalloc).

The store charges each object a measured overhead plus the bytes it keeps
(trellis.control.traces.records). Here, for traces of different shapes, what
tracemalloc sees allocated by the store stays under the charge (the bound is a real
bound) and not far under it (the bound is not a fiction either); and a small store fed
several times its bound holds no more than the bound: eviction frees what it charged.
"""

from __future__ import annotations

import gc
import os
import tracemalloc
from collections.abc import Callable

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.control.traces.otlp_spans import BASE_NS

from trellis.control.traces.store import TraceStore

# What a sidecar's client span carries (issue 10's HTTP semantic conventions and ours).
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


def batch(
    traces: int, per_trace: int, attributes: int, services: int = 4
) -> ExportTraceServiceRequest:
    """`traces` traces of `per_trace` spans each, spread over `services` resources."""
    request = ExportTraceServiceRequest()
    prefix = os.urandom(8)
    for service in range(services):
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


def allocated_by(fill: Callable[[], TraceStore]) -> tuple[TraceStore, int]:
    """The store `fill` makes, and the bytes allocated that it still holds."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = fill()
        gc.collect()
        return store, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("per_trace", "attributes"),
    [(1, 0), (4, 0), (4, 14), (1, 14), (20, 5), (200, 14), (2000, 5)],
    ids=[
        "1-span-bare",
        "4-spans-bare",
        "4-sidecar-spans",
        "1-sidecar-span",
        "20-spans",
        "200-spans",
        "2000-spans",
    ],
)
def test_the_charge_covers_the_memory_held_and_not_much_more(
    per_trace: int, attributes: int
) -> None:
    requests = [batch(2000 // per_trace or 1, per_trace, attributes) for _ in range(10)]

    def fill() -> TraceStore:
        store = TraceStore(1 << 40)
        for r in requests:
            store.ingest(r)
        return store

    store, held = allocated_by(fill)
    charged = store.statistics()["bytes"]
    assert held <= charged, f"holds {held} bytes, charged {charged}"
    assert charged <= 1.4 * held, f"charged {charged} bytes for {held}"


def test_a_store_fed_five_times_its_bound_holds_no_more_than_the_bound() -> None:
    bound = 4 * 1024 * 1024
    requests = [batch(128, 4, 14) for _ in range(100)]  # ~20 MB charged in all

    def fill() -> TraceStore:
        store = TraceStore(bound)
        for r in requests:
            store.ingest(r)
        return store

    store, held = allocated_by(fill)
    stats = store.statistics()
    assert stats["spansAccepted"] == 100 * 128 * 4
    assert stats["spansEvicted"] > 3 * stats["spans"]  # most of it went
    assert stats["bytes"] <= bound
    assert held <= bound, f"holds {held} bytes with a bound of {bound}"
