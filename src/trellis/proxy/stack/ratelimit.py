"""The local rate-limit layer (Envoy's `envoy.filters.http.local_ratelimit`): a route's
token bucket (trellis.routing.ratelimit) admits a request or answers it 429 with flag RL
and the rate-limit headers (`retry-after` among them). Admitted responses carry no
headers: Envoy adds them only when configured, and this keeps the usual path free.
Counted in metrics through the flag (`response_flags`).

Must not know clusters, retries or connections.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from trellis.routing.route import Route

if TYPE_CHECKING:
    from trellis.proxy.stack.exchange import Exchange


def limited(ex: Exchange, route: Route) -> bool:
    """True when the request was refused (answered 429 RL)."""
    bucket = route.rate_limit
    if bucket is None:
        return False
    now = ex.ctx.loop.time()
    if bucket.take(now):
        return False
    ex.respond(429, b"local rate limit\n", extra=bucket.headers(now, True), flags="RL")
    return True
