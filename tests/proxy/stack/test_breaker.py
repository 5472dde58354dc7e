"""CircuitBreaker, pure counters: each limit admits up to its value in flight, refuses
beyond and counts the refusal by kind; ending frees a slot; new limits apply at once."""

from __future__ import annotations

from trellis.proxy.config.resources import CircuitLimits
from trellis.proxy.stack.breaker import CircuitBreaker


def test_requests_beyond_max_requests_overflow_and_are_counted() -> None:
    breaker = CircuitBreaker(CircuitLimits(max_requests=2))
    assert [breaker.begin_request() for _ in range(3)] == [True, True, False]
    assert breaker.overflow_requests == 1
    breaker.end_request()
    assert breaker.begin_request()
    assert breaker.requests == 2


def test_retries_and_pending_have_their_own_limits() -> None:
    breaker = CircuitBreaker(CircuitLimits(max_retries=1, max_pending=2))
    assert [breaker.begin_retry() for _ in range(2)] == [True, False]
    assert [breaker.begin_pending() for _ in range(3)] == [True, True, False]
    breaker.end_retry()
    breaker.end_pending()
    assert breaker.begin_retry() and breaker.begin_pending()
    assert (breaker.overflow_retries, breaker.overflow_pending, breaker.overflows) == (1, 1, 2)


def test_a_zero_retry_limit_refuses_every_retry() -> None:
    breaker = CircuitBreaker(CircuitLimits(max_retries=0))
    assert not breaker.begin_retry()


def test_lowered_limits_apply_to_the_next_request() -> None:
    breaker = CircuitBreaker(CircuitLimits(max_requests=5))
    for _ in range(3):
        assert breaker.begin_request()
    breaker.limits = CircuitLimits(max_requests=3)
    assert not breaker.begin_request()
