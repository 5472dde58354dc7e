"""The telemetry stream's bounds, against a real control plane with a raw grpcio client: what
a proxy (or anything speaking the protocol) can make the control plane take."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from tests.integration.harness import Mesh, wait_for
from trellis.control.signals.aggregate import BOUNDS_MS
from trellis.control.signals.stream import MAX_EDGES_PER_REPORT, MAX_MESSAGE_BYTES, STREAM_METHOD
from trellis.telemetry_api import telemetry_pb2 as pb

pytestmark = pytest.mark.integration


def stats(mesh: Mesh) -> dict[str, Any]:
    with mesh.cp.client() as c:
        return dict(c.get("/api/v1/signals/statistics").json())


def hello(name: str = "raw") -> pb.ProxyMessage:
    return pb.ProxyMessage(
        hello=pb.Hello(
            node_id=f"sidecar~{name}.default",
            workload=name,
            namespace="default",
            service=f"{name}.default",
            bucket_bounds_ms=list(BOUNDS_MS),
        )
    )


def report(n: int = 1, edges: int = 1) -> pb.ProxyMessage:
    buckets = [0] * (len(BOUNDS_MS) + 1)
    buckets[2] = n
    return pb.ProxyMessage(
        report=pb.Report(
            interval_ms=2000,
            edges=[
                pb.EdgeDelta(
                    reporter=pb.SOURCE,
                    source="raw.default",
                    destination=f"d{i}.default",
                    requests=n,
                    buckets=buckets,
                )
                for i in range(edges)
            ],
        )
    )


@pytest.fixture
def channel(mesh: Mesh) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(mesh.cp.xds) as ch:
        yield ch


def open_stream(channel: grpc.Channel, messages: list[pb.ProxyMessage | bytes]) -> Any:
    call = channel.stream_stream(
        STREAM_METHOD,
        request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
        response_deserializer=pb.ControlMessage.FromString,
    )
    return call(iter(messages), timeout=10)


def test_reports_over_the_rate_are_refused_and_counted(mesh: Mesh, channel: grpc.Channel) -> None:
    # A Hello and 10 reports at once: the burst (3) passes, the rest is refused with a Notice.
    responses = open_stream(channel, [hello(), *(report() for _ in range(10))])
    notices = []
    for message in responses:
        assert message.WhichOneof("kind") == "notice"
        notices.append(message.notice)
        if len(notices) == 7:
            break
    responses.cancel()
    assert "over 1 reports/s" in notices[0].message
    assert notices[-1].refused_reports == 7
    s = wait_for(lambda: (x := stats(mesh))["reportsRefusedRate"] == 7 and x, 5, "counters")
    assert s["reports"] == 3
    with mesh.cp.client() as c:
        edges = c.get("/api/v1/signals").json()["edges"]
    assert sum(e["requests"] for e in edges if e["source"] == "raw.default") == 3


def test_a_report_with_too_many_edges_is_refused(mesh: Mesh, channel: grpc.Channel) -> None:
    responses = open_stream(channel, [hello(), report(edges=MAX_EDGES_PER_REPORT + 1)])
    message = next(iter(responses))
    responses.cancel()
    assert f"over {MAX_EDGES_PER_REPORT} edges" in message.notice.message
    assert wait_for(lambda: stats(mesh)["reportsRefusedSize"] == 1, 5, "the refusal counted")


def test_a_message_too_large_ends_the_stream(mesh: Mesh, channel: grpc.Channel) -> None:
    big = pb.ProxyMessage(tap_events=pb.TapEvents(tap_id="x" * (MAX_MESSAGE_BYTES + 10)))
    with pytest.raises(grpc.RpcError) as caught:
        list(open_stream(channel, [hello(), big]))
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert wait_for(lambda: stats(mesh)["messagesRefusedSize"] == 1, 5, "the refusal counted")


def test_the_first_message_must_be_a_hello(mesh: Mesh, channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        list(open_stream(channel, [report()]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as caught:
        list(open_stream(channel, [b"\xff\xff\xff"]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_the_secure_port_needs_a_mesh_certificate(mesh: Mesh) -> None:
    credentials = grpc.ssl_channel_credentials(root_certificates=mesh.cp.bundle())
    with (
        grpc.secure_channel(mesh.cp.secure, credentials) as ch,
        pytest.raises(grpc.RpcError) as caught,
    ):
        list(open_stream(ch, [hello()]))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "telemetry on the secure port needs a mesh client certificate" in str(
        caught.value.details()
    )
