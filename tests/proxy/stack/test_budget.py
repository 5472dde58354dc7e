"""RetryBudget, pure (Linkerd's shape): retries at most `ratio` of the requests of the last
`ttl` seconds plus `min_per_second` x ttl; old requests stop paying after ttl."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from trellis.proxy.stack.budget import RetryBudget


def test_the_minimum_alone_allows_min_per_second_times_ttl_retries() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=1.0, ttl=10.0)
    allowed = sum(budget.withdraw(0.0) for _ in range(50))
    assert allowed == 10
    assert budget.exhausted == 40
    assert budget.withdrawn == 10


def test_requests_add_ratio_of_a_retry_each() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, ttl=10.0)
    for _ in range(100):
        budget.deposit(0.0)
    assert sum(budget.withdraw(0.0) for _ in range(100)) == 20
    assert budget.balance(0.0) == 0.0


def test_deposits_expire_after_the_ttl() -> None:
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0)
    for _ in range(10):
        budget.deposit(0.0)
    assert budget.balance(5.0) == 5.0
    # 11 s later every slot of the window has been reused: nothing is left to spend.
    assert not budget.withdraw(11.0)


def test_retries_expire_too_so_the_budget_refills() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=1.0, ttl=10.0)
    assert sum(budget.withdraw(0.0) for _ in range(20)) == 10
    assert not budget.withdraw(5.0)
    assert budget.withdraw(10.5)  # the first slot's retries are out of the window


def test_no_budget_at_all_refuses_every_retry() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, ttl=10.0)
    budget.deposit(0.0)
    assert not budget.withdraw(0.0)


@given(
    st.lists(st.tuples(st.booleans(), st.floats(0.0, 1.0)), min_size=1, max_size=400),
    st.floats(0.0, 1.0),
    st.floats(0.0, 5.0),
)
def test_retries_never_exceed_ratio_of_requests_plus_minimum(
    events: list[tuple[bool, float]], ratio: float, minimum: float
) -> None:
    """Over any window of `ttl` (all events here fall in one window): retries <= ratio x
    requests + minimum x ttl."""
    budget = RetryBudget(ratio=ratio, min_per_second=minimum, ttl=10.0)
    now, requests, retries = 0.0, 0, 0
    for is_request, step in events:
        now += step / 100  # stays well inside one ttl
        if is_request:
            budget.deposit(now)
            requests += 1
        elif budget.withdraw(now):
            retries += 1
    assert retries <= ratio * requests + minimum * 10.0 + 1e-9
