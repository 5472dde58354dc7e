"""Yardstick for tracing's cost: instructions per span through OpenTelemetry's own Python SDK.

`python -m bench.sdk_span_cost [--spans N1 N2]`

Runs a child Python under `valgrind --tool=callgrind` twice (N1 then N2 spans); the
difference of the totals over N2 - N1 is one span's cost, start-up cancelled out. Each span
is what a sidecar's CLIENT span carries (kind, name, the 12 attributes of
trellis/proxy/telemetry/tracer.py), ended, and encoded to OTLP protobuf by the SDK's own
exporter encoder in batches of 512 (SimpleSpanProcessor; no network). Compare with
`python -m bench.instructions --tracing off 100`: the sidecar's cost per traced request,
span, encoding and export included.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import sys
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind


class Encode(SpanExporter):
    def __init__(self):
        self.batch = []

    def export(self, spans):
        self.batch.extend(spans)
        if len(self.batch) >= 512:
            encode_spans(self.batch).SerializeToString()
            self.batch = []
        return SpanExportResult.SUCCESS


provider = TracerProvider(resource=Resource.create({"service.name": "web"}))
provider.add_span_processor(SimpleSpanProcessor(Encode()))
tracer = provider.get_tracer("trellis")
for _ in range(int(sys.argv[1])):
    with tracer.start_as_current_span("api.default:9080/*", kind=SpanKind.CLIENT) as span:
        span.set_attributes({
            "http.request.method": "GET", "http.route": "default", "url.path": "/hello",
            "server.address": "api", "server.port": 9080, "network.peer.address": "127.0.0.1",
            "network.peer.port": 4000, "peer.service": "api.default",
            "http.response.status_code": 200, "http.request.resend_count": 0,
            "trellis.response_flags": "-", "trellis.upstream_cluster": "outbound|9080||api",
        })
"""


def total(spans: int) -> int:
    with tempfile.TemporaryDirectory(prefix="trellis-sdk-") as tmp:
        out = Path(tmp) / "cg.out"
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
             sys.executable, "-c", CHILD, str(spans)],
            check=True, capture_output=True,
        )  # fmt: skip
        found = re.search(r"^(?:summary|totals):\s+(\d+)", out.read_text(), re.MULTILINE)
        if found is None:
            raise RuntimeError("callgrind wrote no total")
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.sdk_span_cost", description=__doc__)
    parser.add_argument("--spans", type=int, nargs=2, default=(1000, 3000), metavar="N")
    n1, n2 = parser.parse_args().spans
    cost = (total(n2) - total(n1)) / (n2 - n1)
    print(f"OpenTelemetry Python SDK: {cost:,.0f} instructions per span")


if __name__ == "__main__":
    main()
