"""The proxy's taps as pure logic: which finished exchanges match, the rate bound, the batch
bound when the stream does not take batches, redaction, and the recorder hook's install.

The exchange is a record of the fields a tap reads from a finished `Exchange` (its head is
a real RequestHead); the whole path through real sidecars is in
tests/integration/test_live_traffic.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trellis.proxy.http1.head import RequestHead
from trellis.proxy.live.tap import REDACTED, ProxyTaps, trace_id
from trellis.proxy.telemetry.metrics import LABELS
from trellis.telemetry_api import telemetry_pb2 as pb


@dataclass
class Finished:
    head: RequestHead
    status: int = 200
    flags: list[str] = field(default_factory=list)
    route: Any = None
    trace: Any = None  # tracing off: the ids come from the request's headers


def head(method: str = "GET", path: str = "/a", **headers: str) -> RequestHead:
    fields = [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return RequestHead(method, path, path, "api:9080", fields)


def labels(**values: str) -> tuple[str, ...]:
    return tuple(values.get(name, "unknown") for name in LABELS)


OUTBOUND = labels(destination_service_name="api", destination_service_namespace="ns",
                  connection_security_policy="mutual_tls")  # fmt: skip
OTHER = labels(destination_service_name="db", destination_service_namespace="ns")
INBOUND = labels(source_app="web", source_canonical_service="web", source_workload_namespace="ns")


def taps(service: str = "web.ns") -> tuple[ProxyTaps, list[Any]]:
    installed: list[Any] = []
    return ProxyTaps(service, f"{service}-1", installed.append), installed


def start(tap_id: str = "t1", **kw: Any) -> pb.TapStart:
    base: dict[str, Any] = {"tap_id": tap_id, "service": "api.ns", "outbound": True,
                            "max_events_per_second": 100, "duration_ms": 60_000}  # fmt: skip
    return pb.TapStart(**{**base, **kw})


def test_the_hook_is_installed_only_while_a_tap_runs() -> None:
    proxy, installed = taps()
    proxy.start(start())
    assert installed[-1] == proxy.offer
    proxy.stop("t1")
    assert installed[-1] is None


def test_filters_and_directions() -> None:
    proxy, _ = taps()
    proxy.start(start(path_prefix="/a", method="POST", status_class=5))
    proxy.offer(Finished(head("POST", "/a/1"), 503), "outbound", OUTBOUND, 0.01)  # match
    proxy.offer(Finished(head("GET", "/a/1"), 503), "outbound", OUTBOUND, 0.01)
    proxy.offer(Finished(head("POST", "/b"), 503), "outbound", OUTBOUND, 0.01)
    proxy.offer(Finished(head("POST", "/a"), 200), "outbound", OUTBOUND, 0.01)
    proxy.offer(Finished(head("POST", "/a"), 503), "outbound", OTHER, 0.01)  # another service
    proxy.offer(Finished(head("POST", "/a"), 503), "inbound", INBOUND, 0.01)  # not inbound
    (batch,) = proxy.batches()
    assert [(e.method, e.path, e.status) for e in batch.events] == [("POST", "/a/1", 503)]
    e = batch.events[0]
    assert (e.source, e.destination, e.direction, e.mtls) == ("web.ns", "api.ns", "outbound", True)
    assert e.latency_ms == 10.0 and e.workload == "web.ns-1"
    assert proxy.batches() == []


def test_inbound_side_of_the_service() -> None:
    proxy, _ = taps("api.ns")
    proxy.start(start(inbound=True, outbound=False))
    proxy.offer(Finished(head()), "inbound", INBOUND, 0.002)
    (batch,) = proxy.batches()
    assert (batch.events[0].source, batch.events[0].destination) == ("web.ns", "api.ns")


def test_rate_and_batch_bounds() -> None:
    proxy, _ = taps()
    proxy.start(start(max_events_per_second=5))
    for _ in range(50):
        proxy.offer(Finished(head()), "outbound", OUTBOUND, 0.001)
    (batch,) = proxy.batches()
    assert len(batch.events) == 5 and batch.dropped == 45
    # A stream that takes no batches: the batch stops at two seconds' worth.
    tap = proxy._taps["t1"]
    for second in range(5):
        tap.window_start = -10.0 * (second + 1)  # a new one-second window each time
        for _ in range(5):
            proxy.offer(Finished(head()), "outbound", OUTBOUND, 0.001)
    (batch,) = proxy.batches()
    assert len(batch.events) == 10 and batch.dropped == 15


def test_header_values_are_redacted_but_the_allow_list() -> None:
    proxy, _ = taps()
    proxy.start(start())
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    h = head(authorization="Bearer s3cret", cookie="id=1", user_agent="curl/8",
             x_request_id="r-1", traceparent=parent)  # fmt: skip
    proxy.offer(Finished(h), "outbound", OUTBOUND, 0.001)
    (batch,) = proxy.batches()
    e = batch.events[0]
    assert e.headers["authorization"] == REDACTED and e.headers["cookie"] == REDACTED
    assert e.headers["user-agent"] == "curl/8" and e.request_id == "r-1"
    assert e.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert "s3cret" not in str(e)


def test_trace_ids_from_b3() -> None:
    assert trace_id(head(x_b3_traceid="463ac35c9f6413ad48485a3953bb6124")) == (
        "463ac35c9f6413ad48485a3953bb6124"
    )
    assert trace_id(head(b3="80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1")) == (
        "80f198ee56343ba864fe8b2a57d3eff7"
    )
    assert trace_id(head()) == ""


def test_a_route_split_backend_is_tapped_under_its_canonical_service() -> None:
    """A call a split sent to the `api-v2` Service reaches workloads whose canonical service
    is `api`: a tap on api sees its caller's side, named as the golden signals name it."""
    proxy, _ = taps()
    proxy.start(start())
    split = labels(destination_service_name="api-v2", destination_service_namespace="ns",
                   destination_canonical_service="api")  # fmt: skip
    proxy.offer(Finished(head("GET", "/x")), "outbound", split, 0.01)
    (batch,) = proxy.batches()
    assert [(e.source, e.destination) for e in batch.events] == [("web.ns", "api.ns")]
