"""Tap sessions in the hub, without sockets: who is told what, the bounds, the stop."""

from __future__ import annotations

import pytest

from trellis.control.signals.stream import TelemetryHub
from trellis.control.signals.tap import MAX_SESSIONS, QUEUE_EVENTS, TapFilter, TooManyTaps
from trellis.telemetry_api import telemetry_pb2 as pb


def connect(hub: TelemetryHub, service: str) -> object:
    conn = hub.connect(
        pb.Hello(
            node_id=f"sidecar~{service}-1.ns",
            workload=f"{service}-1",
            namespace="ns",
            service=f"{service}.ns",
        ),
        "peer",
        False,
    )
    assert conn is not None
    return conn


def sent(conn: object) -> list[pb.ControlMessage]:
    queue = conn.outbox  # type: ignore[attr-defined]
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def events(n: int, tap_id: str) -> pb.TapEvents:
    return pb.TapEvents(
        tap_id=tap_id,
        events=[pb.TapEvent(time=1.0, direction="inbound", path=f"/{i}") for i in range(n)],
    )


def test_the_service_taps_inbound_and_every_proxy_outbound() -> None:
    hub = TelemetryHub()
    api, web = connect(hub, "api"), connect(hub, "web")
    session = hub.taps.start(TapFilter("api.ns", method="GET"), duration=30, max_per_proxy=7)
    assert session.proxies == 2
    (to_api,), (to_web,) = sent(api), sent(web)
    assert to_api.tap_start.inbound and to_api.tap_start.outbound
    assert not to_web.tap_start.inbound and to_web.tap_start.outbound
    assert to_web.tap_start.method == "GET" and to_web.tap_start.max_events_per_second == 7
    assert 29_000 < to_web.tap_start.duration_ms <= 30_001
    # A proxy connecting while the tap runs is told too.
    late = connect(hub, "late")
    assert [m.WhichOneof("kind") for m in sent(late)] == ["tap_start"]
    hub.taps.stop(session)
    assert all(m.WhichOneof("kind") == "tap_stop" for c in (api, web, late) for m in sent(c))
    # Events of a stopped tap are ignored (counted).
    hub.taps.on_events(api, events(3, session.id))  # type: ignore[arg-type]
    assert hub.taps.events_unknown_tap == 1


def test_the_hub_bounds_each_session() -> None:
    hub = TelemetryHub()
    api = connect(hub, "api")
    session = hub.taps.start(TapFilter("api.ns"), duration=30, max_total=50)
    hub.taps.on_events(api, events(80, session.id))  # type: ignore[arg-type]
    assert session.queue.qsize() == 50 and session.dropped_here == 30
    hub.taps.on_events(api, pb.TapEvents(tap_id=session.id, dropped=9))  # type: ignore[arg-type]
    assert session.dropped_by_proxies == 9
    unbounded = hub.taps.start(TapFilter("api.ns"), duration=30, max_total=10**6)
    for _ in range(3):
        hub.taps.on_events(api, events(500, unbounded.id))  # type: ignore[arg-type]
    assert unbounded.queue.qsize() == QUEUE_EVENTS
    assert unbounded.dropped_here == 1500 - QUEUE_EVENTS


def test_at_most_so_many_sessions() -> None:
    hub = TelemetryHub()
    sessions = [hub.taps.start(TapFilter("a.ns"), duration=5) for _ in range(MAX_SESSIONS)]
    with pytest.raises(TooManyTaps):
        hub.taps.start(TapFilter("a.ns"), duration=5)
    hub.taps.stop(sessions[0])
    hub.taps.start(TapFilter("a.ns"), duration=5)
