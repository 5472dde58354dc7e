"""Reading wrk's summary and building its command line."""

from __future__ import annotations

import pytest
from bench.wrk import WrkResult, argv, parse

CLEAN = """\
Running 10s test @ http://127.0.0.1:41000/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.75ms  120.00us   3.10ms   90.00%
    Req/Sec    36.70k     1.20k   38.00k    80.00%
  365432 requests in 10.00s, 40.12MB read
Requests/sec:  36543.21
Transfer/sec:      4.01MB
"""

WITH_ERRORS = """\
Running 4s test @ http://127.0.0.1:41000/
  1 threads and 64 connections
  1200 requests in 4.01s, 100.00KB read
  Socket errors: connect 0, read 3, write 1, timeout 2
  Non-2xx or 3xx responses: 7
Requests/sec:    299.25
Transfer/sec:     24.94KB
"""


def test_parse_clean_run() -> None:
    result = parse(CLEAN)
    assert result == WrkResult(365432, 10.0, 36543.21, 0, 0)
    assert result.errors == 0


def test_parse_errors() -> None:
    result = parse(WITH_ERRORS)
    assert result.socket_errors == 6 and result.non_2xx == 7 and result.errors == 13
    assert result.seconds == pytest.approx(4.01)


def test_parse_rejects_other_output() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse("unable to connect to 127.0.0.1:1 Connection refused")


def test_cpu_share() -> None:
    assert WrkResult(1, 10.0, 0.1, 0, 0, cpu_seconds=9.5).cpu_share == pytest.approx(0.95)


def test_argv_sets_host_and_one_thread() -> None:
    command = argv("http://127.0.0.1:1/", 64, 10, host="backend:8080")
    assert command[1:] == [
        "--threads=1",
        "--connections=64",
        "--duration=10s",
        "--timeout=5s",
        "--header",
        "Host: backend:8080",
        "http://127.0.0.1:1/",
    ]
