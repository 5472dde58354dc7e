"""The exchange core: what to do when an attempt ends, sans-IO and protocol-neutral.

It owns the decisions of the retry, budget, circuit-breaker and timeout layers for
one request forwarded to one concrete backend (a cluster): given an event — a
response status, a connect failure, a connection lost before the response, a
per-try or route timer, a pool overflow — it either lets the response through or
commands the I/O layer through `ExchangeIO`: send the request again after a delay,
answer locally with a status and flags, or reset the client. It imports no asyncio,
socket, listener or HTTP/1 code: the clock comes in with the events, the request's
shape as two booleans (may it be replayed at all, is it idempotent), so HTTP/2 and
gRPC can drive the same core. stack/exchange.py is the HTTP/1 I/O layer around it;
tests/proxy/stack/test_core.py drives it with a fake I/O.

Decisions, in the order they are taken:
- admission (`admit`, the breaker layer): the circuit breaker's `max_requests` (503,
  flag UO); each admitted request deposits into the destination's retry budget.
  An ExchangeCore is made only when a decision is due (the usual request, answered
  on its first attempt, never makes one: no allocation on the hot path).
- a retriable outcome: the route's policy says whether it counts and how many
  attempts are left (stack/retry.py `RetryState`; none left: flag URX). Then
  the request must be replayable: its body still held and, once a byte may have
  reached the upstream (`sent`), idempotent — or the route opted in
  (`non_idempotent`) for a response status. A request that never reached the
  upstream (connect failure) may go again whatever its method. Then the budget
  (`RetryBudget.withdraw`) and the breaker's `max_retries` must both allow it;
  either refusing is an overflow, as in Envoy: no retry, flag UO, and the client
  gets the response (or the local answer) the attempt produced. Both bound the
  load retries put on upstreams: the retry of a connect failure (which reached
  none) draws on neither, so a dead endpoint is routed around at any request rate
  (the route's attempts still bound it per request).
- back-off: fully jittered exponential (RetryState), unless the response carries
  `Retry-After` and the policy honours it (`retry_after_max` > 0): then that
  delay, when it is at most `retry_after_max`; a longer one is not waited for
  (no retry: the client gets the response, and its Retry-After, at once).
- a pooled connection found closed as it was reused (`stale`): replayed at once,
  once, under the same replay rule, without using an attempt or the budget
  (nothing reached an application).
"""

from __future__ import annotations

import email.utils
from typing import Protocol

from trellis.proxy.stack.breaker import CircuitBreaker
from trellis.proxy.stack.budget import RetryBudget
from trellis.proxy.stack.retry import RetryState
from trellis.routing import RetryPolicy

NO_RETRY = -1.0  # `retry_delay`'s answer when the request is not sent again


class ExchangeIO(Protocol):
    """The commands the core gives the I/O layer (an HTTP/1 exchange today)."""

    def send_again(self, delay: float) -> None:
        """Drop this attempt's upstream and attempt again after `delay` seconds (0: now)."""

    def answer(self, status: int, body: bytes, flag: str) -> None:
        """Answer the client locally (adds `flag` to the response flags); ends the exchange."""

    def reset_downstream(self, flag: str) -> None:
        """The response has begun and cannot be completed: reset the client."""


def admit(breaker: CircuitBreaker, budget: RetryBudget | None, now: float) -> bool:
    """The breaker layer: may one more request go to this destination? When it may, it
    holds a `max_requests` slot (the caller ends it: `breaker.end_request()`) and deposits
    into the retry budget; when it may not, the caller answers 503 UO."""
    if not breaker.begin_request():
        return False
    if budget is not None:
        budget.deposit(now)
    return True


def retry_after_seconds(value: str, wall_now: float) -> float:
    """A `Retry-After` value in seconds from now: delta-seconds or an HTTP date (RFC 9110
    §10.2.3); -1 when it is neither."""
    text = value.strip()
    if text.isdigit():
        return float(int(text))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return -1.0
    if when is None or when.tzinfo is None:
        return -1.0
    return max(0.0, when.timestamp() - wall_now)


