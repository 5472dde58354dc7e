"""Taps in the proxy: which finished exchanges become events, how many, and their batches.

The recorder holds one callable, `Recorder.tap`: None while no tap is active (the cost per
request is that one check), `ProxyTaps.offer` while one is. `offer` runs per finished
exchange on the event loop: for each active tap it checks direction, destination and
filters, then the tap's rate (at most `max_events_per_second` per tap, over a one-second
window; the rest are counted as dropped and reported in the next batch), and appends
an event to the tap's pending batch (bounded by that rate). The stream client calls
`batches()` a few times a second and sends what it returns.

Header values are redacted except ALLOWED_HEADERS (what identifies a request without
carrying credentials or personal data); at most MAX_HEADERS names are listed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

from trellis.proxy.live.signals_source import (
    SECURITY,
    SOURCE_NAMESPACE,
    SOURCE_SERVICE,
    destination_of,
    service_name,
)
from trellis.telemetry_api import telemetry_pb2 as pb

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange

ALLOWED_HEADERS: Final = frozenset(
    {"accept", "content-length", "content-type", "user-agent", "x-request-id", "traceparent"}
)
REDACTED: Final = "<redacted>"
MAX_HEADERS: Final = 32
MAX_VALUE_CHARS: Final = 256
MAX_PER_SECOND: Final = 1000  # what a TapStart may ask for, at most
UNKNOWN: Final = "unknown"


def trace_id(head: Any) -> str:
    """The trace id of W3C `traceparent` or B3, else ""."""
    parent = head.get("traceparent")
    if parent:
        parts = parent.split("-")
        if len(parts) >= 4 and len(parts[1]) == 32:
            return str(parts[1]).lower()
    b3 = head.get("x-b3-traceid")
    if b3 and len(b3) in (16, 32):
        return str(b3).lower()
    single = head.get("b3")
    if single:
        first = single.split("-")[0]
        if len(first) in (16, 32):
            return str(first).lower()
    return ""


class Tap:
    __slots__ = (
        "deadline",
        "dropped",
        "events",
        "id",
        "inbound",
        "max_per_second",
        "method",
        "outbound",
        "path_prefix",
        "service",
        "status_class",
        "window_count",
        "window_start",
    )

    def __init__(self, start: pb.TapStart, now: float) -> None:
        self.id = start.tap_id
        self.service = start.service
        self.inbound = start.inbound
        self.outbound = start.outbound
        self.path_prefix = start.path_prefix
        self.method = start.method.upper()
        self.status_class = start.status_class
        self.max_per_second = max(1, min(MAX_PER_SECOND, start.max_events_per_second or 100))
        self.deadline = now + (start.duration_ms or 60_000) / 1000.0
        self.events: list[pb.TapEvent] = []
        self.dropped = 0
        self.window_start = 0.0
        self.window_count = 0

    def matches(self, ex: Exchange, status: int) -> bool:
        head = ex.head
        if self.path_prefix and not head.path.startswith(self.path_prefix):
            return False
        if self.method and head.method != self.method:
            return False
        return not (self.status_class and status // 100 != self.status_class)

    def admit(self, now: float) -> bool:
        if now - self.window_start >= 1.0:
            self.window_start = now
            self.window_count = 0
        if self.window_count >= self.max_per_second:
            self.dropped += 1
            return False
        self.window_count += 1
        return True


class ProxyTaps:
    """The active taps of one proxy; installs `offer` into the recorder while any is active."""

    def __init__(self, service: str, workload: str, install: Callable[[Any], None]) -> None:
        self.service = service
        self.workload = workload
        self._install = install  # sets Recorder.tap (None or self.offer)
        self._taps: dict[str, Tap] = {}
        self.events_total = 0
        self.dropped_total = 0

    @property
    def active(self) -> int:
        return len(self._taps)

    def start(self, start: pb.TapStart) -> None:
        if not start.tap_id or not start.service:
            return
        self._taps[start.tap_id] = Tap(start, time.monotonic())
        self._install(self.offer)

    def stop(self, tap_id: str) -> None:
        self._taps.pop(tap_id, None)
        if not self._taps:
            self._install(None)

    def stop_all(self) -> None:
        self._taps.clear()
        self._install(None)

    def offer(self, ex: Exchange, direction: str, labels: tuple[str, ...], duration: float) -> None:
        """Per finished exchange while a tap is active (called by the recorder)."""
        status = ex.status
        now = time.monotonic()
        event: pb.TapEvent | None = None
        for tap in self._taps.values():
            if direction == "inbound":
                if not tap.inbound:
                    continue
                source, destination = (
                    service_name(labels[SOURCE_SERVICE], labels[SOURCE_NAMESPACE]),
                    self.service,
                )
            else:
                if not tap.outbound:
                    continue
                source, destination = (
                    self.service,
                    destination_of(labels),  # named as the golden signals name it
                )
                if destination != tap.service:
                    continue
            if not tap.matches(ex, status) or now > tap.deadline:
                continue
            if len(tap.events) >= 2 * tap.max_per_second:
                # The stream has not taken the last batches (a slow or stalled control
                # plane): a batch never grows past two seconds' worth.
                tap.dropped += 1
                self.dropped_total += 1
                continue
            if not tap.admit(now):
                self.dropped_total += 1
                continue
            if event is None:
                event = self._event(ex, direction, source, destination, labels, duration)
            tap.events.append(event)
            self.events_total += 1

    def _event(
        self,
        ex: Exchange,
        direction: str,
        source: str,
        destination: str,
        labels: tuple[str, ...],
        duration: float,
    ) -> pb.TapEvent:
        head = ex.head
        headers: dict[str, str] = {}
        for name, value in head.headers[:MAX_HEADERS]:
            key = name.decode("latin-1").lower()
            if key in ALLOWED_HEADERS:
                headers[key] = value.decode("latin-1")[:MAX_VALUE_CHARS]
            elif key not in headers:
                headers[key] = REDACTED
        return pb.TapEvent(
            time=time.time(),
            direction=direction,
            source=source,
            destination=destination,
            method=head.method,
            authority=head.authority[:MAX_VALUE_CHARS],
            path=head.path[:2048],
            status=ex.status,
            latency_ms=duration * 1000.0,
            flags=",".join(ex.flags) or "-",
            route=ex.route.name if ex.route is not None else "",
            # This hop's ids when the sidecar traces (it may have started the trace or
            # drawn the request id), else what the request carried.
            trace_id=ex.trace.trace_id if ex.trace is not None else trace_id(head),
            request_id=(
                ex.trace.request_id
                if ex.trace is not None
                else (head.get("x-request-id") or "")[:MAX_VALUE_CHARS]
            ),
            headers=headers,
            mtls=labels[SECURITY] == "mutual_tls",
            workload=self.workload,
        )

    def batches(self) -> list[pb.TapEvents]:
        """The pending events and drop counts of each tap (emptied); taps past their
        deadline end here."""
        now = time.monotonic()
        out = []
        for tap in list(self._taps.values()):
            if tap.events or tap.dropped:
                out.append(pb.TapEvents(tap_id=tap.id, events=tap.events, dropped=tap.dropped))
                tap.events = []
                tap.dropped = 0
            if now > tap.deadline:
                self.stop(tap.id)
        return out

    def statistics(self) -> dict[str, int]:
        return {"active": self.active, "events": self.events_total, "dropped": self.dropped_total}
