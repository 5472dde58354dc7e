"""DownstreamTimeouts: how long a client may take, per listener. Pure.

Enforced by `ServerConnection.sweep` (listeners/server.py), once a second, over
timestamps: a request head that has begun must be complete within `head` (408,
slowloris); a request body must move at least every `body_idle` and be complete
within `body` (408, or a reset once the response has begun); a connection with no
request in flight closes after `idle`. Envoy's counterparts: `request_headers_timeout`,
`stream_idle_timeout`, `request_timeout`, the connection `idle_timeout`.

The defaults suit a sidecar beside an app on the same host: `body` bounds a whole
upload at 5 minutes (a larger or slower one needs `trellis proxy --body-timeout`),
`idle` outlives the peer sidecar's pooled connections (60 s) so the caller closes first.
"""

from __future__ import annotations

from dataclasses import dataclass

HEAD_TIMEOUT = 30.0
BODY_IDLE_TIMEOUT = 30.0
BODY_TIMEOUT = 300.0
IDLE_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class DownstreamTimeouts:
    head: float = HEAD_TIMEOUT
    body_idle: float = BODY_IDLE_TIMEOUT
    body: float = BODY_TIMEOUT
    idle: float = IDLE_TIMEOUT

    def __post_init__(self) -> None:
        for name in ("head", "body_idle", "body", "idle"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} timeout must be positive, not {getattr(self, name)}")


DEFAULT_TIMEOUTS = DownstreamTimeouts()
