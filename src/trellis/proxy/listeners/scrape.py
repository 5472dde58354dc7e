"""Metrics listener (WORKLOAD_ADDRESS:15090): `/metrics` for a Prometheus on another host.

The admin port stays on loopback and keeps its own `/metrics`; this port exists so a
Prometheus elsewhere can scrape the proxy, and it serves nothing else: `/metrics` (and
`/stats/prometheus`, Envoy's and Istio's path on 15090) to GET or HEAD, 404 for any
other path, 405 for any other method.

Every request needs `Authorization: Bearer <scrape token>`. The proxy holds only the
token's SHA-256 (`--metrics-token-sha256`; `trellis run` asks the control plane for it),
and compares digests in constant time: a proxy's memory, flags or process list never
show the token itself. No token or a wrong one: 401 with `WWW-Authenticate: Bearer`,
and nothing else is said. The Host header is not checked (Prometheus scrapes by
address); a browser tricked into asking (DNS rebinding) cannot add the token.

Why 15090: Istio's sidecar exports these same metrics from Envoy on 15090
(`/stats/prometheus`); 15020 is Istio's agent, which merges the app's own metrics in,
and Trellis does not do that.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.http1.writer import local_response
from trellis.proxy.listeners.admin import _AdminExchange
from trellis.proxy.listeners.server import ServerConnection

Page = Callable[[], tuple[int, str, bytes]]
PATHS = frozenset({"/metrics", "/stats/prometheus"})
DEFAULT_PORT = 15090
UNAUTHORIZED = b"unauthorized: send 'Authorization: Bearer <scrape token>'\n"


def token_digest(token: str) -> str:
    """The SHA-256 (hex) a proxy is configured with for `token`."""
    return hashlib.sha256(token.encode()).hexdigest()


def check_digest(value: str) -> str:
    """`value` lower-cased if it is a SHA-256 hex digest; ValueError otherwise."""
    digest = value.strip().lower()
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError("the scrape token's SHA-256 must be 64 hex digits")
    return digest


class ScrapeListener:
    def __init__(self, page: Page, token_sha256: str) -> None:
        self.page = page
        self.token_sha256 = check_digest(token_sha256)
        self.refused = 0  # requests without the right token

    def render_refused(self) -> list[str]:
        return [
            "# HELP trellis_metrics_scrapes_refused_total Requests to the metrics listener"
            " without the scrape token.",
            "# TYPE trellis_metrics_scrapes_refused_total counter",
            f"trellis_metrics_scrapes_refused_total {self.refused}",
        ]

    def authorized(self, authorization: str | None) -> bool:
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        return hmac.compare_digest(token_digest(token.strip()), self.token_sha256)

    def start(self, conn: ServerConnection, head: RequestHead) -> _AdminExchange:
        ex = _AdminExchange()
        conn.exchange = ex
        keep_alive = head.keep_alive and not head.has_body
        extra = None
        if not self.authorized(head.get("authorization")):
            self.refused += 1
            status, ctype, body = 401, "text/plain; charset=utf-8", UNAUTHORIZED
            extra = [(b"www-authenticate", b'Bearer realm="trellis metrics"')]
        elif head.method not in ("GET", "HEAD"):
            status, ctype, body = 405, "text/plain; charset=utf-8", b"read-only: GET\n"
        elif head.path.split("?", 1)[0] not in PATHS:
            status, ctype, body = 404, "text/plain; charset=utf-8", b"only /metrics here\n"
        else:
            status, ctype, body = self.page()
        data = local_response(
            status, body, close=not keep_alive, extra=extra, head_only=head.method == "HEAD"
        )
        data = data.replace(b"text/plain; charset=utf-8", ctype.encode(), 1)
        conn.write(data)
        conn.done(keep_alive)
        return ex

    def protocol_error(self, conn: ServerConnection, error: ProtocolError) -> None:
        pass
