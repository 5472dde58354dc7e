"""The proxy's ADS client: one grpc.aio stream to the control plane, kept alive forever.

Theory of operation:
- `async with AdsClient(...)` starts one task that keeps a stream open:
  connect to `servers[i]` (a fresh channel, so gRPC's own reconnect backoff
  never stands in for ours), wait until the channel is READY, open
  `StreamAggregatedResources`, resubscribe every type that has names, then
  read responses until the stream ends. Then sleep a full-jitter backoff
  (reset after a stream that delivered a response), move to the next server
  and try again. Leaving the `async with` cancels the task, the call and the
  channel.
- Per stream, a reader task applies each response through the handler (on
  the event loop, synchronously) and queues its ACK or NACK; a writer task
  is the only one that writes. `subscribe()`/`unsubscribe()` change the
  state at once and queue a marker for the type; the writer builds the
  request from the state when it gets there, so a burst of calls coalesces
  into one request, and an ACK/NACK queued after a marker makes the marker
  moot (it carries the current names already).
- On disconnect the handler is told only `on_connection(False, server)`: it
  keeps what it holds; nobody hands it empty data.

Owns: the channel, the stream, reconnect and failover. Must not know what
resources mean: the handler validates and applies them (`protocol.py` does
the ACK/NACK bookkeeping). On failure: nothing escapes the task; every
failure is logged on "trellis.proxy.xds" and counted in `statistics()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Final, Protocol

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2

from trellis.keepalive import SIDECAR_ADS, ClientKeepalive
from trellis.proxy.xds.backoff import Backoff
from trellis.proxy.xds.protocol import AdsProtocol
from trellis.proxy.xds.type_urls import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    short_name,
)

log = logging.getLogger("trellis.proxy.xds")

CONNECT_TIMEOUT: Final = 10.0  # seconds from a fresh channel to READY before we move on
_CHANNEL_OPTIONS: Final = (
    # Our own channel per attempt: a shared subchannel would carry gRPC's reconnect
    # backoff (up to 120 s) from one attempt to the next.
    ("grpc.use_local_subchannel_pool", 1),
    # The control plane may send big snapshots (all of a mesh's endpoints).
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
)


def _channel_options(keepalive: ClientKeepalive = SIDECAR_ADS) -> list[tuple[str, int]]:
    # gRPC keeps a handshake going for max(min_reconnect_backoff, initial backoff), 20 s by
    # default, even after the channel is closed: make it give up when we do.
    connect_ms = max(1, int(CONNECT_TIMEOUT * 1000))
    return [
        *_CHANNEL_OPTIONS,
        # Pings that notice a silently dead control plane, no more often than it permits
        # (trellis.keepalive holds both sides' numbers).
        *keepalive.grpc_options(),
        ("grpc.min_reconnect_backoff_ms", connect_ms),
        ("grpc.initial_reconnect_backoff_ms", connect_ms),
    ]


class XdsHandler(Protocol):
    """What the proxy does with what the control plane sends."""

    def on_response(
        self,
        type_url: str,
        version: str,
        resources: Sequence[any_pb2.Any],
        errors: Mapping[str, str],
    ) -> str | None:
        """Apply one whole SotW response for one type.

        None ACKs; a string NACKs with that reason, and then the handler must
        have applied nothing. `errors` maps names to the control plane's
        `resource_errors` messages (NOT_FOUND). Every response is passed on,
        also for a type whose names were all unsubscribed meanwhile
        (`AdsClient.subscriptions()` says what is wanted now). Runs on the
        event loop; must not block. An exception counts as a NACK with its text.
        """
        ...

    def on_connection(self, connected: bool, server: str) -> None:
        """The stream to `server` opened (True) or ended (False). Optional."""
        ...


class _Outbox:
    """The writer's queue, in order: subscription markers (type URLs) and built ACK/NACKs.

    A marker says "tell the server this type's current names". An ACK/NACK
    queued after it carries those names already, so it voids the marker; a
    later change queues a new marker *behind* the ACK/NACK (never reviving the
    old one, which would overtake it with the ACK's nonce and no error).
    """

    def __init__(self) -> None:
        self._items: deque[tuple[str, int] | discovery_pb2.DiscoveryRequest] = deque()
        self._live: dict[str, int] = {}  # type URL -> token of its queued, still wanted marker
        self._tokens = itertools.count()
        self._ready = asyncio.Event()

    def put_type(self, type_url: str) -> None:
        if type_url not in self._live:
            token = self._live[type_url] = next(self._tokens)
            self._items.append((type_url, token))
            self._ready.set()

    def put_request(self, request: discovery_pb2.DiscoveryRequest) -> None:
        self._live.pop(request.type_url, None)
        self._items.append(request)
        self._ready.set()

    def get_nowait(self) -> str | discovery_pb2.DiscoveryRequest | None:
        """The next request or marker's type URL; None when nothing is queued."""
        while self._items:
            item = self._items.popleft()
            if not isinstance(item, tuple):
                return item
            type_url, token = item
            if self._live.get(type_url) == token:
                del self._live[type_url]
                return type_url
        return None

    async def get(self) -> str | discovery_pb2.DiscoveryRequest:
        while (item := self.get_nowait()) is None:
            self._ready.clear()
            await self._ready.wait()
        return item


class AdsClient:
    """Keeps an ADS stream to one of `servers` (`host:port`, in order of preference)."""

    def __init__(
        self,
        servers: Sequence[str],
        node: base_pb2.Node,
        handler: XdsHandler,
        *,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        channel_credentials: grpc.ChannelCredentials
        | Callable[[], grpc.ChannelCredentials]
        | None = None,
        channel_options: Sequence[tuple[str, Any]] = (),
        keepalive: ClientKeepalive = SIDECAR_ADS,
    ) -> None:
        if isinstance(servers, str) or not servers:
            raise ValueError("servers must be a non-empty sequence of 'host:port' strings")
        self._servers = tuple(servers)
        self._handler = handler
        self._protocol = AdsProtocol(node)
        self._backoff = Backoff(backoff_base, backoff_max)
        # Credentials, or a function giving the current ones: called at each connection
        # attempt, so a renewed client certificate is used from the next reconnect on.
        self._credentials = channel_credentials
        self._extra_options = list(channel_options)
        self._keepalive = keepalive
        self._index = 0
        self._task: asyncio.Task[None] | None = None
        self._outbox: _Outbox | None = None  # set while a stream is open
        self._connected = False
        self._stats: dict[str, Any] = {
            "attempts": 0,
            "connects": 0,
            "connectFailures": 0,
            "streamErrors": 0,
            "handlerErrors": 0,
            "errors": 0,
        }
        self._last_error: str | None = None
        self._connected_since: float | None = None
        self._retry_at: float | None = None  # time.time() of the next attempt while waiting

    # -- subscriptions (never block) --------------------------------------------------------

    def subscribe(self, type_url: str, names: Iterable[str]) -> None:
        """Add `names` to the subscription; the server hears of it at once when connected."""
        if self._protocol.subscribe(type_url, names) and self._outbox is not None:
            self._outbox.put_type(type_url)

    def unsubscribe(self, type_url: str, names: Iterable[str]) -> None:
        """Remove `names`; the server stops sending them."""
        if self._protocol.unsubscribe(type_url, names) and self._outbox is not None:
            self._outbox.put_type(type_url)

    def subscriptions(self, type_url: str) -> frozenset[str]:
        return self._protocol.subscriptions(type_url)

    # -- lifetime ---------------------------------------------------------------------------

    async def __aenter__(self) -> AdsClient:
        if self._task is not None:
            raise RuntimeError("AdsClient is already running")
        self._task = asyncio.create_task(self._run(), name="xds-ads-client")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the stream-keeping task; the call and the channel close with it."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    @property
    def connected(self) -> bool:
        return self._connected

    def statistics(self) -> dict[str, Any]:
        """JSON-able: the server, connection state and counters, and per type the protocol state."""
        return {
            "server": self._servers[self._index],
            "servers": list(self._servers),
            "connected": self._connected,
            "connectedSince": self._connected_since,
            "retryAt": self._retry_at,
            "backoffAttempt": self._backoff.attempt,
            **self._stats,
            "lastError": self._last_error,
            "types": self._protocol.statistics(),
        }

    # -- the stream-keeping task ------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            server = self._servers[self._index]
            self._stats["attempts"] += 1
            try:
                delivered = await self._attempt(server)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a bug of ours: log it, count it, keep going
                log.exception("xDS client error with %s", server)
                self._stats["errors"] += 1
                self._last_error = repr(exc)
                delivered = False
            if delivered:
                self._backoff.reset()
            self._index = (self._index + 1) % len(self._servers)
            delay = self._backoff.next_delay()
            self._retry_at = time.time() + delay
            log.debug("next xDS attempt in %.2fs to %s", delay, self._servers[self._index])
            try:
                await asyncio.sleep(delay)
            finally:
                self._retry_at = None

    async def _attempt(self, server: str) -> bool:
        """Connect to `server` and serve one stream; True when it delivered a response."""
        options = [*_channel_options(self._keepalive), *self._extra_options]
        credentials = self._credentials
        if callable(credentials):
            credentials = credentials()
        if credentials is not None:
            channel = grpc.aio.secure_channel(server, credentials, options=options)
        else:
            channel = grpc.aio.insecure_channel(server, options=options)
        try:
            reason = await _wait_ready(channel)
            if reason is not None:
                self._stats["connectFailures"] += 1
                self._last_error = f"{server}: {reason}"
                log.warning(
                    "xDS server %s unreachable (%s); attempt %d",
                    server,
                    reason,
                    self._backoff.attempt + 1,
                )
                return False
            return await self._serve(channel, server)
        finally:
            await channel.close()

    async def _serve(self, channel: grpc.aio.Channel, server: str) -> bool:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
        call = stub.StreamAggregatedResources()
        outbox = _Outbox()
        for type_url in self._protocol.stream_started():
            outbox.put_type(type_url)
        self._outbox = outbox
        self._stats["connects"] += 1
        self._set_connected(True, server)
        log.info("xDS stream open to %s", server)
        responses = [0]
        reader = asyncio.create_task(self._read(call, outbox, responses), name="xds-read")
        writer = asyncio.create_task(self._write(call, outbox), name="xds-write")
        try:
            await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._outbox = None
            call.cancel()
            for task in (reader, writer):
                task.cancel()
            outcome = await asyncio.gather(reader, writer, return_exceptions=True)
            self._set_connected(False, server)
        self._log_end(server, outcome[0], outcome[1], responses[0])
        return responses[0] > 0

    async def _read(self, call: Any, outbox: _Outbox, responses: list[int]) -> None:
        while True:
            response = await call.read()
            if response is grpc.aio.EOF:
                return
            outbox.put_request(self._protocol.on_response(response, self._apply))
            # Counted once applied: a response that breaks us must not reset the backoff.
            responses[0] += 1

    async def _write(self, call: Any, outbox: _Outbox) -> None:
        while True:
            request = self._protocol.outgoing(await outbox.get())
            if request is not None:
                await call.write(request)

    def _apply(
        self,
        type_url: str,
        version: str,
        resources: Sequence[any_pb2.Any],
        errors: Mapping[str, str],
    ) -> str | None:
        try:
            reason = self._handler.on_response(type_url, version, resources, errors)
        except Exception as exc:
            self._stats["handlerErrors"] += 1
            log.exception("xDS handler failed on %s version %s", short_name(type_url), version)
            return f"handler error: {exc!r}"
        if reason is not None:
            log.warning("NACK %s version %s: %s", short_name(type_url), version, reason)
        return reason

    def _set_connected(self, connected: bool, server: str) -> None:
        self._connected = connected
        self._connected_since = time.time() if connected else None
        notify = getattr(self._handler, "on_connection", None)
        if notify is None:
            return
        try:
            notify(connected, server)
        except Exception:
            self._stats["handlerErrors"] += 1
            log.exception("xDS handler failed on_connection(%s, %s)", connected, server)

    def _log_end(self, server: str, read: object, write: object, responses: int) -> None:
        """Log and count how a stream ended (`read`/`write`: the tasks' results or errors)."""
        error = next(
            (
                r
                for r in (read, write)
                if isinstance(r, BaseException) and not isinstance(r, asyncio.CancelledError)
            ),
            None,
        )
        if isinstance(error, grpc.aio.AioRpcError):
            reason = f"{error.code().name}: {error.details()}"
        elif error is not None:
            reason = repr(error)
        else:
            reason = "closed by the server"
        if error is not None:
            self._stats["streamErrors"] += 1
        self._last_error = f"{server}: {reason}"
        log.warning("xDS stream to %s ended after %d responses: %s", server, responses, reason)


async def _wait_ready(channel: grpc.aio.Channel) -> str | None:
    """Wait until the channel is READY (None) or failed to connect (the reason)."""

    async def ready() -> str | None:
        state = channel.get_state(try_to_connect=True)
        while state != grpc.ChannelConnectivity.READY:
            if state in (
                grpc.ChannelConnectivity.TRANSIENT_FAILURE,
                grpc.ChannelConnectivity.SHUTDOWN,
            ):
                return f"channel {state.name}"
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)
        return None

    try:
        return await asyncio.wait_for(ready(), CONNECT_TIMEOUT)
    except TimeoutError:
        return f"not connected after {CONNECT_TIMEOUT:g}s"


__all__ = [
    "CLUSTER_TYPE",
    "CONNECT_TIMEOUT",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "AdsClient",
    "XdsHandler",
]
