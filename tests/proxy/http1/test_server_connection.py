"""ServerConnection over the codec, with a fake transport (no sockets): a refused request is
answered with its status and `Connection: close` and never started; a refusal while a
response is on its way resets the connection instead of writing a second response; and
nothing pipelined behind a closing request is started."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.http1.writer import local_response
from trellis.proxy.listeners.server import ServerConnection


class FakeTransport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.aborted = False
        self.reading = True

    def write(self, data: bytes) -> None:
        assert not self.closed and not self.aborted
        self.written += data

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        pass


@dataclass
class FakeExchange:
    conn: ServerConnection
    head: RequestHead
    body: bytes = b""
    ended: bool = False
    lost: bool = False
    resp_started: bool = False

    def on_request_body(self, data: bytes) -> None:
        self.body += data

    def on_request_end(self) -> None:
        self.ended = True

    def on_downstream_lost(self) -> None:
        self.lost = True

    def on_downstream_paused(self, paused: bool) -> None:
        pass


@dataclass
class FakeListener:
    """Starts an exchange per request; answers at once when `answer_at_once`."""

    answer_at_once: bool = False
    close_after: bool = False  # the listener itself closes after its answer
    started: list[FakeExchange] = field(default_factory=list)
    errors: list[ProtocolError] = field(default_factory=list)

    def start(self, conn: ServerConnection, head: RequestHead) -> FakeExchange:
        ex = FakeExchange(conn, head)
        conn.exchange = ex
        self.started.append(ex)
        if self.answer_at_once:
            keep_alive = head.keep_alive and not self.close_after
            conn.write(local_response(200, b"ok\n", close=not keep_alive))
            conn.done(keep_alive)
        return ex

    def protocol_error(self, conn: ServerConnection, error: ProtocolError) -> None:
        self.errors.append(error)


def connect(listener: FakeListener) -> tuple[ServerConnection, FakeTransport]:
    conn = ServerConnection(listener)
    transport = FakeTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def status_line(transport: FakeTransport) -> bytes:
    return bytes(transport.written).split(b"\r\n", 1)[0]


GOOD = b"GET /a HTTP/1.1\r\nHost: svc\r\n\r\n"


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (
            b"POST /x HTTP/1.1\r\nHost: s\r\nContent-Length: 1\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n",
            400,
        ),
        (b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        (GOOD + b"GET /b HTTP/1.1\r\nBroken\r\n\r\n", 400),
        (b"GET /x HTTP/2.0\r\nHost: s\r\n\r\n", 505),
        (b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501),
    ],
)
async def test_a_refused_feed_is_answered_and_nothing_of_it_starts(
    data: bytes, status: int
) -> None:
    listener = FakeListener()
    conn, transport = connect(listener)
    conn.data_received(data)
    assert listener.started == []
    assert status_line(transport) == b"HTTP/1.1 %d %s" % (
        status,
        {400: b"Bad Request", 501: b"Not Implemented", 505: b"HTTP Version Not Supported"}[status],
    )
    assert b"\r\nconnection: close\r\n" in transport.written
    assert b"\r\nx-trellis-flags: DPE\r\n" in transport.written
    assert transport.closed and conn.closed
    assert [e.status for e in listener.errors] == [status]


async def test_an_oversized_head_one_byte_at_a_time_gets_431() -> None:
    listener = FakeListener()
    conn, transport = connect(listener)
    for byte in b"GET /x HTTP/1.1\r\nHost: s\r\nX-Big: " + b"a" * (61 * 1024):
        if conn.closed:
            break
        conn.data_received(bytes([byte]))
    assert status_line(transport) == b"HTTP/1.1 431 Request Header Fields Too Large"
    assert transport.closed and listener.started == []


async def test_a_bad_chunk_after_the_head_went_on_ends_the_exchange_and_answers_400() -> None:
    listener = FakeListener()
    conn, transport = connect(listener)
    conn.data_received(b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n")
    conn.data_received(b"3\r\nabc\r\n")
    (ex,) = listener.started
    assert ex.body == b"abc" and not ex.lost
    conn.data_received(b"zz\r\n")
    assert ex.lost and conn.exchange is None
    assert status_line(transport) == b"HTTP/1.1 400 Bad Request"
    assert transport.closed


async def test_a_refusal_while_the_response_is_on_its_way_resets_the_connection() -> None:
    listener = FakeListener()
    conn, transport = connect(listener)
    conn.data_received(b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n")
    (ex,) = listener.started
    conn.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
    ex.resp_started = True
    sent = bytes(transport.written)
    conn.data_received(b"zz\r\n")
    assert ex.lost
    assert transport.aborted and not transport.closed
    assert bytes(transport.written) == sent  # no second response after the first


async def test_requests_pipelined_behind_a_closing_one_are_not_started() -> None:
    listener = FakeListener(answer_at_once=True)
    conn, transport = connect(listener)
    closing = b"GET /a HTTP/1.1\r\nHost: s\r\nConnection: close\r\n\r\n"
    conn.data_received(closing + GOOD + GOOD)
    assert [ex.head.path for ex in listener.started] == ["/a"]
    assert transport.closed
    assert bytes(transport.written).count(b"HTTP/1.1 ") == 1


async def test_nothing_is_started_after_the_listener_closed_the_connection() -> None:
    # E.g. it answered before the request body was over: the rest of the feed is dropped.
    listener = FakeListener(answer_at_once=True, close_after=True)
    conn, transport = connect(listener)
    post = b"POST /a HTTP/1.1\r\nHost: s\r\nContent-Length: 3\r\n\r\nabc"
    conn.data_received(post + GOOD + GOOD)
    assert [ex.head.path for ex in listener.started] == ["/a"]
    assert listener.started[0].body == b""  # it had ended before its body came
    assert transport.closed


async def test_pipelined_requests_are_served_in_order() -> None:
    listener = FakeListener(answer_at_once=True)
    conn, transport = connect(listener)
    conn.data_received(GOOD + GOOD.replace(b"/a", b"/b") + GOOD.replace(b"/a", b"/c"))
    assert [ex.head.path for ex in listener.started] == ["/a", "/b", "/c"]
    assert bytes(transport.written).count(b"HTTP/1.1 200 OK") == 3
    assert not transport.closed
    conn.connection_lost(None)


async def test_a_late_head_gets_408_and_an_idle_connection_closes() -> None:
    """The listener's sweep (once a second) enforces the head and idle timeouts."""
    from trellis.proxy.listeners.server import HEAD_TIMEOUT, IDLE_TIMEOUT

    listener = FakeListener(answer_at_once=True)
    conn, transport = connect(listener)
    conn.data_received(b"GET /slow HTTP/1.1\r\nHo")  # a head that never finishes
    now = time.monotonic()
    conn.sweep(now + HEAD_TIMEOUT / 2)
    assert not transport.closed
    conn.sweep(now + HEAD_TIMEOUT + 1)
    assert status_line(transport) == b"HTTP/1.1 408 Request Timeout"
    assert transport.closed and listener.started == []

    idle, idle_transport = connect(FakeListener(answer_at_once=True))
    idle.data_received(GOOD)  # answered at once: the connection is idle again
    idle.sweep(time.monotonic() + HEAD_TIMEOUT + 1)
    assert not idle_transport.closed  # idle is not a late head
    idle.sweep(time.monotonic() + IDLE_TIMEOUT + 1)
    assert idle_transport.closed
