"""Parsing the trace search's parameters (trellis.control.traces.query)."""

from __future__ import annotations

import pytest

from trellis.control.traces.query import (
    MAX_LIMIT,
    BadQuery,
    TraceQuery,
    parse_duration_ns,
    parse_time_ns,
    parse_trace_id,
)

NOW = 1_800_000_000_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("100ms", 100_000_000),
        ("1.5s", 1_500_000_000),
        ("250us", 250_000),
        ("250µs", 250_000),
        ("7ns", 7),
        ("1m30s", 90_000_000_000),
        ("2h", 7_200_000_000_000),
        ("0.001ms", 1_000),
        ("0.123456789s", 123_456_789),
    ],
)
def test_durations(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


@pytest.mark.parametrize(
    "text", ["", "100", "ms", "1.s", "-1s", "1d", "1e3ms", "1 s", "1234567890s"]
)
def test_not_durations(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration_ns(text)


def test_times() -> None:
    assert parse_time_ns("1970-01-01T00:00:01.5Z") == 1_500_000_000
    assert parse_time_ns("2027-01-15T08:00:00Z") == NOW
    assert parse_time_ns("2027-01-15T09:00:00+01:00") == NOW
    with pytest.raises(ValueError, match="no time zone"):
        parse_time_ns("2027-01-15T08:00:00")
    with pytest.raises(ValueError, match="RFC 3339"):
        parse_time_ns("yesterday")


def test_trace_ids() -> None:
    assert parse_trace_id("0af7651916cd43dd8448eb211c80319c") == bytes.fromhex(
        "0af7651916cd43dd8448eb211c80319c"
    )
    assert parse_trace_id("8448EB211C80319C") == bytes(8) + bytes.fromhex("8448eb211c80319c")
    for bad in ("", "xyz", "0af7651916cd43dd8448eb211c80319", "g" * 32, "0" * 32):
        with pytest.raises(ValueError):
            parse_trace_id(bad)


def test_parse_a_whole_query() -> None:
    query = TraceQuery.parse(
        now_ns=NOW,
        service="reviews",
        status="5XX",
        min_duration="100ms",
        since="15m",
        until="2027-01-15T08:00:00Z",
        limit=5,
    )
    assert query == TraceQuery("reviews", "5xx", 100_000_000, NOW - 900_000_000_000, NOW, 5)
    assert TraceQuery.parse(now_ns=NOW, since="2027-01-15T07:00:00Z").since_ns == NOW - 3600 * 10**9
    assert TraceQuery.parse(now_ns=NOW, service="", status="") == TraceQuery()


@pytest.mark.parametrize(
    ("given", "parameter"),
    [
        ({"status": "teapot"}, "status"),
        ({"min_duration": "soon"}, "minDuration"),
        ({"since": "then"}, "since"),
        ({"until": "15m"}, "until"),
        ({"limit": 0}, "limit"),
        ({"limit": MAX_LIMIT + 1}, "limit"),
    ],
)
def test_bad_parameters_are_named(given: dict[str, object], parameter: str) -> None:
    with pytest.raises(BadQuery) as info:
        TraceQuery.parse(now_ns=NOW, **given)  # type: ignore[arg-type]
    assert info.value.parameter == parameter