class ExchangeCore:
    __slots__ = (
        "_retry_slot",
        "breaker",
        "budget",
        "flags",
        "idempotent",
        "io",
        "non_idempotent",
        "replayable",
        "retry",
        "sent",
        "stale_replayed",
    )

    def __init__(
        self,
        io: ExchangeIO,
        flags: list[str],
        policy: RetryPolicy | None,
        breaker: CircuitBreaker,
        budget: RetryBudget | None,
        idempotent: bool,
    ) -> None:
        self.io = io
        self.flags = flags  # the exchange's response flags (shared: telemetry reads them)
        self.retry: RetryState | None = None
        self.non_idempotent = False
        if policy is not None and policy.num_retries > 0:
            self.retry = RetryState(policy)
            self.non_idempotent = policy.non_idempotent
        self.breaker = breaker
        self.budget = budget
        self.idempotent = idempotent
        self.replayable = True  # the body is still held (the I/O layer says when it is not)
        self.sent = False  # a byte of this attempt may have reached the upstream
        self.stale_replayed = False
        self._retry_slot = False  # holds one of the breaker's max_retries

    # -- the rules -----------------------------------------------------------------------

    def may_resend(self, on_status: bool = False) -> bool:
        """The request may go out again: its body is held and, when a byte of it may have
        reached the upstream, it is idempotent (or, for a status, the route opted in)."""
        if not self.replayable:
            return False
        return not self.sent or self.idempotent or (on_status and self.non_idempotent)

    def wants_status(self, status: int) -> bool:
        """Would a response with this status be retried, attempts and budget permitting?
        (Cheap: asked for every response.)"""
        retry = self.retry
        return retry is not None and retry.wants_status(status)

    def honours_retry_after(self) -> bool:
        """Should the I/O layer look for the response's `Retry-After`?"""
        retry = self.retry
        return retry is not None and retry.policy.retry_after_max > 0

    def _allowed(self, now: float, reached: bool = True) -> bool:
        """The budget and the breaker's `max_retries`, asked once an attempt is taken. Both
        bound the load retries put on the upstreams: the retry of a request that reached
        none (`reached` False: a connect failure) draws on neither."""
        if not reached:
            return True
        budget = self.budget
        if budget is not None and not budget.withdraw(now):
            self.flags.append("UO")
            return False
        self.try_ended()  # a retry in flight ended with its attempt
        if not self.breaker.begin_retry():
            self.flags.append("UO")
            return False
        self._retry_slot = True
        return True

    def _exhausted(self) -> None:
        retry = self.retry
        if retry is not None and retry.retries:
            self.flags.append("URX")

    # -- events --------------------------------------------------------------------------

    def retry_delay(self, status: int, retry_after: str, now: float, wall_now: float) -> float:
        """A retriable response status (`wants_status` said so): the back-off before the
        next attempt, or NO_RETRY (the response goes to the client; flag URX when the
        attempts ran out, UO when the budget or breaker refused)."""
        retry = self.retry
        if retry is None or not self.may_resend(on_status=True):
            return NO_RETRY
        top = retry.policy.retry_after_max
        wait = -1.0
        if top > 0 and retry_after:
            wait = retry_after_seconds(retry_after, wall_now)
            if wait > top:
                return NO_RETRY  # longer than we may hold the client: it gets the answer
        delay = retry.after_status(status)
        if delay is None:
            self.flags.append("URX")
            return NO_RETRY
        if not self._allowed(now):
            return NO_RETRY
        self.sent = False
        return wait if wait >= 0 else delay

    def connect_failed(self, reason: str, now: float) -> None:
        """No connection to the endpoint: nothing was sent, any method may go again."""
        retry = self.retry
        if retry is not None and self.replayable:
            delay = retry.after_connect_failure()
            if delay is not None and self._allowed(now, reached=False):
                self.sent = False
                self.io.send_again(delay)
                return
        self.flags.append("UF")
        if "UO" not in self.flags:
            self._exhausted()
        self.io.answer(503, f"upstream connect error: {reason}\n".encode(), "")

    def upstream_lost(self, reason: str, stale: bool, now: float) -> None:
        """The upstream connection closed or reset before a response head."""
        if stale and not self.stale_replayed and self.may_resend():
            # The pooled connection was closed by the peer as we reused it: once, at once
            # (idempotent requests only: the peer may have read it before it closed).
            self.stale_replayed = True
            self.sent = False
            self.io.send_again(0.0)
            return
        retry = self.retry
        if retry is not None and self.may_resend():
            delay = retry.after_reset()
            if delay is not None and self._allowed(now):
                self.sent = False
                self.io.send_again(delay)
                return
        self.flags.append("UC")
        if "UO" not in self.flags:
            self._exhausted()
        self.io.answer(503, f"upstream reset before response: {reason}\n".encode(), "")

    def try_timed_out(self, now: float) -> None:
        """The per-try timer fired before a response head."""
        retry = self.retry
        if retry is not None and self.may_resend():
            delay = retry.after_per_try_timeout()
            if delay is not None and self._allowed(now):
                self.sent = False
                self.io.send_again(delay)
                return
        self.io.answer(504, b"upstream request timeout\n", "UT")

    def route_timed_out(self, response_started: bool) -> None:
        """The route's timer fired: it bounds the whole exchange, retries included."""
        if response_started:
            self.io.reset_downstream("UT")
        else:
            self.io.answer(504, b"upstream request timeout\n", "UT")

    def pool_overflow(self) -> None:
        """The endpoint's pool is at max_connections with max_pending requests waiting."""
        self.io.answer(503, b"upstream overflow: connection pool full\n", "UO")

    # -- bookkeeping ---------------------------------------------------------------------

    def try_ended(self) -> None:
        """An attempt ended: a retry it was releases its `max_retries` slot."""
        if self._retry_slot:
            self._retry_slot = False
            self.breaker.end_retry()

    def finish(self) -> None:
        """The exchange ended: release the retry it may hold (its request slot is the
        breaker layer's: `admit`)."""
        self.try_ended()
