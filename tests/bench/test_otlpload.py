"""The trace store benchmark's load (bench.otlpload): its Exports are what it says they are,
and its bookkeeping counts what a real receiver (the control plane's TraceService on a
grpc.aio server) stored, refused and rejected."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest
from bench.otlpload import SPANS_PER_TRACE, Batches, closed_loop, open_loop
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from trellis.control.traces.export import OtlpReceiver
from trellis.control.traces.query import TraceQuery
from trellis.control.traces.receiver import TraceService
from trellis.control.traces.store import TraceStore


def test_each_export_is_new_traces_of_sidecar_spans() -> None:
    batches = Batches(512)
    store = TraceStore(1 << 30)
    for _ in range(3):
        result = store.ingest(ExportTraceServiceRequest.FromString(batches.next()))
        assert (result.accepted, result.refused, result.duplicate) == (512, 0, 0)
    stats = store.statistics()
    assert stats["traces"] == 3 * 512 // SPANS_PER_TRACE
    found = store.search(TraceQuery(limit=1000))
    assert all(len(t.spans) == SPANS_PER_TRACE and t.root is not None for t in found.traces)
    assert store.services() == [f"service-{n}" for n in range(4)]
    assert store.search(TraceQuery(status="5xx", limit=1000)).matched == 3 * 2  # 1 in 100
    assert 600 < batches.size / batches.spans < 700


@pytest.fixture
async def receiver() -> AsyncIterator[tuple[str, OtlpReceiver]]:
    # Exports of 50 spans pass, of 512 spans are refused (too large): both paths counted.
    traces = OtlpReceiver(TraceStore(1 << 30), max_bytes=100_000)
    server = grpc.aio.server()
    TraceService(traces).register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", traces
    finally:
        await server.stop(None)


async def test_open_loop_counts_what_was_stored(receiver: tuple[str, OtlpReceiver]) -> None:
    target, traces = receiver
    result = await open_loop(target, 5000, Batches(50), 0.2)
    assert result.exports_sent == 20 and result.exports_failed == 0
    assert len(result.latencies) == len(result.send_lag) == 20
    assert traces.statistics()["spansAccepted"] == result.spans_sent == 1000


async def test_failed_exports_are_counted(receiver: tuple[str, OtlpReceiver]) -> None:
    target, traces = receiver
    result = await closed_loop(target, Batches(512), 0.2, concurrency=2)
    assert result.exports_sent == result.exports_failed > 0
    assert result.failures == {"RESOURCE_EXHAUSTED": result.exports_failed}
    assert traces.statistics()["spansAccepted"] == 0
