"""The ADS server: grpc.aio transport around one `AdsStream` state machine per stream.

Each stream has two tasks. A reader task moves the client's requests into
the stream's inbox; the handler task (gRPC's own) takes from the inbox,
feeds `AdsStream` and writes its responses, so one writer only. `push()`
drops a single "push" marker in every inbox (repeated pushes while one is
queued merge into it), so each stream recomputes from the newest
PushContext. When the client goes away gRPC cancels the handler; the
`finally` ends the reader and forgets the stream.

The reader keeps at most `REQUEST_BACKLOG` requests waiting for the handler,
then stops reading until the handler takes one: HTTP/2 flow control holds the
client's next message. (Unbounded, a client that wrote requests and never read
the responses grew the control plane by 1.2 GB in seconds: the handler waited
on its write, the reader queued everything.) Each request is also bounded in
size: `grpc.max_receive_message_length` (trellis.control.limits).

A server may be registered with a `StreamGuard` (the secure port does): the
guard admits the stream before it is served (`admit`, from the gRPC context:
who is calling) and binds the node of its first request (`bind`); either may
refuse with `StreamRefused`, which ends the stream with that status before any
resource is sent. Without a guard (the plaintext port) every stream is served.

Owns: gRPC registration, the per-stream tasks, the set of live streams.
Must not know: how resources are generated (the injected `generate`), what a
PushContext contains, where pushes come from, or how callers are authenticated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Protocol

import grpc
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

from trellis.control.push.context import PushContext
from trellis.control.translate import api as translate
from trellis.control.translate.node import NodeInfo
from trellis.control.xds.status import NodeStatus
from trellis.control.xds.stream import AdsStream, BadRequest, GenerateFn, parse_node

log = logging.getLogger("trellis.xds")

_PUSH: Final = object()  # inbox marker: a new PushContext is waiting
# Requests read ahead of the handler, per stream. A client has at most one request per
# type in flight (an ACK/NACK or a new subscription), so 8 never holds a client back.
REQUEST_BACKLOG: Final = 8
_EOF: Final = object()  # inbox marker: the client stopped sending


class StreamRefused(Exception):
    """A guard refuses a stream: it ends with `code` and `message`."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class Admission:
    """A stream a guard let in: the caller's address to show, and what the guard knows of it."""

    peer: str
    principal: object = None


class StreamGuard(Protocol):
    def admit(self, context: grpc.aio.ServicerContext) -> Admission:
        """Before the stream is served; raises StreamRefused."""
        ...

    def bind(self, admission: Admission, node: NodeInfo) -> None:
        """When the first request names the node; raises StreamRefused."""
        ...


class _Connection:
    """One live stream: its protocol state and its inbox."""

    __slots__ = ("inbox", "push_queued", "room", "stream")

    def __init__(self, stream: AdsStream) -> None:
        self.stream = stream
        # Requests (at most REQUEST_BACKLOG + 1, see `_read`), one push marker, EOF.
        self.inbox: asyncio.Queue[object] = asyncio.Queue()
        self.push_queued = False
        self.room = asyncio.Semaphore(REQUEST_BACKLOG)

    def notify_push(self) -> None:
        if not self.push_queued:
            self.push_queued = True
            self.inbox.put_nowait(_PUSH)


