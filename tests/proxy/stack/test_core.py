"""The exchange core (stack/core.py), driven with a fake I/O and a fake clock: each outcome
(UF, UC, UT, URX, UO), the back-off it chooses (jittered, or the response's Retry-After),
the retry budget and the breaker refusing, and the safe-retry rules. Runs compiled and
interpreted (`make test` runs tests/proxy twice)."""

from __future__ import annotations

import pytest

from trellis.proxy.config.resources import CircuitLimits
from trellis.proxy.stack.breaker import CircuitBreaker
from trellis.proxy.stack.budget import RetryBudget
from trellis.proxy.stack.core import NO_RETRY, ExchangeCore, admit, retry_after_seconds
from trellis.routing import RetryPolicy


class FakeIO:
    """Records the core's commands."""

    def __init__(self) -> None:
        self.commands: list[tuple[str, object, ...]] = []

    def send_again(self, delay: float) -> None:
        self.commands.append(("send_again", delay))

    def answer(self, status: int, body: bytes, flag: str) -> None:
        self.commands.append(("answer", status, flag))

    def reset_downstream(self, flag: str) -> None:
        self.commands.append(("reset", flag))


def policy(on: str = "5xx,reset,connect-failure", n: int = 3, **kw: object) -> RetryPolicy:
    return RetryPolicy(frozenset(on.split(",")), n, **kw)  # type: ignore[arg-type]


def limits(**kw: int) -> CircuitLimits:
    base = {"max_connections": 1024, "max_pending": 1024, "max_requests": 1024}
    base["max_retries"] = 3
    base.update(kw)
    return CircuitLimits(**base)


def core(
    retry: RetryPolicy | None = None,
    *,
    idempotent: bool = True,
    breaker: CircuitBreaker | None = None,
    budget: RetryBudget | None = None,
) -> tuple[ExchangeCore, FakeIO, list[str]]:
    io, flags = FakeIO(), []
    breaker = breaker or CircuitBreaker(limits())
    assert admit(breaker, budget, 0.0)
    c = ExchangeCore(io, flags, retry, breaker, budget, idempotent)
    return c, io, flags


# -- outcomes without retries -----------------------------------------------------------


def test_connect_failure_without_retries_is_503_uf() -> None:
    c, io, flags = core()
    c.connect_failed("refused", 1.0)
    assert io.commands == [("answer", 503, "")]
    assert flags == ["UF"]


def test_reset_before_the_response_is_503_uc() -> None:
    c, io, flags = core()
    c.sent = True
    c.upstream_lost("closed", stale=False, now=1.0)
    assert io.commands == [("answer", 503, "")]
    assert flags == ["UC"]


def test_per_try_timeout_without_retries_is_504_ut() -> None:
    c, io, _ = core()
    c.try_timed_out(1.0)
    assert io.commands == [("answer", 504, "UT")]


def test_route_timeout_answers_504_or_resets_a_begun_response() -> None:
    c, io, _ = core()
    c.route_timed_out(response_started=False)
    c.route_timed_out(response_started=True)
    assert io.commands == [("answer", 504, "UT"), ("reset", "UT")]


def test_pool_overflow_is_503_uo() -> None:
    c, io, _ = core()
    c.pool_overflow()
    assert io.commands == [("answer", 503, "UO")]


def test_admission_holds_a_request_slot_and_deposits_into_the_budget() -> None:
    breaker = CircuitBreaker(limits(max_requests=1))
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, ttl=10.0)
    assert admit(breaker, budget, 0.0)
    assert not admit(breaker, budget, 0.0)  # beyond max_requests: the caller answers UO
    assert breaker.overflow_requests == 1 and breaker.requests == 1
    assert budget.balance(0.0) == 1.0  # one deposit: the refused request made none
    breaker.end_request()
    assert admit(breaker, None, 0.0)


# -- retries ------------------------------------------------------------------------------


def test_a_retriable_status_is_retried_until_the_attempts_run_out_then_urx() -> None:
    c, _, flags = core(policy(n=2))
    c.sent = True
    assert c.wants_status(503) and not c.wants_status(404)
    assert c.retry_delay(503, "", 1.0, 0.0) >= 0
    c.sent = True
    assert c.retry_delay(503, "", 1.1, 0.0) >= 0
    c.sent = True
    assert c.retry_delay(503, "", 1.2, 0.0) == NO_RETRY
    assert flags == ["URX"]


