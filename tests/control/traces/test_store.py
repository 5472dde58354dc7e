"""TraceStore: joining a trace's spans, refusing bad ones, the indexes, eviction by arrival.

Examples, then a property (hypothesis): random batches of spans of random traces, in any
order, into a small store; after every batch the charge is within the bound, the traces
kept are the latest to arrive, each holds every span it was sent since it arrived, and
every search answers what a scan of the kept traces answers.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.control.traces.otlp_spans import MS, TestSpan, request, span_id, trace_id

from trellis.control.traces.query import TraceQuery
from trellis.control.traces.records import STATUS_CLASSES, TraceRecord
from trellis.control.traces.store import TraceStore

BIG = 1 << 40


def ids(traces: Iterable[TraceRecord]) -> list[int]:
    return [int.from_bytes(t.trace_id, "big") for t in traces]


def test_spans_of_one_trace_in_several_batches_and_out_of_order_are_joined() -> None:
    store = TraceStore(BIG)
    store.ingest(request([TestSpan(1, 3, parent=2, start_ms=2, end_ms=8, service="ratings")]))
    store.ingest(request([TestSpan(1, 2, parent=1, start_ms=1, end_ms=9, service="reviews")]))
    trace = store.get(trace_id(1))
    assert trace is not None and trace.root is None
    assert trace.duration_ns == 8 * MS  # no root yet: the extent, 1 to 9
    store.ingest(request([TestSpan(1, 1, start_ms=0, end_ms=20, service="productpage")]))
    assert store.get(trace_id(1)) is trace
    assert sorted(trace.spans) == [span_id(1), span_id(2), span_id(3)]
    assert trace.root is not None and trace.root.span_id == span_id(1)
    assert trace.duration_ns == 20 * MS
    assert trace.services == ("ratings", "reviews", "productpage")
    assert store.statistics()["traces"] == 1
    assert store.statistics()["spans"] == 3


def test_spans_with_bad_ids_are_rejected_and_counted_the_rest_stored() -> None:
    good = request([TestSpan(1, 1)])
    bad = ExportTraceServiceRequest()
    bad.CopyFrom(good)
    spans = bad.resource_spans[0].scope_spans[0].spans
    for mutate in (
        lambda s: setattr(s, "trace_id", b"\x01" * 8),  # 64 bits: the wrong length
        lambda s: setattr(s, "trace_id", bytes(16)),
        lambda s: setattr(s, "span_id", bytes(8)),
        lambda s: setattr(s, "span_id", b"\x01" * 16),
        lambda s: setattr(s, "parent_span_id", b"\x01" * 3),
    ):
        s = spans.add()
        s.CopyFrom(spans[0])
        s.span_id = span_id(len(spans))
        mutate(s)
    store = TraceStore(BIG)
    result = store.ingest(bad)
    assert (result.accepted, result.rejected, result.refused) == (1, 5, 5)
    assert result.problems == [
        "trace_id must be 16 bytes, not all zero",
        "span_id must be 8 bytes, not all zero",
        "parent_span_id must be empty or 8 bytes",
    ]
    assert store.statistics()["spansRejected"] == 5
    assert store.statistics()["spans"] == 1


def test_an_all_zero_parent_id_is_no_parent() -> None:
    req = request([TestSpan(1, 1)])
    req.resource_spans[0].scope_spans[0].spans[0].parent_span_id = bytes(8)
    store = TraceStore(BIG)
    store.ingest(req)
    trace = store.get(trace_id(1))
    assert trace is not None and trace.root is not None


def test_a_resent_span_is_skipped_not_refused() -> None:
    store = TraceStore(BIG)
    store.ingest(request([TestSpan(1, 1), TestSpan(1, 2, parent=1)]))
    before = store.statistics()["bytes"]
    result = store.ingest(request([TestSpan(1, 2, parent=1)]))
    assert (result.accepted, result.duplicate, result.refused) == (0, 1, 0)
    assert store.statistics()["bytes"] == before
    assert store.statistics()["spansDuplicate"] == 1


def test_a_full_trace_drops_further_spans() -> None:
    store = TraceStore(BIG, max_spans_per_trace=3)
    result = store.ingest(request([TestSpan(1, n) for n in range(1, 6)] + [TestSpan(2, 1)]))
    assert (result.accepted, result.dropped, result.refused) == (4, 2, 2)
    assert result.problems == ["a trace holds at most 3 spans"]
    assert store.statistics()["spansDropped"] == 2


def test_a_span_ending_before_it_starts_lasts_zero() -> None:
    store = TraceStore(BIG)
    store.ingest(request([TestSpan(1, 1, start_ms=5, end_ms=2)]))
    trace = store.get(trace_id(1))
    assert trace is not None and trace.duration_ns == 0


def test_a_resource_without_service_name_is_unknown_service() -> None:
    req = request([TestSpan(1, 1)])
    del req.resource_spans[0].resource.attributes[:]
    store = TraceStore(BIG)
    store.ingest(req)
    assert store.services() == ["unknown_service"]


# -- search -----------------------------------------------------------------------------------


def shop() -> TraceStore:
    """Four traces: 1 fast and fine, 2 slow with a 503 deep down, 3 a 404, 4 rootless."""
    store = TraceStore(BIG)
    store.ingest(
        request(
            [
                TestSpan(1, 1, start_ms=0, end_ms=5, service="web", http_status=200),
                TestSpan(1, 2, parent=1, start_ms=1, end_ms=4, service="cart", http_status=200),
                TestSpan(2, 1, start_ms=10, end_ms=300, service="web", http_status=200),
                TestSpan(2, 2, parent=1, start_ms=11, end_ms=290, service="cart", http_status=503),
                TestSpan(3, 1, start_ms=20, end_ms=40, service="web", http_status=404),
                TestSpan(4, 5, parent=4, start_ms=30, end_ms=180, service="pay", error=True),
            ]
        )
    )
    return store


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (TraceQuery(), [4, 3, 2, 1]),  # newest start first
        (TraceQuery(limit=2), [4, 3]),
        (TraceQuery(service="cart"), [2, 1]),
        (TraceQuery(service="nobody"), []),
        (TraceQuery(status="5xx"), [2]),
        (TraceQuery(status="error"), [4, 2]),
        (TraceQuery(status="4xx"), [3]),
        (TraceQuery(status="2xx"), [2, 1]),
        (TraceQuery(min_duration_ns=100 * MS), [4, 2]),  # 4 has no root: its extent, 150 ms
        (TraceQuery(service="web", min_duration_ns=10 * MS), [3, 2]),
        (TraceQuery(service="web", status="error"), [2]),
    ],
)
def test_search(query: TraceQuery, expected: list[int]) -> None:
    found = shop().search(query)
    assert ids(found.traces) == expected


def test_search_by_time_and_what_matched_beyond_the_limit() -> None:
    store = shop()
    base = store.get(trace_id(1))
    assert base is not None
    t0 = base.start
    found = store.search(TraceQuery(since_ns=t0 + 10 * MS, until_ns=t0 + 25 * MS, limit=1))
    assert ids(found.traces) == [3]
    assert found.matched == 2


# -- the bound --------------------------------------------------------------------------------


def test_past_the_bound_the_oldest_traces_go_whole_and_the_newest_stay() -> None:
    sizing = TraceStore(BIG)
    sizing.ingest(request([TestSpan(1, 1), TestSpan(1, 2, parent=1)]))
    first = sizing.statistics()["bytes"]  # a trace and the resource its spans came with
    sizing.ingest(request([TestSpan(2, 1), TestSpan(2, 2, parent=1)]))
    per_trace = sizing.statistics()["bytes"] - first
    store = TraceStore(first + per_trace * 4 + per_trace // 2)  # room for five such traces
    for n in range(1, 21):
        store.ingest(request([TestSpan(n, 1), TestSpan(n, 2, parent=1)]))
        assert store.statistics()["bytes"] <= store.max_bytes
    stats = store.statistics()
    assert stats["traces"] == 5
    assert (stats["tracesEvicted"], stats["spansEvicted"]) == (15, 30)
    assert ids(store.search(TraceQuery()).traces) == [20, 19, 18, 17, 16]
    assert store.get(trace_id(15)) is None
    evicted = store.search(TraceQuery(service="svc", limit=1000))
    assert ids(evicted.traces) == [20, 19, 18, 17, 16]  # the service index forgot them too


def test_a_trace_larger_than_the_store_does_not_stay() -> None:
    store = TraceStore(3000)
    result = store.ingest(request([TestSpan(1, n) for n in range(1, 30)]))
    assert result.accepted == 29  # accepted, then evicted: it could not fit
    stats = store.statistics()
    assert stats["bytes"] <= 3000
    assert stats["tracesEvicted"] >= 1


def recount(store: TraceStore) -> int:
    """The charge, computed again from what the store holds."""
    traces = [t for t in store._traces.values()]
    origins = {id(s.origin): s.origin for t in traces for s in t.spans.values()}
    return sum(t.cost for t in traces) + sum(o.cost for o in origins.values())


SERVICES = ("web", "cart", "pay")
STATUSES = (None, 200, 302, 404, 503)


@st.composite
def batches(draw: st.DrawFn) -> list[list[TestSpan]]:
    """Batches of spans of up to 12 traces: each trace a random tree, its spans spread over
    the batches in a random order (so children often come before their parents)."""
    rnd = draw(st.randoms(use_true_random=False))
    spans: list[TestSpan] = []
    for t in range(1, draw(st.integers(1, 12)) + 1):
        n = draw(st.integers(1, 8))
        for s in range(1, n + 1):
            start = draw(st.integers(0, 1000))
            spans.append(
                TestSpan(
                    t,
                    s,
                    parent=None if s == 1 else rnd.randint(1, s - 1),
                    start_ms=start,
                    end_ms=start + draw(st.integers(0, 500)),
                    service=rnd.choice(SERVICES),
                    http_status=rnd.choice(STATUSES),
                    error=rnd.random() < 0.1,
                )
            )
    rnd.shuffle(spans)
    cuts = sorted(rnd.sample(range(len(spans) + 1), min(len(spans) + 1, draw(st.integers(1, 6)))))
    return [spans[a:b] for a, b in zip([0, *cuts], [*cuts, len(spans)], strict=True) if b > a]


def ingest_order(batch: list[TestSpan]) -> list[TestSpan]:
    """The order `request(batch)` puts the spans in: grouped by service, as first seen."""
    services = list(dict.fromkeys(s.service for s in batch))
    return [s for service in services for s in batch if s.service == service]


@settings(max_examples=200)
@given(batches(), st.integers(2_000, 40_000), st.randoms(use_true_random=False))
def test_any_arrival_into_a_small_store(
    sent: list[list[TestSpan]], bound: int, rnd: random.Random
) -> None:
    store = TraceStore(bound)
    for batch in sent:
        store.ingest(request(batch))
        assert store.statistics()["bytes"] <= bound
        assert store.statistics()["bytes"] == recount(store)
    sent_spans = [s for batch in sent for s in ingest_order(batch)]
    for trace in store._arrival:
        t = int.from_bytes(trace.trace_id, "big")
        assert store.get(trace.trace_id) is trace and trace.live
        # it holds every span of its trace sent since its record was made: a suffix
        mine = [s.span for s in sent_spans if s.trace == t]
        got = [int.from_bytes(k, "big") for k in trace.spans]
        assert got == mine[len(mine) - len(got) :]
    stats = store.statistics()
    assert stats["spans"] == sum(len(t.spans) for t in store._traces.values())
    assert stats["spansAccepted"] == len(sent_spans) == stats["spans"] + stats["spansEvicted"]
    # every search answers what a scan of the kept traces answers
    for _ in range(5):
        query = TraceQuery(
            service=rnd.choice((None, *SERVICES)),
            status=rnd.choice((None, *STATUS_CLASSES)),
            min_duration_ns=rnd.choice((0, 100 * MS, 400 * MS)),
            limit=rnd.randint(1, 20),
        )
        scan = [t for t in store._traces.values() if query.matches(t)]
        expected = sorted(scan, key=lambda t: (t.start, t.trace_id), reverse=True)[: query.limit]
        found = store.search(query)
        assert found.traces == expected
        assert found.matched == len(scan)


@settings(max_examples=100)
@given(batches(), st.integers(2_000, 20_000))
def test_eviction_takes_the_trace_that_arrived_first(
    sent: list[list[TestSpan]], bound: int
) -> None:
    """Span by span: a span of a trace the store holds joins it; any other starts a record;
    the records evicted are always the oldest ones, whole."""
    store = TraceStore(bound)
    live: list[int] = []  # trace numbers of the records held, oldest first
    for s in (s for batch in sent for s in batch):
        known = store.get(trace_id(s.trace)) is not None
        store.ingest(request([s]))
        if not known:
            live.append(s.trace)
        now = ids(store._arrival)
        assert now == live[len(live) - len(now) :]  # what went is the oldest
        live = now
        for t in live:
            trace = store.get(trace_id(t))
            assert trace is not None
            assert set(trace.services) == {o.origin.service for o in trace.spans.values()}
