"""`trellis.telemetry.v1.Telemetry/Stream`: each proxy's telemetry stream, served beside ADS.

Registered on both gRPC servers like the trace receiver: the plaintext xDS port (no
credentials, like ADS there) and the secure port, where `admit` lets in only callers
with a mesh client certificate (a sidecar opens it with its xDS channel's credentials).

Per stream: the first message must be a Hello (within HELLO_TIMEOUT); then Reports
(golden-signal deltas, into the SignalStore) and TapEvents (to the tap hub). The
control plane writes TapStart/TapStop (and a Notice when it refuses something) from a
bounded outbox; a full outbox drops and counts (a proxy ends its taps on their own
duration anyway).

Bounds (what a proxy, or anything that speaks the protocol, can cost us):
- MAX_STREAMS streams at once (RESOURCE_EXHAUSTED past it);
- a message over MAX_MESSAGE_BYTES is refused before it is parsed and the stream
  ends (RESOURCE_EXHAUSTED); not a ProxyMessage: INVALID_ARGUMENT;
- a Report with over MAX_EDGES_PER_REPORT edges, or over the per-proxy rate
  (REPORTS_PER_SECOND, burst REPORT_BURST), is refused, counted and answered with a
  Notice; the stream stays up;
- tap events: see tap.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import grpc
from google.protobuf.message import DecodeError

from trellis.control.signals.aggregate import (
    DESTINATION,
    MAX_WINDOW,
    SOURCE,
    CellKey,
    Delta,
    Rebin,
    SignalStore,
)
from trellis.control.signals.tap import TapHub
from trellis.control.xds.server import StreamGuard, StreamRefused
from trellis.telemetry_api import telemetry_pb2 as pb

log = logging.getLogger("trellis.control.telemetry")

SERVICE: Final = pb.DESCRIPTOR.services_by_name["Telemetry"].full_name
STREAM_METHOD: Final = f"/{SERVICE}/Stream"
MAX_STREAMS: Final = 10_000
MAX_MESSAGE_BYTES: Final = 1024 * 1024
MAX_EDGES_PER_REPORT: Final = 5000
MAX_BUCKETS_PER_EDGE: Final = 64
REPORTS_PER_SECOND: Final = 1.0
REPORT_BURST: Final = 3.0
HELLO_TIMEOUT: Final = 10.0
OUTBOX_SIZE: Final = 64
MAX_NAME_CHARS: Final = 253
SIGNALS_CACHE_SECONDS: Final = 1.0

# Who may open a stream: None lets the caller in, else the status and message to end with.
Admit = Callable[[grpc.aio.ServicerContext], tuple[grpc.StatusCode, str] | None]
# Whether the caller may say this Hello (the secure port: the names against its certificate).
Bind = Callable[[grpc.aio.ServicerContext, pb.Hello], tuple[grpc.StatusCode, str] | None]


def certificate_binding(guard: StreamGuard) -> Bind:
    """The secure port's check of a Hello: the caller's certificate (a mesh SVID) must be of
    the namespace the Hello names (node id, namespace, service). A workload is not in the
    certificate (it names a service account), so a member may still report as another
    service of its own namespace."""

    def bind(
        context: grpc.aio.ServicerContext, hello: pb.Hello
    ) -> tuple[grpc.StatusCode, str] | None:
        try:
            admission = guard.admit(context)
        except StreamRefused as e:
            return (
                e.code,
                f"telemetry on the secure port needs a mesh client certificate: {e.message}",
            )
        spiffe_id = getattr(admission.principal, "spiffe_id", None)
        namespace = getattr(spiffe_id, "namespace", None)
        if namespace is None:
            return None
        suffix = f".{namespace}"
        if (
            hello.namespace != namespace
            or not hello.node_id.endswith(suffix)
            or not hello.service.endswith(suffix)
        ):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"telemetry Hello for {hello.node_id} (service {hello.service}, namespace "
                f"{hello.namespace}) does not match its certificate {spiffe_id} (namespace "
                f"{namespace})",
            )
        return None

    return bind


_REPORTERS = {pb.SOURCE: SOURCE, pb.DESTINATION: DESTINATION}


class TokenBucket:
    """`rate` tokens a second, at most `burst` saved; `take(now)` spends one if there is one."""

    __slots__ = ("_at", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._at = now

    def take(self, now: float) -> bool:
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(eq=False)
class ProxyConnection:
    """One connected proxy, as the hub and the tap sessions see it."""

    id: int
    node_id: str
    workload: str
    namespace: str
    service: str
    peer: str
    secure: bool
    connected_at: float
    outbox: asyncio.Queue[pb.ControlMessage] = field(
        default_factory=lambda: asyncio.Queue(OUTBOX_SIZE)
    )
    reports: int = 0
    refused_reports: int = 0
    last_report: float = 0.0
    dropped_messages: int = 0

    def send(self, message: pb.ControlMessage) -> bool:
        """Queue `message` for the proxy; False (and counted) when its outbox is full."""
        try:
            self.outbox.put_nowait(message)
        except asyncio.QueueFull:
            self.dropped_messages += 1
            return False
        return True

    def to_json(self) -> dict[str, Any]:
        return {
            "nodeId": self.node_id,
            "service": self.service,
            "peer": self.peer,
            "secure": self.secure,
            "connectedAt": self.connected_at,
            "reports": self.reports,
            "refusedReports": self.refused_reports,
            "lastReport": self.last_report or None,
        }


class TelemetryHub:
    """The signal store, the connected proxies and the tap sessions: what the API reads."""

    def __init__(self, store: SignalStore | None = None, *, max_streams: int = MAX_STREAMS):
        self.store = store if store is not None else SignalStore()
        self.taps = TapHub(self)
        self.max_streams = max_streams
        self._connections: dict[int, ProxyConnection] = {}
        self._ids = itertools.count(1)
        self._cache: dict[float, tuple[float, dict[str, Any]]] = {}
        self.counters = {
            "streamsTotal": 0,
            "streamsRefused": 0,
            "reports": 0,
            "reportsRefusedRate": 0,
            "reportsRefusedSize": 0,
            "messagesRefusedSize": 0,
            "messagesInvalid": 0,
        }

    # -- connections -----------------------------------------------------------------------

    def connections(self) -> list[ProxyConnection]:
        return list(self._connections.values())

    def connect(self, hello: pb.Hello, peer: str, secure: bool) -> ProxyConnection | None:
        """Register a stream that said Hello; None when MAX_STREAMS are open already."""
        if len(self._connections) >= self.max_streams:
            self.counters["streamsRefused"] += 1
            return None
        conn = ProxyConnection(
            id=next(self._ids),
            node_id=hello.node_id[:MAX_NAME_CHARS],
            workload=hello.workload[:MAX_NAME_CHARS],
            namespace=hello.namespace[:MAX_NAME_CHARS],
            service=hello.service[:MAX_NAME_CHARS],
            peer=peer,
            secure=secure,
            connected_at=time.time(),
        )
        self._connections[conn.id] = conn
        self.counters["streamsTotal"] += 1
        self.taps.on_connect(conn)
        return conn

    def disconnect(self, conn: ProxyConnection) -> None:
        self._connections.pop(conn.id, None)

    # -- reports ---------------------------------------------------------------------------

    def ingest(self, conn: ProxyConnection, report: pb.Report, rebin: Rebin, now: float) -> None:
        deltas = []
        for edge in report.edges:
            reporter = _REPORTERS.get(edge.reporter)
            if reporter is None or edge.requests == 0:
                continue
            key = CellKey(
                reporter,
                edge.source[:MAX_NAME_CHARS] or "unknown",
                edge.destination[:MAX_NAME_CHARS] or "unknown",
                edge.mtls,
            )
            buckets = rebin.apply(edge.buckets[:MAX_BUCKETS_PER_EDGE])
            deltas.append(Delta(key, edge.requests, edge.errors, edge.denied, buckets))
        self.store.ingest(deltas, now, report.interval_ms / 1000.0)
        conn.reports += 1
        conn.last_report = time.time()
        self.counters["reports"] += 1

    # -- reading ---------------------------------------------------------------------------

    def signals(self, window: float) -> dict[str, Any]:
        """The figures over `window`, computed at most once per SIGNALS_CACHE_SECONDS per window
        (every SSE client and dashboard asks every 2 s; one query over a full store takes
        ~0.1-0.5 s of the event loop, docs/benchmarks.md)."""
        now = time.time()
        cached = self._cache.get(window)
        if cached is not None and now - cached[0] < SIGNALS_CACHE_SECONDS:
            return cached[1]
        answer = self._signals(window, now)
        if len(self._cache) > 64:
            self._cache.clear()
        self._cache[window] = (now, answer)
        return answer

    def _signals(self, window: float, now: float) -> dict[str, Any]:
        out = self.store.signals(window, now)
        reporting = sum(1 for c in self._connections.values() if c.last_report >= now - window)
        return {
            "window_seconds": out["window_seconds"],
            "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            "proxies_reporting": reporting,
            "services": out["services"],
            "edges": out["edges"],
        }

    def history(self, minutes: float, **which: str | None) -> dict[str, Any]:
        return self.store.history(min(minutes, MAX_WINDOW / 60), time.time(), **which)

    def statistics(self) -> dict[str, Any]:
        return {
            **self.counters,
            "streams": len(self._connections),
            "store": self.store.statistics(),
            "taps": self.taps.statistics(),
            "proxies": [c.to_json() for c in self._connections.values()],
        }


class TelemetryService:
    """The gRPC face of the hub, on one server (`admit` for the secure port's)."""

    def __init__(
        self,
        hub: TelemetryHub,
        admit: Admit | None = None,
        secure: bool = False,
        bind: Bind | None = None,
    ):
        self._hub = hub
        self._admit = admit
        self._bind = bind
        self._secure = secure

    def register(self, server: grpc.aio.Server) -> None:
        handler = grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Stream": grpc.stream_stream_rpc_method_handler(
                    self.stream,
                    request_deserializer=None,  # bytes: sized before they are parsed
                    response_serializer=pb.ControlMessage.SerializeToString,
                )
            },
        )
        server.add_generic_rpc_handlers((handler,))

    async def stream(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext
    ) -> None:
        hub = self._hub
        if self._admit is not None:
            refusal = self._admit(context)
            if refusal is not None:
                await context.abort(*refusal)
        messages = aiter(requests)
        try:
            first = await asyncio.wait_for(anext(messages), HELLO_TIMEOUT)
        except (TimeoutError, StopAsyncIteration):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a Hello"
            )
        hello_msg = await self._parse(first, context)
        if hello_msg.WhichOneof("kind") != "hello":
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, "the first message must be a Hello"
            )
        hello = hello_msg.hello
        if (
            list(hello.bucket_bounds_ms) != sorted(hello.bucket_bounds_ms)
            or len(hello.bucket_bounds_ms) > MAX_BUCKETS_PER_EDGE
        ):
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"bucket_bounds_ms must ascend, at most {MAX_BUCKETS_PER_EDGE}",
            )
        if self._bind is not None:
            refusal = self._bind(context, hello)
            if refusal is not None:
                hub.counters["streamsRefused"] += 1
                await context.abort(*refusal)
        conn = hub.connect(hello, context.peer() or "", self._secure)
        if conn is None:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"this control plane takes at most {hub.max_streams} telemetry streams",
            )
            raise AssertionError("unreachable")
        rebin = Rebin(hello.bucket_bounds_ms)
        limiter = TokenBucket(REPORTS_PER_SECOND, REPORT_BURST, time.monotonic())
        writer = asyncio.create_task(self._write(conn, context), name="telemetry-write")
        log.info("telemetry stream from %s (%s)", conn.node_id, conn.peer)
        try:
            async for data in messages:
                message = await self._parse(data, context)
                kind = message.WhichOneof("kind")
                if kind == "report":
                    self._report(conn, message.report, rebin, limiter)
                elif kind == "tap_events":
                    hub.taps.on_events(conn, message.tap_events)
                else:
                    hub.counters["messagesInvalid"] += 1
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
            hub.disconnect(conn)
            log.info("telemetry stream from %s ended", conn.node_id)

    def _report(
        self, conn: ProxyConnection, report: pb.Report, rebin: Rebin, limiter: TokenBucket
    ) -> None:
        hub = self._hub
        if len(report.edges) > MAX_EDGES_PER_REPORT:
            hub.counters["reportsRefusedSize"] += 1
            self._refuse(conn, f"report refused: over {MAX_EDGES_PER_REPORT} edges")
            return
        if not limiter.take(time.monotonic()):
            hub.counters["reportsRefusedRate"] += 1
            self._refuse(
                conn,
                f"report refused: over {REPORTS_PER_SECOND:g} reports/s (burst {REPORT_BURST:g})",
            )
            return
        hub.ingest(conn, report, rebin, time.time())

    def _refuse(self, conn: ProxyConnection, why: str) -> None:
        conn.refused_reports += 1
        if conn.refused_reports <= 3 or conn.refused_reports % 100 == 0:
            log.warning("%s: %s", conn.node_id, why)
        conn.send(
            pb.ControlMessage(notice=pb.Notice(message=why, refused_reports=conn.refused_reports))
        )

    async def _parse(self, data: bytes, context: grpc.aio.ServicerContext) -> pb.ProxyMessage:
        hub = self._hub
        if len(data) > MAX_MESSAGE_BYTES:
            hub.counters["messagesRefusedSize"] += 1
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"a telemetry message takes at most {MAX_MESSAGE_BYTES} bytes, got {len(data)}",
            )
        message = pb.ProxyMessage()
        try:
            message.ParseFromString(data)
        except DecodeError:
            hub.counters["messagesInvalid"] += 1
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "not a ProxyMessage")
        return message

    async def _write(self, conn: ProxyConnection, context: grpc.aio.ServicerContext) -> None:
        while True:
            message = await conn.outbox.get()
            await context.write(message)
