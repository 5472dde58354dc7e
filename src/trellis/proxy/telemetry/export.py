"""SpanExporter: batches from the tracer's bounded queue, sent as OTLP protobuf over gRPC
(`TraceService/Export`) or HTTP (`POST .../v1/traces`).

One export at a time, off the request path: the loop wakes when a batch is
full or every `interval`, takes up to `batch` spans, writes them as protobuf
bytes (otlpwire.py, compiled; otlp_objects.py builds the same with message objects,
for tests and readers; OpenTelemetry's message modules load only when a sender is
made, to read the answers) and sends them with a deadline. A batch that fails (collector gone, slow
past the deadline, refused) is dropped and counted, and the next try waits a
backoff (doubling to `MAX_BACKOFF`); meanwhile the queue fills to its bound and
what does not fit is dropped and counted there (tracer.py `SpanQueue`). Nothing
is ever buffered beyond the queue and the one batch in flight, and no request
waits for any of it. When the collector returns, the next batch goes.

The target comes from config (config/tracing.py): the control plane this
proxy is connected to (its ADS address and credentials, the default), a gRPC
target, or an OTLP/HTTP URL; `retarget` swaps it between batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from trellis.proxy.config.tracing import OtlpTarget
from trellis.proxy.telemetry.otlpwire import export_request, resource_bytes, span_bytes
from trellis.proxy.telemetry.tracer import SpanQueue

log = logging.getLogger("trellis.proxy.tracing")

BATCH = 512
INTERVAL = 1.0  # seconds between exports when batches do not fill
EXPORT_TIMEOUT = 5.0
MAX_BACKOFF = 5.0
SCOPE_NAME = "trellis-sidecar"
EXPORT_METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


# A collector that comes back is found within seconds (gRPC's default reconnect backoff
# grows to 120 s).
_CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 500),
    ("grpc.min_reconnect_backoff_ms", 500),
    ("grpc.max_reconnect_backoff_ms", int(MAX_BACKOFF * 1000)),
]


class _GrpcSender:
    def __init__(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None,
        headers: Any,
        options: Sequence[tuple[str, Any]] = (),
    ):
        opts = [*_CHANNEL_OPTIONS, *options]
        if credentials is None:
            self.channel = grpc.aio.insecure_channel(target, options=opts)
        else:
            self.channel = grpc.aio.secure_channel(target, credentials, options=opts)
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        # The request is already bytes (otlpwire.py): no serializer.
        self.export = self.channel.unary_unary(
            EXPORT_METHOD,
            request_serializer=None,
            response_deserializer=trace_service_pb2.ExportTraceServiceResponse.FromString,
        )
        self.metadata = tuple(headers)

    async def send(self, request: bytes) -> int:
        """Spans the receiver refused (partial success)."""
        reply = await self.export(request, timeout=EXPORT_TIMEOUT, metadata=self.metadata or None)
        return int(reply.partial_success.rejected_spans)

    async def aclose(self) -> None:
        await self.channel.close(None)


class _HttpSender:
    def __init__(self, url: str, headers: Sequence[tuple[str, str]]):
        import httpx  # only for an OTLP/HTTP collector: ~11 MB the sidecar need not carry
        from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

        self.answer = trace_service_pb2.ExportTraceServiceResponse

        self.url = url
        self.client = httpx.AsyncClient(timeout=EXPORT_TIMEOUT)
        self.headers = {"content-type": "application/x-protobuf", **dict(headers)}

    async def send(self, request: bytes) -> int:
        reply = await self.client.post(self.url, content=request, headers=self.headers)
        if reply.status_code != 200:
            raise RuntimeError(f"HTTP {reply.status_code} from {self.url}")
        answer = self.answer()
        with contextlib.suppress(Exception):
            answer.ParseFromString(reply.content)
        return int(answer.partial_success.rejected_spans)

    async def aclose(self) -> None:
        await self.client.aclose()


# The control plane this proxy holds its ADS stream with: (address, a key that changes
# when its credentials do, a maker of those credentials (None: plaintext), the channel
# options ADS uses (the name its certificate is checked against)).
ControlPlane = Callable[
    [],
    tuple[
        str,
        object,
        Callable[[], grpc.ChannelCredentials] | None,
        Sequence[tuple[str, Any]],
    ],
]


class SpanExporter:
    def __init__(
        self,
        queue: SpanQueue,
        res: list[tuple[str, str]],
        control_plane: ControlPlane,
        *,
        batch: int = BATCH,
        interval: float = INTERVAL,
    ) -> None:
        self.queue = queue
        self.resource = resource_bytes(res)  # the Resource message, written once
        self.control_plane = control_plane
        self.batch = batch
        self.interval = interval
        self.target: OtlpTarget | None = None
        self._sender: _GrpcSender | _HttpSender | None = None
        self._sender_for: tuple[object, ...] | None = None
        self._wake = asyncio.Event()
        queue.batch = batch
        queue.wake = self._wake.set
        self._task: asyncio.Task[None] | None = None
        self.exported = 0  # spans the receiver took
        self.rejected = 0  # spans the receiver refused (partial success)
        self.failed = 0  # spans of batches that could not be sent (dropped)
        self.batches = 0
        self.failures = 0
        self.last_error = ""
        self.last_export = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    def retarget(self, target: OtlpTarget | None) -> None:
        self.target = target

    async def _run(self) -> None:
        backoff = 0.0
        while True:
            if backoff:
                await asyncio.sleep(backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            while len(self.queue) and self.target is not None:
                ok = await self._export_one()
                if not ok:
                    backoff = min(MAX_BACKOFF, backoff * 2 or 0.5)
                    break
                backoff = 0.0
                if len(self.queue) < self.batch:
                    break
            if self.target is None:
                self.queue.take(len(self.queue))  # tracing turned off: nothing to send to

    async def _export_one(self) -> bool:
        spans = self.queue.take(self.batch)
        if not spans:
            return True
        try:
            sender = await self._current_sender()
            request = export_request(self.resource, SCOPE_NAME, [span_bytes(s) for s in spans])
            rejected = await sender.send(request)
        except Exception as e:  # any failure drops the batch, counted
            self.failed += len(spans)
            self.failures += 1
            self.last_error = _describe(e)
            if self.failures == 1 or self.failures % 100 == 0:
                log.warning("span export failed (%d spans dropped): %s", len(spans), e)
            return False
        self.batches += 1
        self.rejected += rejected
        self.exported += len(spans) - rejected
        self.last_export = time.time()
        return True

    async def _current_sender(self) -> _GrpcSender | _HttpSender:
        target = self.target
        assert target is not None
        if target.protocol == "control-plane":
            address, creds_key, make_creds, options = self.control_plane()
            key: tuple[object, ...] = (target, address, creds_key)
        else:
            key = (target,)
        if self._sender is not None and self._sender_for == key:
            return self._sender
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.aclose()
            self._sender = None
        if target.protocol == "control-plane":
            creds = make_creds() if make_creds is not None else None
            self._sender = _GrpcSender(address, creds, (), options)
        elif target.protocol == "grpc":
            creds = (
                grpc.ssl_channel_credentials(root_certificates=target.root_certs or None)
                if target.tls
                else None
            )
            self._sender = _GrpcSender(target.endpoint, creds, target.headers)
        else:
            self._sender = _HttpSender(target.endpoint, target.headers)
        self._sender_for = key
        return self._sender

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._sender is not None:
            with contextlib.suppress(Exception):
                await self._sender.aclose()

    def statistics(self) -> dict[str, object]:
        target = self.target
        return {
            "target": None
            if target is None
            else (target.endpoint or target.protocol) + f" ({target.protocol})",
            "exported": self.exported,
            "rejected": self.rejected,
            "dropped_export_failed": self.failed,
            "batches": self.batches,
            "failures": self.failures,
            "last_error": self.last_error or None,
        }


def _describe(e: Exception) -> str:
    if isinstance(e, grpc.aio.AioRpcError):
        return f"{e.code().name}: {e.details()}"
    if isinstance(e, ssl.SSLError | OSError) or type(e).__module__.startswith("httpx"):
        return f"{type(e).__name__}: {e}"
    return str(e) or type(e).__name__
