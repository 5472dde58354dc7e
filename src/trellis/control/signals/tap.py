"""Tap sessions: a filter fanned out to the proxies, their events fanned in for one API client.

A session taps the requests *to* one service, at both ends:
- the service's own proxies tap their inbound side (`inbound`), and
- every other connected proxy taps its calls to that service (`outbound`): any proxy may
  be a caller, and one that connects while the session runs is told too.
So a call between two meshed proxies shows twice, once per side (`direction` says which).

Bounds: at most MAX_SESSIONS sessions; each proxy sends at most `max_events_per_second`
per tap (it counts what it drops and says so in its next batch); the hub takes at most
`max_total_per_second` per session across proxies and holds at most QUEUE_EVENTS waiting
for the client (more are dropped and counted); a batch over MAX_BATCH_EVENTS is cut.
The session ends when its duration ends, its limit is reached, or its client goes
away; then every proxy is told TapStop.
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final

from trellis.telemetry_api import telemetry_pb2 as pb

if TYPE_CHECKING:
    from trellis.control.signals.stream import ProxyConnection, TelemetryHub

MAX_SESSIONS: Final = 16
QUEUE_EVENTS: Final = 1000
MAX_BATCH_EVENTS: Final = 500
PER_PROXY_PER_SECOND: Final = 100
TOTAL_PER_SECOND: Final = 500
MAX_DURATION_SECONDS: Final = 3600
STATUS_CLASSES: Final = {"2xx": 2, "3xx": 3, "4xx": 4, "5xx": 5}


@dataclass(frozen=True, slots=True)
class TapFilter:
    service: str
    path_prefix: str = ""
    method: str = ""
    status_class: int = 0  # 0: any; 2..5

    def describe(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "path": self.path_prefix or None,
            "method": self.method or None,
            "status": f"{self.status_class}xx" if self.status_class else None,
        }


class TooManyTaps(Exception):
    pass


@dataclass(eq=False)
class TapSession:
    id: str
    filter: TapFilter
    duration: float
    limit: int  # events to deliver before the session ends; 0: no limit
    max_per_proxy: int
    max_total: int
    started: float = field(default_factory=time.monotonic)
    queue: asyncio.Queue[dict[str, Any]] = field(
        default_factory=lambda: asyncio.Queue(QUEUE_EVENTS)
    )
    proxies: int = 0
    received: int = 0
    delivered: int = 0
    dropped_by_proxies: int = 0
    dropped_here: int = 0
    _window_start: float = 0.0
    _window_count: int = 0

    def admit(self, now: float) -> bool:
        """The hub-wide rate bound: at most `max_total` events in each second."""
        if now - self._window_start >= 1.0:
            self._window_start = now
            self._window_count = 0
        if self._window_count >= self.max_total:
            return False
        self._window_count += 1
        return True

    def start_message(self, conn: ProxyConnection) -> pb.ControlMessage | None:
        f = self.filter
        inbound = conn.service == f.service
        left = self.duration - (time.monotonic() - self.started)
        if left <= 0:
            return None
        return pb.ControlMessage(
            tap_start=pb.TapStart(
                tap_id=self.id,
                service=f.service,
                inbound=inbound,
                outbound=True,
                path_prefix=f.path_prefix,
                method=f.method,
                status_class=f.status_class,
                max_events_per_second=self.max_per_proxy,
                duration_ms=int(left * 1000) + 1,
            )
        )

    def summary(self) -> dict[str, Any]:
        return {
            "id": self.id,
            **self.filter.describe(),
            "proxies": self.proxies,
            "received": self.received,
            "delivered": self.delivered,
            "droppedByProxies": self.dropped_by_proxies,
            "droppedHere": self.dropped_here,
        }


def event_json(conn: ProxyConnection, event: pb.TapEvent) -> dict[str, Any]:
    return {
        "type": "event",
        "tap": "",
        "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(event.time))
        + f".{int(event.time * 1000) % 1000:03d}Z",
        "direction": event.direction,
        "proxy": conn.node_id,
        "source": event.source,
        "destination": event.destination,
        "method": event.method,
        "authority": event.authority,
        "path": event.path,
        "status": event.status,
        "latency_ms": round(event.latency_ms, 3),
        "flags": event.flags or "-",
        "route": event.route or None,
        "trace_id": event.trace_id or None,
        "request_id": event.request_id or None,
        "mtls": event.mtls,
        "headers": dict(event.headers),
    }


class TapHub:
    def __init__(self, hub: TelemetryHub) -> None:
        self._hub = hub
        self._sessions: dict[str, TapSession] = {}
        self._ids = itertools.count(1)
        self.started = 0
        self.events_unknown_tap = 0

    def start(
        self,
        tap_filter: TapFilter,
        *,
        duration: float,
        limit: int = 0,
        max_per_proxy: int = PER_PROXY_PER_SECOND,
        max_total: int = TOTAL_PER_SECOND,
    ) -> TapSession:
        if len(self._sessions) >= MAX_SESSIONS:
            raise TooManyTaps(f"at most {MAX_SESSIONS} taps run at once; try again later")
        session = TapSession(
            id=f"tap-{next(self._ids)}-{secrets.token_hex(4)}",
            filter=tap_filter,
            duration=min(duration, MAX_DURATION_SECONDS),
            limit=limit,
            max_per_proxy=max_per_proxy,
            max_total=max_total,
        )
        self._sessions[session.id] = session
        self.started += 1
        for conn in self._hub.connections():
            message = session.start_message(conn)
            if message is not None and conn.send(message):
                session.proxies += 1
        return session

    def stop(self, session: TapSession) -> None:
        if self._sessions.pop(session.id, None) is None:
            return
        stop = pb.ControlMessage(tap_stop=pb.TapStop(tap_id=session.id))
        for conn in self._hub.connections():
            conn.send(stop)

    def on_connect(self, conn: ProxyConnection) -> None:
        """A proxy that connects while taps run is told of them."""
        for session in self._sessions.values():
            message = session.start_message(conn)
            if message is not None and conn.send(message):
                session.proxies += 1

    def on_events(self, conn: ProxyConnection, batch: pb.TapEvents) -> None:
        session = self._sessions.get(batch.tap_id)
        if session is None:
            self.events_unknown_tap += 1
            return
        session.dropped_by_proxies += batch.dropped
        now = time.monotonic()
        events = batch.events
        if len(events) > MAX_BATCH_EVENTS:
            session.dropped_here += len(events) - MAX_BATCH_EVENTS
        for event in events[:MAX_BATCH_EVENTS]:
            session.received += 1
            if not session.admit(now):
                session.dropped_here += 1
                continue
            item = event_json(conn, event)
            item["tap"] = session.id
            try:
                session.queue.put_nowait(item)
            except asyncio.QueueFull:
                session.dropped_here += 1

    def statistics(self) -> dict[str, Any]:
        return {
            "started": self.started,
            "active": [s.summary() for s in self._sessions.values()],
            "eventsForUnknownTaps": self.events_unknown_tap,
        }
