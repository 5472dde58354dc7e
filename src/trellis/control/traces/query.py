"""Searching the trace store: `TraceQuery`, and the text forms its parameters come in.

- `service`: a resource `service.name` one of the trace's spans came from;
- `status`: a status class one of its spans has: `1xx`..`5xx` (HTTP response status)
  or `error` (span status ERROR, or 5xx);
- `min_duration`: the root span's duration, or the trace's extent while the root is
  missing, at least this (`100ms`, `1.5s`, `250us`, `1m30s`);
- `since` / `until`: the trace started at or after / at or before: an RFC 3339 time,
  or for `since` a duration back from now (`15m`);
- `limit`: how many to answer, newest start first.
Pure: parsing raises `BadQuery` naming the parameter; `matches` reads a TraceRecord.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Final

from trellis.control.traces.records import STATUS_CLASSES, TraceRecord, class_bit

DEFAULT_LIMIT: Final = 20
MAX_LIMIT: Final = 1000

_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_DURATION = re.compile(r"^(?:[0-9]{1,9}(?:\.[0-9]{1,9})?(?:ns|us|µs|ms|s|m|h))+$")
_PART = re.compile(r"([0-9]{1,9}(?:\.[0-9]{1,9})?)(ns|us|µs|ms|s|m|h)")
_HEX = re.compile(r"^[0-9a-fA-F]+$")
_BITS: Final = {name: class_bit(name) for name in STATUS_CLASSES}


class BadQuery(ValueError):
    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(f"{parameter}: {reason}")
        self.parameter = parameter
        self.reason = reason


def parse_duration_ns(text: str) -> int:
    """Nanoseconds in `100ms`, `1.5s`, `250us`, `1m30s` (Go's spelling; `0` is 0)."""
    text = text.strip()
    if text == "0":
        return 0
    if not _DURATION.match(text):
        raise ValueError(f"{text!r} is not a duration such as 100ms, 1.5s, 250us or 1m30s")
    total = 0
    for number, unit in _PART.findall(text):
        whole, _, fraction = number.partition(".")
        scale = _UNIT_NS[unit]
        total += int(whole) * scale + int(fraction or "0") * scale // 10 ** len(fraction)
    return total


def parse_time_ns(text: str) -> int:
    """Nanoseconds since the epoch of an RFC 3339 time (`2026-12-06T10:00:00Z`)."""
    try:
        when = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an RFC 3339 time such as 2026-12-06T10:00:00Z") from None
    if when.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone (add Z for UTC)")
    epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    delta = when - epoch
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def parse_trace_id(text: str) -> bytes:
    """A trace id from 32 hex digits, or 16 (a 64-bit B3 id, zero-padded as OpenTelemetry
    does); ValueError otherwise, and for the all-zero id."""
    if len(text) not in (16, 32) or not _HEX.match(text):
        raise ValueError(f"{text!r} is not a trace id (32 hex digits, or 16 for a 64-bit id)")
    trace_id = bytes.fromhex(text.rjust(32, "0"))
    if not any(trace_id):
        raise ValueError("the all-zero trace id is invalid")
    return trace_id


@dataclass(frozen=True, slots=True)
class TraceQuery:
    service: str | None = None
    status: str | None = None  # one of records.STATUS_CLASSES
    min_duration_ns: int = 0
    since_ns: int | None = None
    until_ns: int | None = None
    limit: int = DEFAULT_LIMIT

    @property
    def filters(self) -> bool:
        """Whether it filters at all (else every trace matches)."""
        return (
            self.service is not None
            or self.status is not None
            or self.min_duration_ns > 0
            or self.since_ns is not None
            or self.until_ns is not None
        )

    def matches(self, trace: TraceRecord) -> bool:
        if self.service is not None and self.service not in trace.services:
            return False
        if self.status is not None and not trace.bits & _BITS[self.status]:
            return False
        if self.min_duration_ns and trace.duration_ns < self.min_duration_ns:
            return False
        if self.since_ns is not None and trace.start < self.since_ns:
            return False
        return self.until_ns is None or trace.start <= self.until_ns

    @classmethod
    def parse(
        cls,
        *,
        now_ns: int,
        service: str | None = None,
        status: str | None = None,
        min_duration: str | None = None,
        since: str | None = None,
        until: str | None = None,
        limit: int | None = None,
    ) -> TraceQuery:
        """From the API's query parameters (None or "" when absent); BadQuery names the one
        that is wrong."""
        status_class = None
        if status:
            status_class = status.strip().lower()
            if status_class not in STATUS_CLASSES:
                raise BadQuery("status", f"{status!r} is not one of {', '.join(STATUS_CLASSES)}")
        min_ns = 0
        if min_duration:
            try:
                min_ns = parse_duration_ns(min_duration)
            except ValueError as e:
                raise BadQuery("minDuration", str(e)) from None
        since_ns = None
        if since:
            try:
                since_ns = now_ns - parse_duration_ns(since)
            except ValueError:
                try:
                    since_ns = parse_time_ns(since)
                except ValueError as e:
                    raise BadQuery("since", f"{e}, or a duration back from now (15m)") from None
        until_ns = None
        if until:
            try:
                until_ns = parse_time_ns(until)
            except ValueError as e:
                raise BadQuery("until", str(e)) from None
        if limit is None:
            limit = DEFAULT_LIMIT
        if not 1 <= limit <= MAX_LIMIT:
            raise BadQuery("limit", f"{limit} is not between 1 and {MAX_LIMIT}")
        return cls(service or None, status_class, min_ns, since_ns, until_ns, limit)
