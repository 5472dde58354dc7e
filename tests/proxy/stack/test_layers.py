"""The layers of stack/chain.py, driven through a real ServerConnection and Exchange whose
only fake is the client's transport (what the sidecar writes is recorded): route
actions, fault aborts, the local rate limit (429 RL and its headers), the circuit
breaker's max_requests (503 UO), no cluster (503 NC). Compiled and interpreted (`make
test` runs tests/proxy twice)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from envoy.config.route.v3 import route_components_pb2

from trellis.proxy.config.resources import CircuitLimits, ClusterConfig
from trellis.proxy.config.state import ConfigState
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.listeners.server import ServerConnection
from trellis.proxy.stack.cluster import ClusterManager, ClusterRuntime
from trellis.proxy.stack.context import ListenerContext
from trellis.proxy.stack.exchange import Exchange
from trellis.routing import DirectResponseAction, FaultPolicy, ForwardAction, RedirectAction, Route
from trellis.routing.matchers import compile_match
from trellis.routing.ratelimit import TokenBucket


class FakeTransport(asyncio.Transport):
    """The client's side of the connection: keeps what the sidecar writes."""

    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def write(self, data: Any) -> None:
        self.written += data

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class Handler:
    """A listener with one route for every request."""

    def __init__(self, ctx: ListenerContext, route: Route) -> None:
        self.ctx = ctx
        self.route = route

    def start(self, conn: ServerConnection, head: RequestHead) -> Exchange:
        ex = Exchange(conn, head, self.ctx)
        ex.run(self.route)
        return ex

    def protocol_error(self, conn: ServerConnection, error: Exception) -> None:
        pass


@pytest.fixture
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


class Sidecar:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.state = ConfigState()
        self.clusters = ClusterManager(self.state)
        self.recorded: list[Exchange] = []
        self.ctx = ListenerContext("outbound", self.state, self.clusters, self.recorded.append)
        self.ctx.config_wait = 0.05

    def add_cluster(self, name: str, limits: CircuitLimits) -> ClusterRuntime:
        cluster = ClusterRuntime(ClusterConfig(name=name, discovery="STATIC", limits=limits), ())
        self.clusters.clusters[name] = cluster
        return cluster

    def request(self, route: Route, data: bytes = b"GET /x HTTP/1.1\r\nHost: svc\r\n\r\n") -> bytes:
        transport = FakeTransport()
        conn = ServerConnection(Handler(self.ctx, route))  # type: ignore[arg-type]
        conn.connection_made(transport)
        conn.data_received(data)
        # Deferred work (a wait for config) runs on the loop: run it until answered.
        self.loop.run_until_complete(answered(transport))
        return bytes(transport.written)


async def answered(transport: FakeTransport, within: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while b"\r\n\r\n" not in transport.written:
        assert loop.time() < deadline, "no answer"
        await asyncio.sleep(0.005)


def route(action: object = None, **kw: Any) -> Route:
    match = compile_match(route_components_pb2.RouteMatch(prefix="/"), "match")
    return Route("r", match, action or ForwardAction([("svc", 1)]), **kw)  # type: ignore[arg-type]


def status_and_flags(data: bytes) -> tuple[int, str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    flags = ""
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "x-trellis-flags":
            flags = value.strip()
    return int(head[0].split(" ")[1]), flags


def test_a_direct_response_and_a_redirect_are_answered_by_the_route(
    loop: asyncio.AbstractEventLoop,
) -> None:
    sidecar = Sidecar(loop)
    assert sidecar.request(route(DirectResponseAction(418, b"tea"))).endswith(b"\r\n\r\ntea")
    data = sidecar.request(route(RedirectAction(host="elsewhere", status=301)))
    assert status_and_flags(data) == (301, "") and b"location: http://elsewhere/x" in data


def test_a_fault_abort_is_answered_with_flag_fi(loop: asyncio.AbstractEventLoop) -> None:
    fault = FaultPolicy(abort_http_status=503, abort_fraction=1.0)
    assert status_and_flags(Sidecar(loop).request(route(fault=fault))) == (503, "FI")


def test_the_rate_limit_refuses_beyond_its_tokens_with_429_rl_and_its_headers(
    loop: asyncio.AbstractEventLoop,
) -> None:
    sidecar = Sidecar(loop)
    bucket = TokenBucket(max_tokens=2, tokens_per_fill=2, fill_interval=60.0)
    r = route(rate_limit=bucket)
    answers = [sidecar.request(r) for _ in range(3)]
    # The first two pass the limit (and find no cluster: 503 NC); the third is refused.
    assert [status_and_flags(a) for a in answers] == [(503, "NC"), (503, "NC"), (429, "RL")]
    refused = answers[2].lower()
    assert b"x-ratelimit-limit: 2\r\n" in refused and b"x-ratelimit-remaining: 0\r\n" in refused
    assert b"retry-after: " in refused
    assert [ex.flags for ex in sidecar.recorded][-1] == ["RL"]


def test_beyond_max_requests_the_breaker_answers_503_uo(loop: asyncio.AbstractEventLoop) -> None:
    sidecar = Sidecar(loop)
    cluster = sidecar.add_cluster("svc", CircuitLimits(max_requests=0))
    assert status_and_flags(sidecar.request(route())) == (503, "UO")
    assert cluster.breaker.overflow_requests == 1 and cluster.breaker.requests == 0
    assert cluster.overflows == 1


def test_an_admitted_request_with_no_endpoint_is_503_uh_and_releases_the_breaker(
    loop: asyncio.AbstractEventLoop,
) -> None:
    sidecar = Sidecar(loop)
    cluster = sidecar.add_cluster("svc", CircuitLimits(max_requests=1))
    budget = cluster.budget
    assert budget is not None
    for _ in range(2):  # the second is admitted too: the first released its slot
        assert status_and_flags(sidecar.request(route())) == (503, "UH")
    assert cluster.breaker.requests == 0 and cluster.breaker.overflow_requests == 0
    assert budget.balance(loop.time()) > 0