def test_connect_failure_is_retried_then_uf_urx() -> None:
    c, io, flags = core(policy(n=1))
    c.connect_failed("refused", 1.0)
    assert io.commands[0][0] == "send_again"
    c.connect_failed("refused", 1.1)
    assert io.commands[1] == ("answer", 503, "")
    assert flags == ["UF", "URX"]


def test_per_try_timeouts_are_retried_then_504_ut() -> None:
    c, io, _ = core(policy(n=1, per_try_timeout=0.1))
    c.sent = True
    c.try_timed_out(1.0)
    c.sent = True
    c.try_timed_out(1.2)
    assert [cmd[0] for cmd in io.commands] == ["send_again", "answer"]
    assert io.commands[1] == ("answer", 504, "UT")


def test_reset_is_retried_then_uc_urx() -> None:
    c, io, flags = core(policy(n=1))
    c.sent = True
    c.upstream_lost("reset", stale=False, now=1.0)
    c.sent = True
    c.upstream_lost("reset", stale=False, now=1.1)
    assert [cmd[0] for cmd in io.commands] == ["send_again", "answer"]
    assert flags == ["UC", "URX"]


# -- safe retries ------------------------------------------------------------------------


def test_a_non_idempotent_request_is_not_retried_on_a_status_once_sent() -> None:
    c, _, flags = core(policy(), idempotent=False)
    c.sent = True
    assert c.retry_delay(503, "", 1.0, 0.0) == NO_RETRY
    assert flags == []  # not exhausted: never eligible


def test_the_route_may_opt_in_to_retrying_non_idempotent_requests_on_a_status() -> None:
    c, _, _ = core(policy(non_idempotent=True), idempotent=False)
    c.sent = True
    assert c.retry_delay(503, "", 1.0, 0.0) >= 0


def test_opting_in_does_not_replay_a_non_idempotent_request_after_a_reset() -> None:
    c, io, _ = core(policy(non_idempotent=True), idempotent=False)
    c.sent = True
    c.upstream_lost("reset", stale=False, now=1.0)
    assert io.commands == [("answer", 503, "")]


def test_a_request_that_never_reached_the_upstream_is_retried_whatever_its_method() -> None:
    c, io, _ = core(policy(on="connect-failure"), idempotent=False)
    c.connect_failed("refused", 1.0)
    assert io.commands[0][0] == "send_again"
    c2, io2, _ = core(policy(on="reset"), idempotent=False)
    c2.sent = False
    c2.upstream_lost("refused before a byte", stale=False, now=1.0)
    assert io2.commands[0][0] == "send_again"


def test_a_stale_pooled_connection_is_replayed_once_at_once_for_idempotent_requests() -> None:
    c, io, _ = core()  # no retry policy at all
    c.sent = True
    c.upstream_lost("closed", stale=True, now=1.0)
    c.sent = True
    c.upstream_lost("closed", stale=True, now=1.0)
    assert io.commands == [("send_again", 0.0), ("answer", 503, "")]


def test_a_stale_pooled_connection_does_not_replay_a_post() -> None:
    c, io, _ = core(idempotent=False)
    c.sent = True
    c.upstream_lost("closed", stale=True, now=1.0)
    assert io.commands == [("answer", 503, "")]


def test_a_body_no_longer_held_is_never_sent_again() -> None:
    c, io, _ = core(policy())
    c.replayable = False
    c.connect_failed("refused", 1.0)
    assert io.commands == [("answer", 503, "")]


# -- budget and breaker ------------------------------------------------------------------


def test_the_budget_refusing_a_retry_passes_the_response_on_with_uo() -> None:
    budget = RetryBudget(ratio=0.0, min_per_second=0.1, ttl=10.0)  # one retry per 10 s
    c, _, flags = core(policy(n=5), budget=budget)
    c.sent = True
    assert c.retry_delay(503, "", 1.0, 0.0) >= 0
    c.sent = True
    assert c.retry_delay(503, "", 1.1, 0.0) == NO_RETRY
    assert flags == ["UO"]
    assert budget.withdrawn == 1 and budget.exhausted == 1


def test_the_budget_allows_ratio_of_requests_plus_the_minimum() -> None:
    budget = RetryBudget(ratio=0.2, min_per_second=0.0, ttl=10.0)
    allowed = 0
    for i in range(100):
        c, _, _ = core(policy(n=3), budget=budget)
        for _ in range(3):
            c.sent = True
            allowed += c.retry_delay(503, "", i * 0.01, 0.0) >= 0
    assert allowed == 20


