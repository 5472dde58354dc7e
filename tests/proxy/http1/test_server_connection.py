"""ServerConnection over the codec, with a fake transport (no sockets): a refused request is
answered with its status and `Connection: close` and never started; a refusal while a
response is on its way resets the connection instead of writing a second response;
nothing pipelined behind a closing request is started; pipelined requests start one at a
time, in order, each in its own callback; a fault of ours costs the connection only
(500 or a reset, counted); slow bodies time out (408)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

import pytest

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.http1.writer import local_response
from trellis.proxy.listeners.server import ServerConnection
from trellis.proxy.listeners.timeouts import DownstreamTimeouts
from trellis.proxy.telemetry.faults import FAULTS


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
    timed_out: list[bool] = field(default_factory=list)
    fail_on_body: bool = False

    def on_request_body(self, data: bytes) -> None:
        if self.fail_on_body:
            raise RuntimeError("a bug in the exchange")
        self.body += data

    def on_request_end(self) -> None:
        self.ended = True

    def on_downstream_lost(self) -> None:
        self.lost = True

    def on_downstream_paused(self, paused: bool) -> None:
        pass

    def on_request_timeout(self, idle: bool) -> None:
        """As the stack's exchange does: 408 (or a reset once answering), then done."""
        self.timed_out.append(idle)
        if self.resp_started:
            self.conn.abort()
        else:
            self.conn.write(local_response(408, b"slow body\n", close=True))
        self.conn.done(False)

    def answer(self, keep_alive: bool = True) -> None:
        self.conn.write(local_response(200, self.head.path.encode(), close=not keep_alive))
        self.conn.done(keep_alive)


@dataclass
class FakeListener:
    """Starts an exchange per request; answers at once when `answer_at_once`."""

    answer_at_once: bool = False
    close_after: bool = False  # the listener itself closes after its answer
    fail: bool = False  # start() raises, as a bug in a listener would
    fail_on_body: bool = False  # the exchange's body handler raises
    started: list[FakeExchange] = field(default_factory=list)
    errors: list[ProtocolError] = field(default_factory=list)

    def start(self, conn: ServerConnection, head: RequestHead) -> FakeExchange:
        ex = FakeExchange(conn, head, fail_on_body=self.fail_on_body)
        conn.exchange = ex
        self.started.append(ex)
        if self.fail:
            raise RuntimeError("a bug in the listener")
        if self.answer_at_once:
            keep_alive = head.keep_alive and not self.close_after
            conn.write(local_response(200, b"ok\n", close=not keep_alive))
            conn.done(keep_alive)
        return ex

    def protocol_error(self, conn: ServerConnection, error: ProtocolError) -> None:
        self.errors.append(error)


def connect(
    listener: FakeListener, timeouts: DownstreamTimeouts | None = None
) -> tuple[ServerConnection, FakeTransport]:
    conn = (
        ServerConnection(listener)
        if timeouts is None
        else ServerConnection(listener, None, timeouts)
    )
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
    from trellis.proxy.listeners.timeouts import HEAD_TIMEOUT, IDLE_TIMEOUT

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


def post(path: str, body: bytes, length: int | None = None) -> bytes:
    size = len(body) if length is None else length
    return b"POST %s HTTP/1.1\r\nHost: s\r\nContent-Length: %d\r\n\r\n%s" % (
        path.encode(),
        size,
        body,
    )


async def test_pipelined_requests_start_one_at_a_time_in_their_own_callbacks() -> None:
    """Behind a request in flight, the next starts only after it is done, and not inside
    its `done` (which the exchange calls from its upstream connection's callbacks)."""
    listener = FakeListener()
    conn, transport = connect(listener)
    conn.data_received(GOOD + post("/b", b"paid") + GOOD.replace(b"/a", b"/c"))
    assert [ex.head.path for ex in listener.started] == ["/a"]
    assert not transport.reading  # the queue is held, not read further
    first = listener.started[0]
    first.answer()
    assert [ex.head.path for ex in listener.started] == ["/a"]  # not from inside done()
    await asyncio.sleep(0)
    assert [ex.head.path for ex in listener.started] == ["/a", "/b"]
    second = listener.started[1]
    assert second.body == b"paid" and second.ended
    second.answer()
    await asyncio.sleep(0)
    assert [ex.head.path for ex in listener.started] == ["/a", "/b", "/c"]
    listener.started[2].answer()
    await asyncio.sleep(0)
    assert transport.reading and conn.exchange is None
    written = bytes(transport.written)
    assert [written.find(p) for p in (b"/a", b"/b", b"/c")] == sorted(
        written.find(p) for p in (b"/a", b"/b", b"/c")
    )
    assert len(listener.started) == 3  # each once


