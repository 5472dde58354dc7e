"""Local rate limiting: a token bucket per route or per destination service. Pure: the
caller passes the clock.

Envoy's `envoy.filters.http.local_ratelimit` token bucket: the bucket holds at most
`max_tokens`, starts full, and gains `tokens_per_fill` every `fill_interval` seconds
(whole fills, as Envoy's timer adds them). A request takes one token or is refused
(429, flag RL). The headers are the IETF draft's (`x-ratelimit-limit`,
`x-ratelimit-remaining`, `x-ratelimit-reset`, Envoy's `DRAFT_VERSION_03`), plus
`retry-after` on a refusal.

A bucket lives in the compiled Route (or listener config) it belongs to: a new config
version starts a full bucket, as Envoy's filter does when its config changes.
"""

from __future__ import annotations

import math


class TokenBucket:
    __slots__ = ("_last_fill", "fill_interval", "max_tokens", "tokens", "tokens_per_fill")

    def __init__(self, max_tokens: int, tokens_per_fill: int, fill_interval: float) -> None:
        if max_tokens < 1 or tokens_per_fill < 1 or fill_interval <= 0:
            raise ValueError("a token bucket needs max_tokens, tokens_per_fill >= 1, interval > 0")
        self.max_tokens = max_tokens
        self.tokens_per_fill = tokens_per_fill
        self.fill_interval = fill_interval
        self.tokens = float(max_tokens)
        self._last_fill = -1.0  # set at the first use (the caller's clock)

    def _refill(self, now: float) -> None:
        last = self._last_fill
        if last < 0:
            self._last_fill = now
            return
        fills = math.floor((now - last) / self.fill_interval)
        if fills > 0:
            self.tokens = min(float(self.max_tokens), self.tokens + fills * self.tokens_per_fill)
            self._last_fill = last + fills * self.fill_interval

    def take(self, now: float) -> bool:
        """One request: True when it may pass (a token taken), False when limited."""
        self._refill(now)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def reset_after(self, now: float) -> float:
        """Seconds until the next fill."""
        if self._last_fill < 0:
            return 0.0
        return max(0.0, self._last_fill + self.fill_interval - now)

    def headers(self, now: float, limited: bool) -> list[tuple[bytes, bytes]]:
        """The rate-limit response headers (draft 03), `retry-after` when refused."""
        reset = math.ceil(self.reset_after(now))
        out = [
            (b"x-ratelimit-limit", b"%d" % self.max_tokens),
            (b"x-ratelimit-remaining", b"%d" % int(self.tokens)),
            (b"x-ratelimit-reset", b"%d" % reset),
        ]
        if limited:
            out.append((b"retry-after", b"%d" % max(1, reset)))
        return out
