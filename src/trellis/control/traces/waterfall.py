"""The waterfall of one trace: its spans as a tree, with offsets, self times and the slow span.

Pure: works on `WaterfallSpan`s (ids, parent id, start and end in nanoseconds) and
knows neither protobuf, JSON nor the store. The API serves each span with its row
(`views.trace_json`), so the dashboard draws what `trellis trace` prints.

The rules:
- **Tree.** A span's parent is the span of the trace whose id is its parent id.
  Roots (no parent id) and orphans (a parent id that is not in the trace: not
  received yet, evicted, or never exported) start the tree at depth 0. Siblings,
  and the tops of the tree, are ordered by start, then by span id (a stable order).
  Spans caught in a parent cycle (corrupt input: A's parent is B, B's is A) are
  reached from no top; each cycle is broken at its earliest span, shown as an orphan
  after the other tops.
  Duplicate span ids: the first one given is the parent the others' children see.
- **Offsets** are from the trace's start, the earliest start of any span; the
  trace's extent runs from there to the latest end.
- **Duration** is end - start, 0 for a span that ends before it starts.
- **Self time** is the span's duration minus the time the children drawn under it
  cover (the union of their intervals, clipped to the span): time spent in the span
  itself.
- **The slow span** is the one with the largest self time: where the trace's time
  went (the root's duration is always the largest and says nothing). Ties go to
  the earlier row; a trace of zero-length spans has none.
Every step is iterative (a chain of 10,000 spans does not recurse) and O(n log n).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class WaterfallSpan:
    span_id: bytes
    parent_id: bytes  # b"" for a root
    start_ns: int
    end_ns: int

    @property
    def duration_ns(self) -> int:
        return max(0, self.end_ns - self.start_ns)


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the waterfall: `span` indexes the spans given to `build`."""

    span: int
    depth: int
    offset_ns: int
    duration_ns: int
    self_ns: int
    orphan: bool  # a parent id that is not in the trace (or a broken cycle)


@dataclass(frozen=True, slots=True)
class Waterfall:
    rows: tuple[Row, ...]  # depth-first, parents before their children
    start_ns: int  # the earliest start (0 for no spans)
    duration_ns: int  # the trace's extent: latest end - earliest start
    slowest: int | None  # the span (index into the input) with the largest self time

    def row_of(self, span: int) -> Row:
        for row in self.rows:
            if row.span == span:
                return row
        raise KeyError(span)


def build(spans: Sequence[WaterfallSpan]) -> Waterfall:
    """The waterfall of `spans` (one trace, any order); see the module docstring."""
    if not spans:
        return Waterfall((), 0, 0, None)
    start = min(s.start_ns for s in spans)
    extent = max(max(s.end_ns, s.start_ns) for s in spans) - start

    first_by_id: dict[bytes, int] = {}
    for i, s in enumerate(spans):
        first_by_id.setdefault(s.span_id, i)
    children: dict[int, list[int]] = {}
    tops: list[int] = []
    orphan = [False] * len(spans)
    for i, s in enumerate(spans):
        parent = first_by_id.get(s.parent_id) if s.parent_id else None
        if parent is None or parent == i:
            tops.append(i)
            orphan[i] = bool(s.parent_id)
        else:
            children.setdefault(parent, []).append(i)

    def order(i: int) -> tuple[int, bytes, int]:
        return (spans[i].start_ns, spans[i].span_id, i)

    for kids in children.values():
        kids.sort(key=order)
    tops.sort(key=order)

    placed = [False] * len(spans)
    depth_of = [0] * len(spans)
    shown_under: dict[int, list[int]] = {}  # the children each span is drawn with
    sequence: list[int] = []

    def walk(top: int) -> None:
        stack = [(top, 0, -1)]
        while stack:
            i, depth, parent = stack.pop()
            if placed[i]:
                continue
            placed[i] = True
            depth_of[i] = depth
            sequence.append(i)
            if parent >= 0:
                shown_under.setdefault(parent, []).append(i)
            stack.extend((c, depth + 1, i) for c in reversed(children.get(i, ())))

    for top in tops:
        walk(top)
    if len(sequence) < len(spans):  # parent cycles: reached from no top
        for i in sorted((i for i in range(len(spans)) if not placed[i]), key=order):
            if not placed[i]:
                orphan[i] = True
                walk(i)

    rows: list[Row] = []
    slowest: int | None = None
    slowest_self = 0
    for i in sequence:
        s = spans[i]
        self_ns = _self_time(s, [spans[c] for c in shown_under.get(i, ())])
        rows.append(Row(i, depth_of[i], s.start_ns - start, s.duration_ns, self_ns, orphan[i]))
        if self_ns > slowest_self:
            slowest, slowest_self = i, self_ns
    return Waterfall(tuple(rows), start, extent, slowest)


def _self_time(span: WaterfallSpan, kids: Sequence[WaterfallSpan]) -> int:
    """`span`'s duration less the union of its children's intervals within it."""
    low, high = span.start_ns, span.start_ns + span.duration_ns
    intervals = sorted(
        (max(low, k.start_ns), min(high, k.end_ns)) for k in kids if k.end_ns > k.start_ns
    )
    covered = 0
    cursor = low
    for a, b in intervals:
        a = max(a, cursor)
        if b > a:
            covered += b - a
            cursor = b
    return high - low - covered