async def test_queued_requests_answered_at_once_all_start_in_order() -> None:
    listener = FakeListener()
    conn, transport = connect(listener)
    conn.data_received(b"".join(GOOD.replace(b"/a", b"/%d" % i) for i in range(10)))
    listener.answer_at_once = True  # those still queued are answered as they start
    listener.started[0].answer()
    await asyncio.sleep(0)
    assert [ex.head.path for ex in listener.started] == [f"/{i}" for i in range(10)]
    assert bytes(transport.written).count(b"HTTP/1.1 200 OK") == 10
    assert transport.reading and not transport.closed


async def test_a_bug_in_a_listener_answers_500_is_counted_and_closes() -> None:
    before = FAULTS.counts.get("downstream connection", 0)
    listener = FakeListener(fail=True)
    conn, transport = connect(listener)
    conn.data_received(GOOD + GOOD)
    assert status_line(transport) == b"HTTP/1.1 500 Internal Server Error"
    assert transport.closed and conn.exchange is None
    assert [ex.lost for ex in listener.started] == [True]  # the second never started
    assert FAULTS.counts["downstream connection"] == before + 1


async def test_a_bug_in_an_exchange_while_answering_resets_the_connection() -> None:
    before = FAULTS.counts.get("downstream connection", 0)
    listener = FakeListener(fail_on_body=True)
    conn, transport = connect(listener)
    conn.data_received(post("/x", b"", length=4))
    (ex,) = listener.started
    ex.resp_started = True
    conn.data_received(b"abcd")
    assert ex.lost and transport.aborted and not transport.written
    assert FAULTS.counts["downstream connection"] == before + 1


async def test_a_body_that_stops_coming_times_out_with_408() -> None:
    listener = FakeListener()
    conn, transport = connect(listener, DownstreamTimeouts(body_idle=5, body=60))
    conn.data_received(post("/x", b"ab", length=10))
    (ex,) = listener.started
    now = time.monotonic()
    conn.sweep(now + 3)
    assert ex.timed_out == []
    conn.sweep(now + 6)
    assert ex.timed_out == [True]  # idle
    assert status_line(transport) == b"HTTP/1.1 408 Request Timeout" and transport.closed


async def test_a_body_trickled_too_long_times_out_even_while_it_moves() -> None:
    listener = FakeListener()
    conn, transport = connect(listener, DownstreamTimeouts(body_idle=5, body=60))
    conn.data_received(post("/x", b"a", length=1000))
    (ex,) = listener.started
    conn._body_since -= 61  # began a minute ago, one byte at a time since
    conn.data_received(b"b")
    conn.sweep(time.monotonic())
    assert ex.timed_out == [False]  # total, not idle
    assert transport.closed


async def test_a_slow_body_once_the_response_began_is_reset() -> None:
    listener = FakeListener()
    conn, transport = connect(listener, DownstreamTimeouts(body_idle=5, body=60))
    conn.data_received(post("/x", b"ab", length=10))
    (ex,) = listener.started
    ex.resp_started = True
    conn.sweep(time.monotonic() + 6)
    assert ex.timed_out == [True] and transport.aborted and not transport.written


