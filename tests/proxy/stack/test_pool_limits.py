"""The pool's connection limits, on real sockets on 127.0.0.1: a cluster never has more
than max_connections connections open or opening (counted by the backend as it accepts
them); a request that needs one beyond waits in the bounded pending queue, served by the
next connection released to its host's pool or a slot freed by a close or a failed
connect; beyond max_pending it hears on_pool_overflow at once; a waiting request can
cancel; an idle connection to another host is closed to make room."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from trellis.proxy.config.resources import CircuitLimits, ClusterConfig, EndpointConfig
from trellis.proxy.http1.head import ResponseHead
from trellis.proxy.stack.cluster import ClusterRuntime
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.pool import UpstreamConnection

RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


class Backend:
    """An HTTP/1.1 server that answers every request at once and counts its connections."""

    def __init__(self) -> None:
        self.accepted = 0
        self.open = 0
        self.most_open = 0
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                if not head:
                    break
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self.open -= 1
            writer.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


class User:
    """A request: sends a GET when it gets a connection; keeps it until told to let go."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.conn: UpstreamConnection | None = None
        self.events: list[str] = []
        self.done = asyncio.Event()

    def go(self) -> None:
        conn = self.host.pool.acquire(self)
        if conn is not None:
            self.on_connected(conn)

    def on_connected(self, conn: UpstreamConnection) -> None:
        self.events.append("connected")
        self.conn = conn
        conn.start(self, head_request=False)
        conn.write(b"GET / HTTP/1.1\r\nhost: backend\r\n\r\n")

    def on_connect_failed(self, reason: str) -> None:
        self.events.append("connect failed")
        self.done.set()

    def on_pool_overflow(self) -> None:
        self.events.append("overflow")
        self.done.set()

    def on_upstream_response(self, head: ResponseHead) -> None:
        self.events.append(f"response {head.status}")

    def on_upstream_body(self, data: bytes) -> None:
        pass

    def on_upstream_end(self) -> None:
        self.events.append("end")
        self.done.set()

    def on_upstream_lost(self, reason: str) -> None:
        self.events.append("lost")
        self.done.set()

    def on_upstream_paused(self, paused: bool) -> None:
        pass

    def on_upstream_flush(self) -> None:
        pass

    def on_upstream_fault(self) -> None:
        self.events.append("fault")

    def release(self, reusable: bool = True) -> None:
        conn, self.conn = self.conn, None
        assert conn is not None
        conn.release(reusable)


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    b = Backend()
    await b.start()
    try:
        yield b
    finally:
        await b.close()


def runtime(ports: list[int], max_connections: int, max_pending: int) -> ClusterRuntime:
    limits = CircuitLimits(max_connections=max_connections, max_pending=max_pending)
    endpoints = tuple(EndpointConfig("127.0.0.1", p) for p in ports)
    return ClusterRuntime(ClusterConfig("c", discovery="STATIC", limits=limits), endpoints)


async def settle(users: list[User]) -> None:
    await asyncio.wait_for(asyncio.gather(*(u.done.wait() for u in users)), 5)
    for u in users:
        u.done.clear()


async def test_never_more_connections_than_the_limit_and_waiters_get_released_ones(
    backend: Backend,
) -> None:
    cluster = runtime([backend.port], max_connections=2, max_pending=2)
    host = cluster.hosts[0]
    users = [User(host) for _ in range(5)]
    for u in users:
        u.go()
    # The fifth: the two connections are taken, two requests wait: refused at once.
    assert users[4].events == ["overflow"]
    assert cluster.breaker.overflow_pending == 1
    assert cluster.breaker.overflow_connections == 3  # three needed a connection beyond
    assert cluster.breaker.pending == 2 and len(cluster.counters.waiting) == 2
    await settle(users[:2])
    assert users[2].events == users[3].events == []
    assert backend.accepted == 2
    # A released connection goes to the first waiter, not to the idle list.
    first = users[0].conn
    users[0].release()
    await settle([users[2]])
    assert users[2].conn is first and users[2].events == ["connected", "response 200", "end"]
    assert cluster.breaker.pending == 1
    # A closed connection frees a slot: the next waiter gets a new one.
    users[1].release(reusable=False)
    await settle([users[3]])
    assert users[3].events == ["connected", "response 200", "end"]
    assert cluster.breaker.pending == 0 and not cluster.counters.waiting
    assert backend.accepted == 3 and backend.most_open == 2
    assert cluster.counters.active == 2
    stats = cluster.statistics()
    assert stats["circuit_breaker"]["overflow"]["pending"] == 1
    assert stats["connections"] == 2 and stats["pending_requests"] == 0
    cluster.close()


async def test_a_waiting_request_can_cancel(backend: Backend) -> None:
    cluster = runtime([backend.port], max_connections=1, max_pending=1)
    host = cluster.hosts[0]
    a, b, c = User(host), User(host), User(host)
    a.go()
    b.go()
    assert host.pool.cancel(b) and cluster.breaker.pending == 0
    assert not host.pool.cancel(b)  # once
    c.go()  # its place is free again
    assert c.events == [] and cluster.breaker.pending == 1
    await settle([a])
    a.release()
    await settle([c])
    assert b.events == [] and c.events[0] == "connected"
    cluster.close()


async def test_an_idle_connection_to_another_host_is_closed_to_make_room() -> None:
    one, two = Backend(), Backend()
    await one.start()
    await two.start()
    try:
        cluster = runtime([one.port, two.port], max_connections=1, max_pending=4)
        first, second = User(cluster.hosts[0]), User(cluster.hosts[1])
        first.go()
        await settle([first])
        first.release()  # idle in host 0's pool, holding the cluster's only slot
        assert cluster.hosts[0].pool.idle_count == 1
        second.go()
        await settle([second])
        assert second.events == ["connected", "response 200", "end"]
        assert cluster.hosts[0].pool.idle_count == 0
        assert cluster.counters.active == 1 and two.accepted == 1
        cluster.close()
    finally:
        await one.close()
        await two.close()


async def test_a_failed_connect_frees_its_slot_for_the_next_waiter(backend: Backend) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    cluster = runtime([dead, backend.port], max_connections=1, max_pending=4)
    a, b = User(cluster.hosts[0]), User(cluster.hosts[1])
    a.go()
    b.go()  # waits: a's connect holds the only slot
    assert cluster.counters.opening == 1 and cluster.breaker.pending == 1
    await settle([a, b])
    assert a.events == ["connect failed"]
    assert b.events == ["connected", "response 200", "end"]
    assert cluster.counters.opening == 0 and cluster.counters.active == 1
    cluster.close()


async def test_raising_the_limit_serves_the_waiters(backend: Backend) -> None:
    cluster = runtime([backend.port], max_connections=1, max_pending=4)
    users = [User(cluster.hosts[0]) for _ in range(3)]
    for u in users:
        u.go()
    await settle(users[:1])
    limits = CircuitLimits(max_connections=3, max_pending=4)
    cluster.update(
        ClusterConfig("c", discovery="STATIC", limits=limits),
        (EndpointConfig("127.0.0.1", backend.port),),
    )
    await settle(users[1:])
    assert backend.most_open == 3
    cluster.close()
