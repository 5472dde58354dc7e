"""An independent OTLP trace receiver for tests: a grpc server in the test process, built
from opentelemetry-proto's service definition, that keeps every span it is sent.

`stall` makes Export hang (a slow collector); `stop` / `start` on the same port
stand for a collector killed and back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2


@dataclass
class ReceivedSpan:
    service: str
    span: trace_pb2.Span

    @property
    def trace_id(self) -> str:
        return self.span.trace_id.hex()

    @property
    def span_id(self) -> str:
        return self.span.span_id.hex()

    @property
    def parent_id(self) -> str:
        return self.span.parent_span_id.hex()

    @property
    def kind(self) -> str:
        return str(trace_pb2.Span.SpanKind.Name(self.span.kind)).removeprefix("SPAN_KIND_")

    def attributes(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for kv in self.span.attributes:
            which = kv.value.WhichOneof("value")
            out[kv.key] = getattr(kv.value, which) if which else None
        return out


class _Service(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, owner: OtlpReceiver) -> None:
        self.owner = owner

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        owner = self.owner
        owner.exports += 1
        if owner.stalled.is_set():
            owner.release.wait(30)
        with owner.lock:
            for rs in request.resource_spans:
                service = ""
                for kv in rs.resource.attributes:
                    if kv.key == "service.name":
                        service = kv.value.string_value
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        owner.spans.append(ReceivedSpan(service, span))
        return trace_service_pb2.ExportTraceServiceResponse()


class OtlpReceiver:
    def __init__(self, port: int) -> None:
        self.port = port
        self.spans: list[ReceivedSpan] = []
        self.lock = threading.Lock()
        self.exports = 0
        self.stalled = threading.Event()
        self.release = threading.Event()
        self._server: grpc.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(  # type: ignore[no-untyped-call]
            _Service(self), server
        )
        server.add_insecure_port(self.endpoint)
        server.start()
        self._server = server

    def stop(self) -> None:
        self.release.set()
        if self._server is not None:
            self._server.stop(grace=None).wait(5)
            self._server = None
        self.release.clear()

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self.lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def count(self) -> int:
        with self.lock:
            return len(self.spans)

    def __iter__(self) -> Iterator[ReceivedSpan]:
        with self.lock:
            return iter(list(self.spans))
