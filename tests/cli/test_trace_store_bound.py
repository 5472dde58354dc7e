"""The trace store's bound in a real `trellis control --trace-store-bytes 2MiB`, from outside.

150 Exports of 512 sidecar-shaped spans (77,000 spans; unbounded, the store would hold
~90 MB of them and the process grows by as much, measured) go to the plaintext port.
The control plane's RSS (/proc) stays within a few MB of where it was after the first
ten, the statistics say the charge is within the bound and what was evicted, the
oldest traces are gone whole, the newest are all there and `trellis traces` lists them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from tests.cli.control_plane import TOKEN, ControlPlane, control_plane
from tests.control.traces.otlp_spans import sidecar_batch

from trellis.control.traces.receiver import EXPORT_METHOD

pytestmark = pytest.mark.integration

BOUND = 2 * 1024 * 1024
EXPORTS = 150
TRACES_PER_EXPORT = 128  # of 4 spans each


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    tmp = tmp_path_factory.mktemp("bounded")
    with control_plane(tmp, extra_args=("--trace-store-bytes", "2MiB")) as plane:
        yield plane


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def trace_ids(data: bytes) -> list[str]:
    request = ExportTraceServiceRequest.FromString(data)
    return sorted(
        {
            s.trace_id.hex()
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
        }
    )


def test_the_store_holds_its_bound_and_the_newest_traces(small: ControlPlane) -> None:
    exports = [sidecar_batch(TRACES_PER_EXPORT, 4, 14).SerializeToString() for _ in range(EXPORTS)]
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with grpc.insecure_channel(small.xds_address) as channel:
        send = channel.unary_unary(EXPORT_METHOD)
        for data in exports[:10]:
            send(data, timeout=30)
        warm = rss_mib(small.pid)
        for data in exports[10:]:
            send(data, timeout=30)
    grown = rss_mib(small.pid) - warm
    # 140 more Exports (~45 MB of protobuf, ~80 MB to hold) and the process stayed put
    assert grown < 8, f"the control plane grew by {grown:.1f} MiB past the warm-up"
    stats = httpx.get(f"{small.api_url}/api/v1/traces/statistics", headers=admin, timeout=10).json()
    assert stats["spansAccepted"] == EXPORTS * TRACES_PER_EXPORT * 4
    assert stats["maxBytes"] == BOUND
    assert 0 < stats["bytes"] <= BOUND
    assert stats["spans"] + stats["spansEvicted"] == stats["spansAccepted"]
    assert stats["tracesEvicted"] > 0.9 * EXPORTS * TRACES_PER_EXPORT

    def get(trace: str) -> int:
        url = f"{small.api_url}/api/v1/traces/{trace}"
        return httpx.get(url, headers=admin, timeout=10).status_code

    # the oldest are gone, whole
    assert {get(t) for t in trace_ids(exports[0])} == {404}
    # the newest are all there, with all their spans
    newest = trace_ids(exports[-1])
    assert {get(t) for t in newest} == {200}
    body = httpx.get(f"{small.api_url}/api/v1/traces/{newest[0]}", headers=admin, timeout=10).json()
    assert body["spanCount"] == 4
    shown = small.run("traces", "--limit", "1000", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    listed = {item["traceId"] for item in json.loads(shown.stdout)["items"]}
    assert set(newest) <= listed
    assert len(listed) == stats["traces"]
