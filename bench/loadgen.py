"""Open-loop HTTP/1.1 load at a fixed rate, latency from each request's scheduled send time.

Request i of a run is due at `start + i / rate`, whatever happened to the
requests before it (no coordinated omission): it goes out on an idle
keep-alive connection of a fixed pool, or waits in a backlog for the next
connection that frees up, and its latency runs from the time it was due to
the end of its response. Connections carry one request at a time (no
pipelining). Responses are parsed with httptools (llhttp), so content-length
and chunked bodies both end a request. A non-2xx status, a connection lost
with a request in flight, or a request still unanswered when the drain time
runs out is an error and gives no latency sample.

The run loop spins (yields to the event loop between checks of the clock)
instead of sleeping on loop timers, whose millisecond resolution would add up
to a millisecond of lateness per request: it is meant for a core of its own.
Each run reports how late requests actually left (`send_lag`) so a reader
can tell whether the generator kept the rate.

Must not know what serves the requests or what they are compared with.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import gc
import math
import time
from dataclasses import dataclass, field
from typing import cast

import httptools


def due_count(elapsed: float, rate: float, total: int) -> int:
    """How many of a run's `total` requests are due `elapsed` seconds after its start.

    Request i is due at i / rate, so request 0 is due at once.
    """
    if elapsed < 0:
        return 0
    return min(total, math.floor(elapsed * rate) + 1)


def request_bytes(host: str, path: str = "/") -> bytes:
    """An origin-form GET with the given Host header, keep-alive (HTTP/1.1 default)."""
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: trellis-bench\r\n\r\n".encode()


@dataclass(slots=True)
class OpenLoopResult:
    """One run: what was due, what came back, and how late requests left."""

    rate: float
    duration: float
    scheduled: int = 0
    sent: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    send_lag: list[float] = field(default_factory=list)  # actual send - scheduled, seconds
    errors: int = 0
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)
    last_send: float = 0.0  # seconds after the start when the last request left

    @property
    def ok(self) -> int:
        return len(self.latencies)

    @property
    def send_rate(self) -> float:
        """Requests sent per second over the run (the rate the generator kept)."""
        if self.sent < 2 or self.last_send <= 0:
            return 0.0
        return (self.sent - 1) / self.last_send


class _Conn(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight."""

    __slots__ = ("busy", "gen", "parser", "scheduled", "status", "transport")

    def __init__(self, gen: OpenLoop) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.scheduled = 0.0
        self.busy = False
        self.status = 0

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._broken()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.gen._lost(self)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()

    def on_message_complete(self) -> None:
        latency = time.perf_counter() - self.scheduled
        self.busy = False
        if not self.parser.should_keep_alive():
            self._broken()  # before _done, so the connection is not handed out again
        self.gen._done(self, self.status, latency)

    def send(self, scheduled: float, payload: bytes) -> None:
        assert self.transport is not None
        self.scheduled = scheduled
        self.busy = True
        self.transport.write(payload)

    def _broken(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class OpenLoop:
    """A pool of keep-alive connections to `host:port` sending `payload` at a fixed rate."""

    def __init__(self, host: str, port: int, payload: bytes, connections: int) -> None:
        self.host, self.port, self.payload, self.size = host, port, payload, connections
        self._idle: collections.deque[_Conn] = collections.deque()
        self._backlog: collections.deque[float] = collections.deque()
        self._conns: set[_Conn] = set()
        self._result: OpenLoopResult | None = None
        self._start = 0.0
        self._outstanding = 0
        self._closing = False
        self._reconnects: set[asyncio.Task[None]] = set()
        self.connect_errors = 0

    async def start(self) -> None:
        await asyncio.gather(*(self._open() for _ in range(self.size)))

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        self._conns.add(conn)
        self._ready(conn)

    async def aclose(self) -> None:
        self._closing = True
        for task in list(self._reconnects):
            task.cancel()
        for conn in list(self._conns):
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)

    async def run(self, rate: float, duration: float, drain: float = 2.0) -> OpenLoopResult:
        """Send `rate * duration` requests on schedule; wait up to `drain` s for the last ones."""
        total = round(rate * duration)
        result = self._result = OpenLoopResult(rate=rate, duration=duration, scheduled=total)
        self._backlog.clear()
        self._outstanding = 0
        interval = 1.0 / rate
        gc.collect()
        gc.disable()
        try:
            start = self._start = time.perf_counter() + 0.005
            index = 0
            while index < total:
                now = time.perf_counter()
                due = due_count(now - start, rate, total)
                while index < due:
                    self._dispatch(start + index * interval)
                    index += 1
                # Wake on a loop timer only when the next request is far off; otherwise spin.
                gap = start + index * interval - time.perf_counter()
                await asyncio.sleep(gap - 0.002 if gap > 0.003 else 0)
            deadline = time.perf_counter() + drain
            while self._outstanding and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
        finally:
            gc.enable()
        result.errors += self._outstanding + len(self._backlog)
        self._backlog.clear()
        self._result = None
        if self._outstanding:  # late answers must not land in the next run
            for conn in list(self._conns):
                if conn.busy and conn.transport is not None:
                    conn.transport.abort()
            self._outstanding = 0
        return result

    def _dispatch(self, scheduled: float) -> None:
        self._outstanding += 1
        if self._idle:
            self._send(self._idle.popleft(), scheduled)
        else:
            self._backlog.append(scheduled)

    def _send(self, conn: _Conn, scheduled: float) -> None:
        result = self._result
        assert result is not None
        now = time.perf_counter()
        result.sent += 1
        result.send_lag.append(now - scheduled)
        result.last_send = now - self._start
        conn.send(scheduled, self.payload)

    def _ready(self, conn: _Conn) -> None:
        if self._backlog and self._result is not None:
            self._send(conn, self._backlog.popleft())
        else:
            self._idle.append(conn)

    def _done(self, conn: _Conn, status: int, latency: float) -> None:
        result = self._result
        if result is not None:
            self._outstanding -= 1
            result.statuses[status] += 1
            if 200 <= status < 300:
                result.latencies.append(latency)
            else:
                result.errors += 1
        if conn.transport is not None and not conn.transport.is_closing():
            self._ready(conn)

    def _lost(self, conn: _Conn) -> None:
        self._conns.discard(conn)
        with contextlib.suppress(ValueError):
            self._idle.remove(conn)
        if conn.busy:
            conn.busy = False
            if self._result is not None:
                self._outstanding -= 1
                self._result.errors += 1
        if not self._closing:
            task = asyncio.get_running_loop().create_task(self._reopen())
            self._reconnects.add(task)
            task.add_done_callback(self._reconnects.discard)

    async def _reopen(self) -> None:
        for _ in range(50):
            try:
                await self._open()
                return
            except OSError:
                self.connect_errors += 1
                await asyncio.sleep(0.1)
