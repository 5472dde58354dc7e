"""Admin listener (127.0.0.1:15000): readiness, config dump, clusters, metrics, stats.

Every page is answered locally, at once, from the proxy's state: `/ready`
(200 once the proxy holds its inbound listener and outbound policy, else
503), `/config_dump` (the xDS resources held, with versions and NOT_FOUND
names), `/clusters` (endpoints, health, active requests, connections),
`/metrics` (Prometheus text), `/stats` (JSON statistics of every part).
Reads only: nothing here changes the proxy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import RequestHead
from trellis.proxy.http1.writer import local_response
from trellis.proxy.listeners.server import ServerConnection

Page = Callable[[], tuple[int, str, bytes]]


def json_page(producer: Callable[[], Any]) -> Page:
    def page() -> tuple[int, str, bytes]:
        body = json.dumps(producer(), indent=2, sort_keys=True, default=str) + "\n"
        return 200, "application/json", body.encode()

    return page


class _AdminExchange:
    """Answers at once; the request body (if any) is ignored."""

    def on_request_body(self, data: bytes) -> None:
        pass

    def on_request_end(self) -> None:
        pass

    def on_downstream_lost(self) -> None:
        pass

    def on_downstream_paused(self, paused: bool) -> None:
        pass

    def on_request_timeout(self, idle: bool) -> None:
        pass


class AdminListener:
    def __init__(self, pages: dict[str, Page]) -> None:
        self.pages = pages

    def start(self, conn: ServerConnection, head: RequestHead) -> _AdminExchange:
        ex = _AdminExchange()
        conn.exchange = ex
        path = head.path.split("?", 1)[0]
        page = self.pages.get(path)
        keep_alive = head.keep_alive and not head.has_body
        if head.method not in ("GET", "HEAD"):
            status, ctype, body = 405, "text/plain; charset=utf-8", b"read-only: GET\n"
        elif page is None:
            known = "\n".join(sorted(self.pages))
            status, ctype, body = 404, "text/plain; charset=utf-8", f"pages:\n{known}\n".encode()
        else:
            status, ctype, body = page()
        data = local_response(status, body, close=not keep_alive, head_only=head.method == "HEAD")
        data = data.replace(b"text/plain; charset=utf-8", ctype.encode(), 1)
        conn.write(data)
        conn.done(keep_alive)
        return ex

    def protocol_error(self, conn: ServerConnection, error: ProtocolError) -> None:
        pass
