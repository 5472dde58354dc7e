"""The waterfall (trellis.control.traces.waterfall): tree, offsets, self times, the slow span.

Examples first, then properties over random span trees (hypothesis) with parents left
out (orphans), spans given in any order, cycles, and a chain too deep to recurse.
"""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from trellis.control.traces.waterfall import Waterfall, WaterfallSpan, build


def sid(n: int) -> bytes:
    return n.to_bytes(8, "big")


def span(n: int, parent: int | None, start: int, end: int) -> WaterfallSpan:
    return WaterfallSpan(sid(n), sid(parent) if parent is not None else b"", start, end)


def rows_by_id(
    fall: Waterfall, spans: list[WaterfallSpan]
) -> list[tuple[int, int, int, int, int, bool]]:
    """(span number, depth, offset, duration, self, orphan) in row order."""
    return [
        (
            int.from_bytes(spans[r.span].span_id, "big"),
            r.depth,
            r.offset_ns,
            r.duration_ns,
            r.self_ns,
            r.orphan,
        )
        for r in fall.rows
    ]


def test_a_request_through_three_services() -> None:
    # 1 frontend [100, 200): 2 calls reviews [110, 150): 3 reviews server [112, 148):
    # 4 calls ratings [115, 140); then 5 calls details [160, 170). 9's parent never came.
    spans = [
        span(4, 3, 115, 140),
        span(1, None, 100, 200),
        span(3, 2, 112, 148),
        span(5, 1, 160, 170),
        span(2, 1, 110, 150),
        span(9, 77, 105, 108),
    ]
    fall = build(spans)
    assert fall.start_ns == 100
    assert fall.duration_ns == 100
    assert rows_by_id(fall, spans) == [
        (1, 0, 0, 100, 100 - 40 - 10, False),
        (2, 1, 10, 40, 40 - 36, False),
        (3, 2, 12, 36, 36 - 25, False),
        (4, 3, 15, 25, 25, False),
        (5, 1, 60, 10, 10, False),
        (9, 0, 5, 3, 3, True),  # an orphan: at the top, after the root (it starts later)
    ]
    # the frontend's own 50 ns are where the time went
    assert spans[fall.slowest or 0].span_id == sid(1)


def test_overlapping_children_count_once_and_are_clipped_to_their_parent() -> None:
    spans = [
        span(1, None, 0, 100),
        span(2, 1, 10, 60),
        span(3, 1, 40, 80),  # overlaps 2: together they cover [10, 80)
        span(4, 1, 90, 130),  # runs past the parent's end: only [90, 100) counts
    ]
    fall = build(spans)
    assert fall.row_of(0).self_ns == 100 - 70 - 10
    assert fall.duration_ns == 130
    assert spans[fall.slowest or 0].span_id == sid(2)  # 50 of its own


def test_a_span_ending_before_it_starts_lasts_zero() -> None:
    fall = build([span(1, None, 50, 40)])
    assert fall.rows[0].duration_ns == 0
    assert fall.slowest is None
    assert fall.duration_ns == 0


def test_no_spans() -> None:
    assert build([]) == Waterfall((), 0, 0, None)


def test_cycles_and_self_parents_are_broken_into_orphans() -> None:
    spans = [
        span(1, 2, 10, 20),
        span(2, 1, 0, 30),  # 1 <-> 2: a cycle, broken at 2 (the earlier), after the tops
        span(3, 3, 5, 6),  # its own parent
        span(4, 1, 12, 15),  # under the cycle
    ]
    fall = build(spans)
    assert rows_by_id(fall, spans) == [
        (3, 0, 5, 1, 1, True),
        (2, 0, 0, 30, 20, True),
        (1, 1, 10, 10, 7, False),
        (4, 2, 12, 3, 3, False),
    ]
    assert sorted(r.span for r in fall.rows) == [0, 1, 2, 3]


def test_a_chain_deeper_than_the_recursion_limit() -> None:
    n = 10_000
    spans = [span(i, i - 1 if i else None, i, 2 * n - i) for i in range(n)]
    fall = build(spans[::-1])
    assert [r.depth for r in fall.rows] == list(range(n))


def test_duplicate_span_ids_keep_every_span() -> None:
    spans = [span(1, None, 0, 10), span(1, None, 1, 5), span(2, 1, 2, 3)]
    fall = build(spans)
    assert sorted(r.span for r in fall.rows) == [0, 1, 2]
    assert fall.row_of(2).depth == 1


# -- properties over random trees ------------------------------------------------------------


