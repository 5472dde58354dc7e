"""Retry budget: Linkerd's shape (tower's TpsBudget). Pure: the caller passes the clock.

Every request deposits; every retry withdraws. Retries are allowed while, over the
last `ttl` seconds, retries <= `ratio` x requests + `min_per_second` x ttl. So a
backend that fails everything sees at most (1 + ratio) x the client's requests plus
the minimum rate, whatever the routes' attempt counts: retries cannot become a storm.
The window is a ring of 10 slots of ttl/10 each (as tower's generations), so old
requests stop paying for retries after ttl.

One budget per destination cluster (shared by every route to it), configured by the
DestinationPolicy's `retryBudget`; on by default (20%, 10/s, 10 s).
"""

from __future__ import annotations

SLOTS = 10


class RetryBudget:
    __slots__ = (
        "_deposits",
        "_retries",
        "_slot",
        "_slot_start",
        "exhausted",
        "min_per_second",
        "ratio",
        "slot_width",
        "ttl",
        "withdrawn",
    )

    def __init__(self, ratio: float = 0.2, min_per_second: float = 10.0, ttl: float = 10.0) -> None:
        self.ratio = ratio
        self.min_per_second = min_per_second
        self.ttl = ttl
        self.slot_width = ttl / SLOTS
        self._deposits = [0] * SLOTS
        self._retries = [0] * SLOTS
        self._slot = 0
        self._slot_start = -1.0
        self.withdrawn = 0  # retries allowed, ever (for /clusters and metrics)
        self.exhausted = 0  # retries refused, ever

    def _advance(self, now: float) -> None:
        start = self._slot_start
        if start < 0:
            self._slot_start = now
            return
        steps = int((now - start) / self.slot_width)
        if steps <= 0:
            return
        for _ in range(min(steps, SLOTS)):
            self._slot = (self._slot + 1) % SLOTS
            self._deposits[self._slot] = 0
            self._retries[self._slot] = 0
        self._slot_start = start + steps * self.slot_width

    def deposit(self, now: float) -> None:
        """A request (not a retry) went out to this destination."""
        self._advance(now)
        self._deposits[self._slot] += 1

    def withdraw(self, now: float) -> bool:
        """May one more retry go out now? Counts it when it may."""
        self._advance(now)
        allowed = self.ratio * sum(self._deposits) + self.min_per_second * self.ttl
        if sum(self._retries) + 1 > allowed:
            self.exhausted += 1
            return False
        self._retries[self._slot] += 1
        self.withdrawn += 1
        return True

    def balance(self, now: float) -> float:
        """Retries still allowed in the current window (for `trellis describe`, /clusters)."""
        self._advance(now)
        allowed = self.ratio * sum(self._deposits) + self.min_per_second * self.ttl
        return max(0.0, allowed - sum(self._retries))