async def test_time_the_proxy_held_the_body_back_is_not_the_clients() -> None:
    listener = FakeListener()
    conn, _transport = connect(listener, DownstreamTimeouts(body_idle=5, body=60))
    conn.data_received(post("/x", b"ab", length=10))
    (ex,) = listener.started
    conn.pause_reading(True)  # back-pressure: the upstream is slow to take the body
    conn.sweep(time.monotonic() + 100)
    assert ex.timed_out == []  # paused by us: not checked
    for name in ("_paused_since", "_body_since", "_body_last"):  # ...for 100 s
        setattr(conn, name, getattr(conn, name) - 100)
    conn.pause_reading(False)
    conn.sweep(time.monotonic() + 3)
    assert ex.timed_out == []  # the clock restarted at resume
    conn.sweep(time.monotonic() + 6)
    assert ex.timed_out == [True]


async def test_a_complete_body_never_times_out() -> None:
    listener = FakeListener()
    conn, transport = connect(listener, DownstreamTimeouts(body_idle=5, body=60))
    conn.data_received(post("/x", b"0123456789"))
    (ex,) = listener.started
    assert ex.ended
    conn.sweep(time.monotonic() + 1000)
    assert ex.timed_out == [] and not transport.closed


async def test_an_answer_before_the_body_ended_drains_a_small_body_and_goes_on() -> None:
    """A denial (say) of a POST whose body is still coming: the body is read and dropped,
    then the request behind it is served on the same connection."""
    listener = FakeListener()
    conn, transport = connect(listener)
    conn.data_received(post("/denied", b"ab", length=10))
    (denied,) = listener.started
    assert conn.can_drain()
    denied.answer(keep_alive=True)
    conn.data_received(b"cdefghij" + GOOD)  # the rest of its body, then the next request
    await asyncio.sleep(0)
    assert [ex.head.path for ex in listener.started] == ["/denied", "/a"]
    assert denied.body == b"ab"  # what came after the answer never reached it
    assert not transport.closed


@pytest.mark.parametrize(
    "head",
    [
        b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        b"POST /x HTTP/1.1\r\nHost: s\r\nContent-Length: 100000\r\n\r\nabc",
    ],
)
async def test_an_answer_before_an_unknown_or_big_body_ended_closes(head: bytes) -> None:
    listener = FakeListener()
    conn, transport = connect(listener)
    conn.data_received(head)
    assert not conn.can_drain()
    listener.started[0].answer(keep_alive=True)
    assert transport.closed


async def test_a_drained_body_that_stops_coming_closes_the_connection() -> None:
    listener = FakeListener()
    conn, transport = connect(listener, DownstreamTimeouts(body_idle=5, body=60))
    conn.data_received(post("/denied", b"ab", length=10))
    listener.started[0].answer(keep_alive=True)
    conn.sweep(time.monotonic() + 3)
    assert not transport.closed
    conn.sweep(time.monotonic() + 6)
    assert transport.closed


async def test_a_client_that_stops_reading_its_response_is_reset() -> None:
    listener = FakeListener()
    conn, transport = connect(listener, DownstreamTimeouts(idle=60))
    conn.data_received(GOOD)
    conn.pause_writing()  # its socket buffer is full: it does not read
    conn.sweep(time.monotonic() + 30)
    assert not transport.aborted
    conn.sweep(time.monotonic() + 61)
    assert transport.aborted
    conn.connection_lost(None)
    assert listener.started[0].lost  # the exchange (and its upstream) go too


async def test_a_bad_request_behind_a_drained_body_gets_its_own_400() -> None:
    # A Content-Length body cannot be malformed: what fails while draining is the next
    # request (a failed feed delivers nothing, the end of the drained body included).
    listener = FakeListener()
    conn, transport = connect(listener)
    conn.data_received(b"POST /x HTTP/1.1\r\nHost: s\r\nContent-Length: 5\r\n\r\nab")
    listener.started[0].answer(keep_alive=True)  # the rest of the body is being drained
    conn.data_received(b"cde" + b"GET /b HTTP/1.1\r\nBroken\r\n\r\n")
    assert bytes(transport.written).count(b"HTTP/1.1 ") == 2  # the answer, then the 400
    assert bytes(transport.written).split(b"HTTP/1.1 ")[2].startswith(b"400 ")
    assert transport.closed and len(listener.started) == 1