def test_a_connect_failure_retry_does_not_draw_on_the_budget() -> None:
    """Nothing reached an upstream: the budget (which bounds upstream load) is not asked,
    nor the breaker's max_retries."""
    budget = RetryBudget(ratio=0.0, min_per_second=0.0, ttl=10.0)
    c, io, flags = core(policy(), budget=budget)
    c.connect_failed("refused", 1.0)
    assert io.commands[0][0] == "send_again"
    assert budget.withdrawn == 0 and budget.exhausted == 0
    c.sent = True
    c.upstream_lost("reset", stale=False, now=1.1)  # this one may have reached the app
    assert io.commands[1] == ("answer", 503, "")
    assert flags == ["UO", "UC"]


def test_breaker_max_retries_does_not_bound_connect_failure_retries() -> None:
    breaker = CircuitBreaker(limits(max_retries=0))
    c, io, flags = core(policy(n=1), breaker=breaker)
    c.connect_failed("refused", 1.0)
    c.connect_failed("refused", 1.1)
    assert [cmd[0] for cmd in io.commands] == ["send_again", "answer"]
    assert flags == ["UF", "URX"] and breaker.overflow_retries == 0
    c2, io2, flags2 = core(policy(), breaker=breaker)
    c2.sent = True
    c2.upstream_lost("reset", stale=False, now=1.0)  # this one may have reached the app
    assert io2.commands == [("answer", 503, "")] and flags2 == ["UO", "UC"]


def test_breaker_max_retries_refuses_a_retry_while_another_is_in_flight() -> None:
    breaker = CircuitBreaker(limits(max_retries=1))
    a, _, _ = core(policy(), breaker=breaker)
    b, _, b_flags = core(policy(), breaker=breaker)
    a.sent = b.sent = True
    assert a.retry_delay(503, "", 1.0, 0.0) >= 0
    assert b.retry_delay(503, "", 1.0, 0.0) == NO_RETRY
    assert b_flags == ["UO"] and breaker.overflow_retries == 1
    a.finish()
    a.finish()  # twice is harmless
    assert breaker.retries == 0 and breaker.requests == 2  # the admissions: the caller's
    b.sent = True
    assert b.retry_delay(503, "", 1.0, 0.0) >= 0


# -- back-off ----------------------------------------------------------------------------


def test_backoff_is_jittered_within_the_policy_bounds() -> None:
    for _ in range(50):
        c, _, _ = core(policy(n=1, backoff_base=0.1, backoff_max=1.0))
        c.sent = True
        assert 0.0 <= c.retry_delay(503, "", 1.0, 0.0) <= 0.1


def test_retry_after_seconds_is_the_backoff_when_honoured() -> None:
    c, _, _ = core(policy(retry_after_max=5.0))
    assert c.honours_retry_after()
    c.sent = True
    assert c.retry_delay(503, "2", 1.0, 0.0) == 2.0


def test_retry_after_longer_than_the_maximum_is_no_retry() -> None:
    c, _, flags = core(policy(retry_after_max=5.0))
    c.sent = True
    assert c.retry_delay(503, "30", 1.0, 0.0) == NO_RETRY
    assert flags == []


def test_retry_after_is_ignored_unless_the_policy_honours_it() -> None:
    c, _, _ = core(policy(backoff_base=0.01))
    assert not c.honours_retry_after()
    c.sent = True
    assert c.retry_delay(503, "30", 1.0, 0.0) <= 0.01


def test_retry_after_as_an_http_date() -> None:
    wall = 1_700_000_000.0  # Tue, 14 Nov 2023 22:13:20 GMT
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:23 GMT", wall) == pytest.approx(3.0)
    assert retry_after_seconds("Tue, 14 Nov 2023 22:13:00 GMT", wall) == 0.0
    assert retry_after_seconds(" 7 ", wall) == 7.0
    assert retry_after_seconds("soon", wall) == -1.0
    assert retry_after_seconds("-3", wall) == -1.0


# -- sans-IO -----------------------------------------------------------------------------


def test_the_core_imports_no_io_and_no_protocol() -> None:
    """No asyncio, sockets, listeners or HTTP/1: HTTP/2 and gRPC must drive the same core."""
    import ast

    from trellis import compiled

    tree = ast.parse(compiled.source_path("trellis.proxy.stack.core").read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    forbidden = ("asyncio", "socket", "ssl", "selectors", "trellis.proxy.listeners")
    assert not [m for m in imported if m.startswith(forbidden)], imported
    assert not [m for m in imported if m.startswith("trellis.proxy.http1")], imported
