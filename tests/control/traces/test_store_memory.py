"""The trace store's charge against the memory it really holds (tracemalloc).

The store charges each object a measured overhead plus the bytes it keeps
(trellis.control.traces.records). Here, for traces of different shapes, what
tracemalloc sees allocated by the store stays under the charge (the bound is a real
bound) and not far under it (the bound is not a fiction either); and a small store fed
several times its bound holds no more than the bound: eviction frees what it charged.
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

import pytest
from tests.control.traces.otlp_spans import sidecar_batch as batch

from trellis.control.traces.store import TraceStore


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
