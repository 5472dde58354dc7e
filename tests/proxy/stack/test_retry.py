"""RetryState, pure: each retry's backoff is fully jittered within Envoy's bounds, attempts
are counted and run out, and only the outcomes the policy names use an attempt; and which
requests may be sent again at all (`replay_safe`)."""

from __future__ import annotations

import random

import pytest

from trellis.proxy.http1.head import RequestHead
from trellis.proxy.stack.retry import RetryState, replay_safe
from trellis.routing import RetryPolicy


class Top(random.Random):
    """Always the top of the range: the backoff ceiling itself."""

    def uniform(self, a: float, b: float) -> float:
        return b


def policy(on: str = "5xx,reset,connect-failure", n: int = 3, **kw: object) -> RetryPolicy:
    return RetryPolicy(frozenset(on.split(",")), n, **kw)  # type: ignore[arg-type]


def test_backoff_ceiling_grows_as_base_times_2_to_the_n_minus_1() -> None:
    state = RetryState(policy(n=3, backoff_base=0.1, backoff_max=10.0), Top())
    assert [state.after_status(503) for _ in range(3)] == pytest.approx([0.1, 0.3, 0.7])


def test_backoff_is_capped_at_the_maximum() -> None:
    state = RetryState(policy(n=5, backoff_base=0.1, backoff_max=0.25), Top())
    assert [state.after_status(500) for _ in range(5)] == pytest.approx(
        [0.1, 0.25, 0.25, 0.25, 0.25]
    )


def test_backoff_default_maximum_is_ten_times_the_base() -> None:
    state = RetryState(policy(n=6, backoff_base=0.025), Top())
    delays = [state.after_reset() for _ in range(6)]
    assert delays[-1] == pytest.approx(0.25)
    assert max(d for d in delays if d is not None) == pytest.approx(0.25)


def test_backoff_is_jittered_from_zero_to_the_ceiling() -> None:
    rng = random.Random(42)
    first, third = [], []
    for _ in range(2000):
        state = RetryState(policy(n=3, backoff_base=0.1, backoff_max=10.0), rng)
        d1, _d2, d3 = (state.after_status(503) for _ in range(3))
        assert d1 is not None and d3 is not None
        first.append(d1)
        third.append(d3)
    assert min(first) >= 0 and max(first) <= 0.1
    assert min(third) >= 0 and max(third) <= 0.7
    # Full jitter: the whole range is used, not just its top.
    assert min(third) < 0.07 and max(third) > 0.63
    assert sum(third) / len(third) == pytest.approx(0.35, abs=0.03)


def test_attempts_are_counted_and_run_out() -> None:
    state = RetryState(policy(n=2))
    assert (state.left, state.retries) == (2, 0)
    assert state.after_connect_failure() is not None
    assert state.after_reset() is not None
    assert (state.left, state.retries) == (0, 2)
    assert state.after_status(503) is None
    assert state.after_reset() is None
    assert (state.left, state.retries) == (0, 2)


def test_no_retries_means_no_retry() -> None:
    state = RetryState(policy(n=0))
    assert state.after_status(503) is None and state.retries == 0


def test_an_outcome_the_policy_does_not_name_uses_no_attempt() -> None:
    on = frozenset({"retriable-status-codes"})
    state = RetryState(RetryPolicy(on, 2, retriable_status_codes=frozenset({409})))
    assert not state.wants_status(503)
    assert state.after_status(503) is None
    assert state.after_connect_failure() is None  # not in retry_on
    assert state.left == 2
    assert state.wants_status(409)
    assert state.after_status(409) is not None
    assert state.left == 1


@pytest.mark.parametrize(
    ("retry_on", "connect", "reset", "per_try", "status_503"),
    [
        ("connect-failure", True, False, False, False),
        ("reset", True, True, True, False),
        ("5xx", True, True, True, True),
        ("gateway-error", True, True, True, True),
        ("retriable-status-codes", False, False, False, False),
    ],
)
def test_which_outcomes_each_condition_retries(
    retry_on: str, connect: bool, reset: bool, per_try: bool, status_503: bool
) -> None:
    def fresh() -> RetryState:
        return RetryState(policy(retry_on, n=1))

    assert (fresh().after_connect_failure() is not None) == connect
    assert (fresh().after_reset() is not None) == reset
    assert (fresh().after_per_try_timeout() is not None) == per_try
    assert (fresh().after_status(503) is not None) == status_503


@pytest.mark.parametrize(
    ("method", "headers", "safe"),
    [
        ("GET", [], True),
        ("HEAD", [], True),
        ("OPTIONS", [], True),
        ("TRACE", [], True),
        ("PUT", [], True),
        ("DELETE", [], True),
        ("POST", [], False),
        ("PATCH", [], False),
        ("CONNECT", [], False),
        ("POST", [(b"Idempotency-Key", b"8e03978e")], True),
        ("PATCH", [(b"x-idempotency-key", b"1")], True),
        ("POST", [(b"Idempotency", b"1")], False),
    ],
)
def test_only_idempotent_requests_are_safe_to_send_again(
    method: str, headers: list[tuple[bytes, bytes]], safe: bool
) -> None:
    head = RequestHead(method, "/x", "/x", "svc", headers)
    assert replay_safe(head) is safe
