"""OutlierDetector (pure: hosts and times in): the consecutive counts, the ejection cap,
the back-off multiplier and its maximum, the interval check, failure percentage."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.proxy.stack.fakeloop import unused_pool

from trellis.proxy.config.resources import EndpointConfig, OutlierConfig
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.outlier import MAX_EJECTION_TIME, OutlierDetector


def hosts(n: int) -> list[Host]:
    return [Host(EndpointConfig(f"10.0.0.{i}", 80), unused_pool(f"10.0.0.{i}")) for i in range(n)]


async def test_a_non_gateway_5xx_breaks_a_run_of_gateway_errors() -> None:
    detector = OutlierDetector(OutlierConfig(consecutive_gateway=3, max_ejection_percent=100))
    hs = hosts(1)
    for status in (502, 503, 500, 504, 502):
        assert detector.record(hs[0], status, 0.0, hs) is None
    event = detector.record(hs[0], 503, 0.0, hs)
    assert event is not None and event.reason == "consecutive_gateway"


async def test_the_ejection_time_grows_to_the_maximum_and_no_further() -> None:
    od = OutlierConfig(consecutive_5xx=1, base_ejection=100.0, max_ejection_percent=100)
    detector = OutlierDetector(od)
    hs = hosts(1)
    h = hs[0]
    now = 0.0
    times = []
    for _ in range(6):
        event = detector.record(h, 500, now, hs)
        assert event is not None
        times.append(event.until - now)
        now = event.until
        assert detector.interval(hs, now) and not h.ejected  # back at the check
    # 100, 200, 300 (the max), then the max: the multiplier stops at 4 (4 x 100 >= 300 + 100).
    assert times == [100.0, 200.0, MAX_EJECTION_TIME, 300.0, 300.0, 300.0]
    assert h.backoff == 4


async def test_a_base_above_the_maximum_is_the_maximum() -> None:
    od = OutlierConfig(consecutive_5xx=1, base_ejection=500.0, max_ejection_percent=100)
    detector = OutlierDetector(od)
    hs = hosts(1)
    first = detector.record(hs[0], 500, 0.0, hs)
    assert first is not None and first.until == 500.0
    detector.interval(hs, 500.0)
    second = detector.record(hs[0], 500, 500.0, hs)
    assert second is not None and second.until == 1000.0  # max(base, 300 s)


async def test_failure_percentage_needs_enough_hosts_with_enough_requests() -> None:
    od = OutlierConfig(
        failure_percentage=80,
        failure_percentage_min_hosts=3,
        failure_percentage_volume=10,
        max_ejection_percent=100,
    )
    detector = OutlierDetector(od)
    hs = hosts(3)
    for _ in range(10):
        detector.record(hs[0], 500, 0.0, hs)
        detector.record(hs[1], 200, 0.0, hs)
    for _ in range(9):  # one request short of the volume: only two hosts count
        detector.record(hs[2], 200, 0.0, hs)
    assert detector.interval(hs, 1.0) == []
    assert [h.success_rate for h in hs] == [0.0, 100.0, 100.0]
    for _ in range(10):
        for h, status in zip(hs, (500, 200, 200), strict=True):
            detector.record(h, status, 1.0, hs)
    events = detector.interval(hs, 2.0)
    assert [(e.host, e.reason) for e in events] == [(hs[0], "failure_percentage")]
    # The counts start again each interval.
    assert all(h.interval_requests == 0 for h in hs)


@given(
    n=st.integers(1, 40),
    percent=st.integers(0, 100),
)
def test_the_cap_holds_whatever_fails(n: int, percent: int) -> None:
    detector = OutlierDetector(OutlierConfig(consecutive_5xx=1, max_ejection_percent=percent))
    hs = hosts(n)
    for h in hs:
        detector.record(h, 500, 0.0, hs)
    ejected = sum(h.ejected for h in hs)
    assert ejected == detector.ejected
    assert 100 * ejected <= percent * n
    assert 100 * (ejected + 1) > percent * n  # as many as allowed, no fewer
    assert detector.overflowed == n - ejected


@pytest.mark.parametrize("status", [200, 404, 499])
async def test_anything_below_500_resets_the_counts(status: int) -> None:
    detector = OutlierDetector(OutlierConfig(consecutive_5xx=2, max_ejection_percent=100))
    hs = hosts(1)
    detector.record(hs[0], 500, 0.0, hs)
    detector.record(hs[0], status, 0.0, hs)
    assert detector.record(hs[0], 500, 0.0, hs) is None
