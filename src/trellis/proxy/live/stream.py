"""The proxy's telemetry stream: reports every REPORT_INTERVAL, tap events as they come.

Theory of operation:
- `async with TelemetryClient(...)` starts one task that keeps a stream open to one of the
  control plane's addresses (the ADS stream's addresses and credentials: plaintext xDS
  port, or the secure port with the proxy's mesh certificate): connect, say Hello, then
  a writer sends a Report every REPORT_INTERVAL (the metrics registry's deltas, from
  `SignalsSource`) and tap batches every TAP_FLUSH, while a reader applies TapStart /
  TapStop and logs Notices. When the stream ends: full-jitter backoff (reset after a
  stream that carried a report), the next address, again.
- Deltas are taken when a report is built: a report lost with its stream is lost (the
  control plane's figures dip; nothing piles up here). Taps end with the stream (the
  control plane starts them again on the next one) and on their own duration.
- The request path never waits on any of this: the recorder only appends to a bounded
  tap batch; everything else runs in this task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeAlias

import grpc

from trellis.proxy.live.signals_source import SignalsSource
from trellis.proxy.live.tap import ProxyTaps
from trellis.proxy.xds.backoff import Backoff
from trellis.proxy.xds.client import CONNECT_TIMEOUT
from trellis.telemetry_api import telemetry_pb2 as pb

log = logging.getLogger("trellis.proxy.telemetry")

REPORT_INTERVAL: Final = 2.0
TAP_FLUSH: Final = 0.2
STREAM_METHOD: Final = "/trellis.telemetry.v1.Telemetry/Stream"
Credentials: TypeAlias = grpc.ChannelCredentials | Callable[[], grpc.ChannelCredentials] | None


class TelemetryClient:
    def __init__(
        self,
        servers: Sequence[str],
        hello: pb.Hello,
        source: SignalsSource,
        taps: ProxyTaps,
        *,
        credentials: Credentials = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        report_interval: float = REPORT_INTERVAL,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
    ) -> None:
        self._servers = tuple(servers)
        self._hello = hello
        hello.report_interval_ms = int(report_interval * 1000)
        del hello.bucket_bounds_ms[:]
        hello.bucket_bounds_ms.extend(source.bounds_ms)
        self._source = source
        self._taps = taps
        self._credentials = credentials
        self._options = list(channel_options)
        self._interval = report_interval
        self._backoff = Backoff(backoff_base, backoff_max)
        self._index = 0
        self._task: asyncio.Task[None] | None = None
        self._last_report = time.monotonic()
        self.stats = {"streams": 0, "reports": 0, "tapBatches": 0, "notices": 0, "errors": 0}
        self.last_notice = ""
        self.connected = False

    async def __aenter__(self) -> TelemetryClient:
        self._task = asyncio.create_task(self._run(), name="telemetry-client")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def statistics(self) -> dict[str, Any]:
        return {
            "server": self._servers[self._index],
            "connected": self.connected,
            **self.stats,
            "lastNotice": self.last_notice or None,
            "taps": self._taps.statistics(),
        }

    async def _run(self) -> None:
        while True:
            server = self._servers[self._index]
            try:
                worked = await self._attempt(server)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("telemetry stream to %s failed", server)
                self.stats["errors"] += 1
                worked = False
            self.connected = False
            self._taps.stop_all()
            if worked:
                self._backoff.reset()
            self._index = (self._index + 1) % len(self._servers)
            await asyncio.sleep(self._backoff.next_delay())

    async def _attempt(self, server: str) -> bool:
        options = [("grpc.use_local_subchannel_pool", 1), *self._options]
        credentials = self._credentials() if callable(self._credentials) else self._credentials
        if credentials is not None:
            channel = grpc.aio.secure_channel(server, credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(server, options=options)
        try:
            try:
                await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT)
            except TimeoutError:
                log.debug("telemetry: %s not reachable", server)
                return False
            call = channel.stream_stream(
                STREAM_METHOD,
                request_serializer=pb.ProxyMessage.SerializeToString,
                response_deserializer=pb.ControlMessage.FromString,
            )()
            await call.write(pb.ProxyMessage(hello=self._hello))
            self.connected = True
            self.stats["streams"] += 1
            reports_before = self.stats["reports"]
            reader = asyncio.create_task(self._read(call), name="telemetry-read")
            writer = asyncio.create_task(self._write(call), name="telemetry-write")
            try:
                await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                call.cancel()
                for task in (reader, writer):
                    task.cancel()
                outcome = await asyncio.gather(reader, writer, return_exceptions=True)
            for result in outcome:
                if isinstance(result, grpc.aio.AioRpcError):
                    log.warning(
                        "telemetry stream to %s ended: %s %s",
                        server,
                        result.code().name,
                        result.details(),
                    )
            return self.stats["reports"] > reports_before
        finally:
            await channel.close()

    async def _read(self, call: Any) -> None:
        while True:
            message = await call.read()
            if message is grpc.aio.EOF:
                return
            kind = message.WhichOneof("kind")
            if kind == "tap_start":
                self._taps.start(message.tap_start)
            elif kind == "tap_stop":
                self._taps.stop(message.tap_stop.tap_id)
            elif kind == "notice":
                self.stats["notices"] += 1
                self.last_notice = message.notice.message
                log.warning("control plane: %s", message.notice.message)

    async def _write(self, call: Any) -> None:
        loop = asyncio.get_running_loop()
        next_report = loop.time() + self._interval
        sequence = 0
        while True:
            await asyncio.sleep(TAP_FLUSH if self._taps.active else min(self._interval, 0.5))
            for batch in self._taps.batches():
                await call.write(pb.ProxyMessage(tap_events=batch))
                self.stats["tapBatches"] += 1
            if loop.time() < next_report:
                continue
            next_report = loop.time() + self._interval
            sequence += 1
            now = time.monotonic()
            interval, self._last_report = now - self._last_report, now
            edges = self._source.deltas()
            report = pb.Report(
                sequence=sequence,
                interval_ms=int(interval * 1000),
                edges=edges,
                overflowed=self._source.overflowed,
            )
            await call.write(pb.ProxyMessage(report=report))
            self.stats["reports"] += 1