@st.composite
def traces(draw: st.DrawFn) -> tuple[list[WaterfallSpan], set[int]]:
    """A random tree of spans (children within their parents, or not), some spans removed
    (their children become orphans); returns the spans and the removed span numbers."""
    n = draw(st.integers(1, 40))
    parents: list[int | None] = [None]
    for i in range(1, n):
        parents.append(draw(st.one_of(st.none(), st.integers(0, i - 1))) if i > 1 else 0)
    times = draw(
        st.lists(st.tuples(st.integers(0, 1000), st.integers(0, 300)), min_size=n, max_size=n)
    )
    removed = set(draw(st.lists(st.integers(0, n - 1), max_size=n // 3)))
    spans = [
        span(i + 1, (parents[i] + 1) if parents[i] is not None else None, start, start + length)
        for i, (start, length) in enumerate(times)
        if i not in removed
    ]
    if not spans:
        spans = [span(1, None, 0, 1)]
        removed = set()
    return spans, {i + 1 for i in removed}


@given(traces(), st.randoms(use_true_random=False))
def test_the_tree_of_any_trace(
    trace: tuple[list[WaterfallSpan], set[int]], rnd: random.Random
) -> None:
    spans, _ = trace
    rnd.shuffle(spans)
    fall = build(spans)
    present = {s.span_id for s in spans}
    # every span once
    assert sorted(r.span for r in fall.rows) == list(range(len(spans)))
    position = {r.span: i for i, r in enumerate(fall.rows)}
    first_of = {}
    for i, s in enumerate(spans):
        first_of.setdefault(s.span_id, i)
    start = min(s.start_ns for s in spans)
    assert fall.start_ns == start
    assert fall.duration_ns == max(max(s.end_ns, s.start_ns) for s in spans) - start
    for r in fall.rows:
        s = spans[r.span]
        assert r.offset_ns == s.start_ns - start
        assert r.duration_ns == max(0, s.end_ns - s.start_ns)
        assert 0 <= r.self_ns <= r.duration_ns
        if not s.parent_id:
            assert r.depth == 0 and not r.orphan
        elif s.parent_id not in present:
            assert r.depth == 0 and r.orphan  # its parent is missing: shown at the top
        else:  # its parent comes before it, one level up
            parent = fall.rows[position[first_of[s.parent_id]]]
            assert position[parent.span] < position[r.span]
            assert r.depth == parent.depth + 1
    if fall.slowest is None:
        assert all(r.self_ns == 0 for r in fall.rows)
    else:
        assert fall.row_of(fall.slowest).self_ns == max(r.self_ns for r in fall.rows)


@given(traces(), st.randoms(use_true_random=False))
def test_the_order_of_arrival_does_not_matter(
    trace: tuple[list[WaterfallSpan], set[int]], rnd: random.Random
) -> None:
    spans, _ = trace
    shuffled = spans[:]
    rnd.shuffle(shuffled)
    a, b = build(spans), build(shuffled)

    def seen(
        fall: Waterfall, given: list[WaterfallSpan]
    ) -> list[tuple[bytes, int, int, int, bool]]:
        return [
            (given[r.span].span_id, r.depth, r.offset_ns, r.self_ns, r.orphan) for r in fall.rows
        ]

    assert seen(a, spans) == seen(b, shuffled)
    slow_a = spans[a.slowest].span_id if a.slowest is not None else None
    slow_b = shuffled[b.slowest].span_id if b.slowest is not None else None
    assert slow_a == slow_b


@st.composite
def nested_trees(draw: st.DrawFn) -> list[WaterfallSpan]:
    """One root; every child inside its parent, siblings one after the other."""
    n = draw(st.integers(1, 40))
    parents = [None, *(draw(st.integers(0, i - 1)) for i in range(1, n))]
    kids: dict[int, list[int]] = {}
    for i, p in enumerate(parents):
        if p is not None:
            kids.setdefault(p, []).append(i)
    times = {0: (0, 10**9)}
    for i in range(n):  # parents come before their children
        start, end = times[i]
        mine = kids.get(i, [])
        width = (end - start) // (len(mine) + 1)
        for j, k in enumerate(mine):
            gap = draw(st.integers(0, width // 2))
            times[k] = (start + j * width + gap, start + (j + 1) * width)
    return [span(i + 1, p + 1 if p is not None else None, *times[i]) for i, p in enumerate(parents)]


@given(nested_trees(), st.randoms(use_true_random=False))
def test_self_times_add_up_to_the_root(spans: list[WaterfallSpan], rnd: random.Random) -> None:
    """Children within their parents, siblings apart: the self times share out the root's
    duration, nothing counted twice or lost."""
    rnd.shuffle(spans)
    fall = build(spans)
    assert sum(r.self_ns for r in fall.rows) == fall.duration_ns == 10**9
