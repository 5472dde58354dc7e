"""Drawing traces as text (trellis.cli.trace_text): durations, bars, the tree's labels."""

from __future__ import annotations

import pytest

from trellis.cli.trace_text import bar, duration_text, span_label, span_status, start_text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0ns"),
        (850, "850ns"),
        (12_500, "12.5µs"),
        (3_270_000, "3.27ms"),
        (60_000_000, "60ms"),
        (250_400_000, "250ms"),
        (1_500_000_000, "1.50s"),
        (125_000_000_000, "2m05s"),
    ],
)
def test_durations(ns: int, text: str) -> None:
    assert duration_text(ns) == text


def test_bars_are_proportional_and_never_empty() -> None:
    assert bar(0, 100, 100, 10) == "|██████████|"
    assert bar(50, 25, 100, 10) == "|     ███  |"  # cells 5 to ceil(7.5)
    assert bar(99, 0, 100, 10) == "|         █|"  # too short to see: one cell
    assert bar(100, 0, 100, 10) == "|         █|"  # at the very end: still inside
    assert bar(0, 0, 0, 4) == "|████|"  # a trace of one instant


def test_labels_and_statuses() -> None:
    span = {"depth": 2, "name": "GET /x", "kind": "CLIENT", "orphan": False}
    assert span_label(span) == "    └ GET /x [client]"
    orphan = {"depth": 0, "name": "late", "kind": "SERVER", "orphan": True, "parentSpanId": "0a"}
    assert span_label(orphan) == "late [server] (orphan: parent 0a not received)"
    assert (
        span_status({"attributes": {"http.status_code": 404}, "status": {"code": "UNSET"}}) == "404"
    )
    assert span_status({"attributes": {}, "status": {"code": "ERROR"}}) == "ERROR"
    assert span_status({"attributes": {}, "status": {"code": "OK"}}) == "-"


def test_start_times_to_the_millisecond() -> None:
    assert start_text("2026-12-06T20:18:51.089798Z") == "2026-12-06 20:18:51.089Z"
