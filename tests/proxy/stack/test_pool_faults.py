"""UpstreamConnection with a fake transport (no sockets): a bug of ours while a response is
handled resets the connection, is counted, and ends the request without sending it again;
a protocol error from the upstream is the upstream's fault, not ours."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from trellis.proxy.http1.head import ResponseHead
from trellis.proxy.stack.pool import HostPool, PoolCounters, UpstreamConnection
from trellis.proxy.telemetry.faults import FAULTS


class FakeTransport:
    def __init__(self) -> None:
        self.closed = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        pass

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


@dataclass
class User:
    """A request in flight whose response handler has a bug (when `buggy`)."""

    buggy: bool = True
    events: list[str] = field(default_factory=list)

    def on_connected(self, conn: UpstreamConnection) -> None:
        self.events.append("connected")

    def on_connect_failed(self, reason: str) -> None:
        self.events.append("connect failed")

    def on_upstream_response(self, head: ResponseHead) -> None:
        if self.buggy:
            raise KeyError("a bug in the exchange")
        self.events.append(f"response {head.status}")

    def on_upstream_body(self, data: bytes) -> None:
        self.events.append("body")

    def on_upstream_end(self) -> None:
        self.events.append("end")

    def on_upstream_lost(self, reason: str) -> None:
        self.events.append("lost")

    def on_upstream_paused(self, paused: bool) -> None:
        pass

    def on_upstream_flush(self) -> None:
        pass

    def on_upstream_fault(self) -> None:
        self.events.append("fault")


def connection() -> tuple[UpstreamConnection, FakeTransport]:
    pool = HostPool("127.0.0.1", 9, PoolCounters())
    conn = UpstreamConnection(pool)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


async def test_a_bug_while_handling_a_response_resets_and_never_resends() -> None:
    before = FAULTS.counts.get("upstream connection", 0)
    conn, transport = connection()
    user = User()
    conn.start(user, head_request=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    assert user.events == ["fault"]  # told once, as a fault: not "lost" (which may retry)
    assert transport.aborted and conn.closed and conn.user is None
    assert FAULTS.counts["upstream connection"] == before + 1
    conn.connection_lost(None)
    assert user.events == ["fault"]  # nothing more once it is over


async def test_a_malformed_response_is_the_upstreams_fault_not_ours() -> None:
    before = FAULTS.counts.get("upstream connection", 0)
    conn, transport = connection()
    user = User(buggy=False)
    conn.start(user, head_request=False)
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n")
    assert user.events == ["lost"] and transport.closed and not transport.aborted
    assert FAULTS.counts.get("upstream connection", 0) == before
