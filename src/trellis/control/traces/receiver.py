"""OTLP's gRPC `opentelemetry.proto.collector.trace.v1.TraceService/Export`, for grpc.aio servers.

The control plane registers it on both of its gRPC servers, beside ADS: the plaintext
xDS port (no credentials, like ADS there) and the secure port, where `admit` lets in
only callers with a mesh client certificate (sidecars export with their xDS channel).

The message arrives as bytes (no deserializer), so that its size is checked before
it is parsed; `OtlpReceiver` does the rest. Status codes: RESOURCE_EXHAUSTED (over
`OTLP_MAX_EXPORT_BYTES` or `OTLP_MAX_SPANS_PER_EXPORT`; gRPC itself refuses a message
over the server's receive limit with the same code), INVALID_ARGUMENT (not an
ExportTraceServiceRequest), and whatever `admit` refuses with. Spans the store
refuses one by one come back as OTLP's partial success in an OK answer.
"""

from __future__ import annotations

from collections.abc import Callable

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from trellis.control.traces.export import OtlpReceiver, Refusal, Refused

SERVICE = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
EXPORT_METHOD = f"/{SERVICE}/Export"

# Who may export: None to let the caller in, else the status and message to end the call with.
Admit = Callable[[grpc.aio.ServicerContext], tuple[grpc.StatusCode, str] | None]

_CODES = {
    Refusal.TOO_LARGE: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Refusal.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
}


class TraceService:
    def __init__(self, receiver: OtlpReceiver, admit: Admit | None = None) -> None:
        self._receiver = receiver
        self._admit = admit

    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Export": grpc.unary_unary_rpc_method_handler(
                    self.export,
                    request_deserializer=None,  # bytes: sized before they are parsed
                    response_serializer=trace_service_pb2.ExportTraceServiceResponse.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))

    async def export(
        self, data: bytes, context: grpc.aio.ServicerContext
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        if self._admit is not None:
            refusal = self._admit(context)
            if refusal is not None:
                await context.abort(*refusal)
        answer = self._receiver.receive(data)
        if isinstance(answer, Refused):
            await context.abort(_CODES[answer.reason], answer.message)
            raise AssertionError("unreachable")
        return answer
