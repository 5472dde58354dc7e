"""An app instrumented with the OpenTelemetry SDK, for the tracing tests: it serves HTTP,
joins the trace its sidecar hands it (W3C), records a span of its own, and calls
`--call` with that span as the parent (W3C headers injected by the SDK's propagator,
through HTTP_PROXY: its sidecar). Its spans go by OTLP/gRPC to `--otlp`.

    python otel_app.py --port P --call URL --otlp HOST:PORT --service NAME
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--call", required=True)
    p.add_argument("--otlp", required=True)
    p.add_argument("--service", required=True)
    args = p.parse_args()
    provider = TracerProvider(resource=Resource.create({"service.name": args.service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=args.otlp, insecure=True))
    )
    tracer = provider.get_tracer("otel-app")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *a: Any) -> None:
            pass

        def do_GET(self) -> None:
            parent = extract(dict(self.headers.items()))
            with tracer.start_as_current_span(
                "app handles", context=parent, kind=trace.SpanKind.INTERNAL
            ) as span:
                headers: dict[str, str] = {}
                inject(headers)
                with urllib.request.urlopen(
                    urllib.request.Request(args.call, headers=headers), timeout=10
                ) as r:
                    below = json.loads(r.read())
                own = format(span.get_span_context().span_id, "016x")
            data = json.dumps({"app_span": own, "below": below}).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(f"READY {args.port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)
    except KeyboardInterrupt:
        pass
    finally:
        provider.shutdown()
        server.server_close()
        sys.exit(0)


if __name__ == "__main__":
    main()
