"""The hub's stream bound and what it says about its proxies (no sockets)."""

from __future__ import annotations

import time

from trellis.control.signals.aggregate import BOUNDS_MS, Rebin
from trellis.control.signals.stream import TelemetryHub, TokenBucket
from trellis.telemetry_api import telemetry_pb2 as pb


def hello(name: str) -> pb.Hello:
    return pb.Hello(node_id=f"sidecar~{name}.ns", workload=name, namespace="ns",
                    service=f"{name}.ns")  # fmt: skip


def test_at_most_max_streams() -> None:
    hub = TelemetryHub(max_streams=2)
    a, b = hub.connect(hello("a"), "p", False), hub.connect(hello("b"), "p", True)
    assert a is not None and b is not None
    assert hub.connect(hello("c"), "p", False) is None
    assert hub.counters["streamsRefused"] == 1
    hub.disconnect(a)
    assert hub.connect(hello("c"), "p", False) is not None
    assert {p["service"] for p in hub.statistics()["proxies"]} == {"b.ns", "c.ns"}


def test_proxies_reporting_counts_who_reported_in_the_window() -> None:
    hub = TelemetryHub()
    a = hub.connect(hello("a"), "p", False)
    hub.connect(hello("b"), "p", False)
    assert a is not None
    report = pb.Report(interval_ms=2000, edges=[pb.EdgeDelta(
        reporter=pb.SOURCE, source="a.ns", destination="b.ns", requests=3,
        buckets=[0, 0, 3])])  # fmt: skip
    hub.ingest(a, report, Rebin(BOUNDS_MS), time.time())
    body = hub.signals(60)
    assert body["proxies_reporting"] == 1
    assert body["edges"][0]["requests"] == 3
    assert body["generated_at"].endswith("Z")


def test_token_bucket() -> None:
    bucket = TokenBucket(1.0, 3.0, now=0.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.5) is False
    assert bucket.take(1.0) is True
    assert bucket.take(100.0) and bucket.take(100.0) and bucket.take(100.0)
    assert not bucket.take(100.0)


def test_a_report_cannot_say_more_errors_than_requests() -> None:
    hub = TelemetryHub()
    a = hub.connect(hello("a"), "p", False)
    assert a is not None
    report = pb.Report(interval_ms=2000, edges=[pb.EdgeDelta(
        reporter=pb.DESTINATION, source="x.ns", destination="a.ns", requests=2, errors=9,
        denied=7)])  # fmt: skip
    hub.ingest(a, report, Rebin(BOUNDS_MS), time.time())
    (service,) = [s for s in hub.signals(60)["services"] if s["service"] == "a.ns"]
    assert (service["errors"], service["denied"], service["success_rate"]) == (2, 2, 0.0)
