"""Retry state of one request: attempts left and backoff. Pure: no clock, no I/O.

`RetryState` is made per request from the route's RetryPolicy (whose
`should_retry_*` say what counts: Envoy's `retry_on` semantics live in
trellis.routing.retry). Each failed attempt asks one question — connect
failure, reset, per-try timeout, or a response status — and gets back either
None (do not retry: give the client what we have) or the backoff delay before
the next attempt: fully jittered exponential, `random(0, base x (2^n - 1))`
capped at the policy's maximum, as Envoy does.

Whether a request may be sent again at all is `replay_safe`: once a byte of it may
have reached the upstream, only an idempotent request is (RFC 9110 §9.2.2: PUT,
DELETE and the safe methods; or one carrying an `Idempotency-Key`, as Go's transport
accepts). A request that never left (connect failure) may be retried whatever its
method.
"""

from __future__ import annotations

import random

from trellis.proxy.http1.head import RequestHead
from trellis.routing import RetryPolicy

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_IDEMPOTENCY_KEYS = ("idempotency-key", "x-idempotency-key")


def replay_safe(head: RequestHead) -> bool:
    """May this request be sent again after it may have reached the upstream?"""
    if head.method in IDEMPOTENT_METHODS:
        return True
    return any(head.get(name) is not None for name in _IDEMPOTENCY_KEYS)


class RetryState:
    __slots__ = ("_random", "left", "policy", "retries")

    def __init__(self, policy: RetryPolicy, rng: random.Random | None = None) -> None:
        self.policy = policy
        self.left = policy.num_retries
        self.retries = 0  # retries taken so far
        self._random = rng or random.Random()

    def _take(self) -> float | None:
        if self.left <= 0:
            return None
        self.left -= 1
        self.retries += 1
        p = self.policy
        upper = min(p.backoff_max, p.backoff_base * (2**self.retries - 1))
        return self._random.uniform(0.0, upper)

    def after_connect_failure(self) -> float | None:
        ok = self.policy.should_retry_reset(connect_failure=True, sent=False)
        return self._take() if ok else None

    def after_reset(self) -> float | None:
        return self._take() if self.policy.should_retry_reset() else None

    def after_per_try_timeout(self) -> float | None:
        return self._take() if self.policy.should_retry_per_try_timeout() else None

    def wants_status(self, status: int) -> bool:
        """Would this status be retried if attempts were left? (No attempt is used.)"""
        return self.policy.should_retry_status(status)

    def after_status(self, status: int) -> float | None:
        return self._take() if self.wants_status(status) else None
