"""The open-loop generator's schedule and bookkeeping, with in-memory transports (no sockets)."""

from __future__ import annotations

import time

import pytest
from bench.loadgen import OpenLoop, OpenLoopResult, _Conn, due_count, request_bytes

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class FakeTransport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True


def _gen_with(conns: int) -> tuple[OpenLoop, list[_Conn]]:
    gen = OpenLoop("127.0.0.1", 1, request_bytes("backend:8080"), conns)
    made = []
    for _ in range(conns):
        conn = _Conn(gen)
        conn.connection_made(FakeTransport())  # type: ignore[arg-type]
        gen._conns.add(conn)
        gen._ready(conn)
        made.append(conn)
    gen._result = OpenLoopResult(rate=1000, duration=1, scheduled=10)
    gen._start = time.perf_counter()
    return gen, made


@pytest.mark.parametrize(
    ("elapsed", "expected"),
    [(-0.001, 0), (0.0, 1), (0.0009, 1), (0.001, 2), (0.0105, 11), (5.0, 100)],
)
def test_due_count_at_1000_rps(elapsed: float, expected: int) -> None:
    assert due_count(elapsed, 1000, 100) == expected


def test_due_count_total_over_a_run_is_rate_times_duration() -> None:
    rate, duration = 250.0, 2.0
    total = round(rate * duration)
    assert due_count(duration, rate, total) == total
    assert due_count(duration / 2, rate, total) == round(rate * duration / 2) + 1


def test_request_is_origin_form_with_host() -> None:
    assert request_bytes("backend:8080") == (
        b"GET / HTTP/1.1\r\nHost: backend:8080\r\nUser-Agent: trellis-bench\r\n\r\n"
    )


def test_latency_runs_from_the_scheduled_time_not_the_send_time() -> None:
    gen, (conn,) = _gen_with(1)
    scheduled = time.perf_counter() - 0.050  # due 50 ms ago: the generator was late
    gen._dispatch(scheduled)
    conn.data_received(RESPONSE)
    result = gen._result
    assert result is not None
    assert result.ok == 1 and result.errors == 0
    assert result.latencies[0] >= 0.050
    assert result.send_lag[0] >= 0.050


def test_requests_wait_for_a_free_connection_and_keep_their_schedule() -> None:
    gen, (conn,) = _gen_with(1)
    t0 = time.perf_counter()
    gen._dispatch(t0)
    gen._dispatch(t0 + 0.001)  # no idle connection: backlog
    assert len(gen._backlog) == 1
    assert len(conn.transport.written) == 1  # type: ignore[union-attr]
    conn.data_received(RESPONSE)  # first answer frees the connection: second request goes
    assert not gen._backlog
    assert len(conn.transport.written) == 2  # type: ignore[union-attr]
    assert conn.scheduled == t0 + 0.001
    conn.data_received(RESPONSE)
    assert gen._result is not None and gen._result.ok == 2
    assert gen._outstanding == 0


def test_non_2xx_is_an_error_without_latency_sample() -> None:
    gen, (conn,) = _gen_with(1)
    gen._dispatch(time.perf_counter())
    conn.data_received(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n")
    result = gen._result
    assert result is not None
    assert result.errors == 1 and result.ok == 0 and result.statuses[503] == 1


def test_connection_close_response_is_not_reused() -> None:
    gen, (conn,) = _gen_with(1)
    gen._dispatch(time.perf_counter())
    conn.data_received(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
    assert gen._result is not None and gen._result.ok == 1
    assert conn.transport is not None and conn.transport.is_closing()
    assert conn not in gen._idle


def test_chunked_response_ends_the_request() -> None:
    gen, (conn,) = _gen_with(1)
    gen._dispatch(time.perf_counter())
    conn.data_received(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n")
    assert gen._result is not None and gen._result.ok == 0
    conn.data_received(b"0\r\n\r\n")
    assert gen._result.ok == 1


def test_send_rate() -> None:
    result = OpenLoopResult(rate=1000, duration=1, sent=1001, last_send=1.0)
    assert result.send_rate == pytest.approx(1000)
    assert OpenLoopResult(rate=1000, duration=1).send_rate == 0.0
