"""Reconnect delays: exponential backoff with full jitter (pure arithmetic, no clock).

Delay number `attempt` (0 first) is uniform in [0, min(maximum, base * 2**attempt)]:
"full jitter" spreads a fleet of proxies that lost the same control plane, so
they do not come back in lockstep. `reset()` after a stream that worked.
Knows nothing of gRPC, sleeping or servers; the random source is injectable.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

Uniform = Callable[[float, float], float]


def ceiling(attempt: int, base: float, maximum: float) -> float:
    """The largest delay of attempt `attempt`: min(maximum, base * 2**attempt), no overflow."""
    if attempt < 0:
        raise ValueError(f"attempt must be >= 0, got {attempt}")
    if base <= 0:
        return 0.0
    # 2**attempt overflows a float near attempt 1024; cap the exponent where it can't matter.
    doublings_to_max = math.log2(maximum / base) if maximum > base else 0.0
    if attempt > doublings_to_max:
        return maximum
    return min(maximum, base * 2.0**attempt)


class Backoff:
    """Successive reconnect delays. `next_delay()` draws one and moves to the next attempt."""

    __slots__ = ("_uniform", "attempt", "base", "maximum")

    def __init__(self, base: float, maximum: float, *, uniform: Uniform = random.uniform) -> None:
        if not (base >= 0 and maximum >= 0):  # also refuses NaN
            raise ValueError(f"backoff base and max must be >= 0, got {base} and {maximum}")
        self.base = base
        self.maximum = maximum
        self.attempt = 0
        self._uniform = uniform

    def next_delay(self) -> float:
        """A delay in [0, ceiling(attempt)]; the next call draws from a doubled ceiling."""
        limit = ceiling(self.attempt, self.base, self.maximum)
        self.attempt += 1
        return min(limit, max(0.0, self._uniform(0.0, limit)))

    def reset(self) -> None:
        """Start again from `base` (after a stream that delivered a response)."""
        self.attempt = 0