class AdsServer:
    """Serves StreamAggregatedResources (state of the world) to every connected node.

    `push()` and the queries must be called on the event loop the gRPC server runs on.
    """

    def __init__(
        self, generate: GenerateFn = translate.generate, push: PushContext | None = None
    ) -> None:
        self._generate = generate
        self._push = push if push is not None else PushContext.empty()
        self._connections: set[_Connection] = set()
        self._stats = {"streams_total": 0, "pushes": 0, "responses": 0, "refused": 0}

    def register(self, server: grpc.aio.Server, guard: StreamGuard | None = None) -> None:
        """Add the AggregatedDiscoveryService servicer to `server` (before it starts); with a
        `guard`, every stream on that server must pass it."""
        ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
            _Servicer(self, guard), server
        )

    def push(self, push: PushContext) -> None:
        """Adopt `push`; every stream recomputes and sends what changed for it. Non-blocking."""
        self._push = push
        self._stats["pushes"] += 1
        log.debug(
            "push revision %s to %d streams", getattr(push, "revision", "?"), len(self._connections)
        )
        for connection in self._connections:
            connection.notify_push()

    @property
    def current(self) -> PushContext:
        return self._push

    def statistics(self) -> dict[str, int]:
        """Counters since start, and the streams open now."""
        return {**self._stats, "streams": len(self._connections)}

    def nodes(self) -> list[NodeStatus]:
        """One status per stream that has identified its node, sorted by node id."""
        statuses = [s for c in self._connections if (s := c.stream.status()) is not None]
        return sorted(statuses, key=lambda s: (s.node_id, s.connected_at, s.peer))

    def node_infos(self) -> list[NodeInfo]:
        """The node facts of every stream that has identified its node, as its resources are
        generated (`trellis explain` takes the request as those nodes would), sorted by id."""
        infos = [c.stream.node for c in self._connections if c.stream.node is not None]
        return sorted(infos, key=lambda n: n.id)

    def subscribers(self, resource_name: str) -> list[str]:
        """Ids of the nodes subscribed to `resource_name` under any type, sorted."""
        return sorted(
            {
                c.stream.node.id
                for c in self._connections
                if c.stream.node is not None and c.stream.subscribes(resource_name)
            }
        )

    async def serve_stream(
        self,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
        guard: StreamGuard | None = None,
    ) -> None:
        admission: Admission | None = None
        if guard is not None:
            try:
                admission = guard.admit(context)
            except StreamRefused as exc:
                await self._refuse(context, exc, context.peer() or "")
                return
        peer = admission.peer if admission is not None else context.peer() or ""
        stream = AdsStream(
            self._generate,
            self._push,
            peer=peer,
            connected_at=time.time(),
            secure=admission is not None,
        )
        connection = _Connection(stream)
        self._connections.add(connection)
        self._stats["streams_total"] += 1
        reader = asyncio.create_task(_read(requests, connection))
        try:
            await self._handle(connection, context, guard, admission)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
            self._connections.discard(connection)
            if stream.node is not None:
                log.info(
                    "xDS disconnect: %s from %s after %.1fs",
                    stream.node.id,
                    stream.peer,
                    time.time() - stream.connected_at,
                )

    async def _refuse(
        self, context: grpc.aio.ServicerContext, exc: StreamRefused, peer: str
    ) -> None:
        log.warning("xDS stream from %s refused: %s", peer, exc.message)
        self._stats["refused"] += 1
        await context.abort(exc.code, exc.message)

    async def _handle(
        self,
        connection: _Connection,
        context: grpc.aio.ServicerContext,
        guard: StreamGuard | None = None,
        admission: Admission | None = None,
    ) -> None:
        stream = connection.stream
        while True:
            item = await connection.inbox.get()
            if item is _EOF:
                return
            if item is _PUSH:
                connection.push_queued = False
                responses = stream.on_push(self._push)
            else:
                assert isinstance(item, discovery_pb2.DiscoveryRequest)
                connection.room.release()
                known = stream.node is not None
                try:
                    if not known and guard is not None and admission is not None:
                        guard.bind(admission, parse_node(item))
                    responses = stream.on_request(item)
                except StreamRefused as exc:
                    await self._refuse(context, exc, stream.peer)
                    return
                except BadRequest as exc:
                    log.warning("xDS stream from %s refused: %s", stream.peer, exc)
                    self._stats["refused"] += 1
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
                    return
                if not known and stream.node is not None:
                    log.info(
                        "xDS connect: %s (%s) from %s",
                        stream.node.id,
                        stream.node.kind,
                        stream.peer,
                    )
            for response in responses:
                await context.write(response)
                self._stats["responses"] += 1


async def _read(
    requests: AsyncIterator[discovery_pb2.DiscoveryRequest], connection: _Connection
) -> None:
    """Move requests into the inbox until the client half-closes or goes away, then EOF;
    with `REQUEST_BACKLOG` of them waiting for the handler, read no further."""
    try:
        async for request in requests:
            connection.inbox.put_nowait(request)
            await connection.room.acquire()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the client went away mid-read; the handler ends on EOF
        log.debug("xDS stream read ended: %r", exc)
    connection.inbox.put_nowait(_EOF)


class _Servicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, server: AdsServer, guard: StreamGuard | None) -> None:
        self._server = server
        self._guard = guard

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        await self._server.serve_stream(request_iterator, context, self._guard)

    async def DeltaAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        await context.abort(
            grpc.StatusCode.UNIMPLEMENTED, "Trellis serves state-of-the-world ADS only"
        )
