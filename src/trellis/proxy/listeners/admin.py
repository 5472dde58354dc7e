"""Admin listener (127.0.0.1:15000): readiness, config dump, clusters, metrics, stats.

Every page is answered locally, at once, from the proxy's state: `/ready`
(200 once the proxy holds its inbound listener and outbound policy, else
503), `/config_dump` (the xDS resources held, with versions and NOT_FOUND
names), `/clusters` (endpoints, health, active requests, connections),
`/metrics` (Prometheus text), `/stats` (JSON statistics of every part).
Reads only: nothing here changes the proxy.

Only requests for this port's own names are answered (issue 9): `localhost`,
a loopback address (127.0.0.0/8, ::1), the address the connection arrived on
and the host the listener was configured with (`--admin HOST:PORT`, a
wildcard aside), with or without a port. Any other host gets 421 (and the
connection is closed), whatever the path: a web page whose name an attacker
re-points at 127.0.0.1 (DNS rebinding) makes the browser send its own name as
Host, and would otherwise read `/config_dump` as same-origin. 421 Misdirected
Request (RFC 9110 §15.5.20) rather than 403: the request reached a server that
is not authoritative for the URI's host, and no credential would change that.
An IP address as Host cannot be rebound (a browser sends one only to that
address), so the port's own addresses are safe to take.
"""

from __future__ import annotations

import ipaddress
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


_WILDCARDS = frozenset({"", "0.0.0.0", "::"})
MISDIRECTED = (
    b"misdirected request: the admin port answers only for localhost, loopback addresses"
    b" and its own address\n"
)


def host_of(authority: str) -> str:
    """The host of a lower-case `host[:port]`, without an IPv6 literal's brackets."""
    if authority.startswith("["):
        return authority[1 : authority.find("]")]
    host, colon, port = authority.rpartition(":")
    return host if colon and port.isdigit() else authority


def is_own_host(authority: str, own: frozenset[str]) -> bool:
    """Whether `authority` (lower-case `host[:port]`) names this port: `localhost`, a
    loopback address, or one of `own` (the port's addresses and configured host)."""
    host = host_of(authority)
    if host == "localhost" or host in own:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class AdminListener:
    def __init__(self, pages: dict[str, Page], host: str = "127.0.0.1") -> None:
        self.pages = pages
        # The host it listens on, as configured (a name or an address; a wildcard names
        # nothing: the address each connection arrived on is taken instead).
        self.own = frozenset() if host in _WILDCARDS else frozenset({host.lower()})

    def _own_hosts(self, conn: ServerConnection) -> frozenset[str]:
        transport = conn.transport
        local = transport.get_extra_info("sockname") if transport is not None else None
        if not (isinstance(local, tuple) and local):
            return self.own
        address = str(local[0]).lower()
        names = {address}
        if address.startswith("::ffff:"):  # an IPv4 client of a dual-stack socket
            names.add(address.removeprefix("::ffff:"))
        return self.own | names

    def start(self, conn: ServerConnection, head: RequestHead) -> _AdminExchange:
        ex = _AdminExchange()
        conn.exchange = ex
        path = head.path.split("?", 1)[0]
        page = self.pages.get(path)
        keep_alive = head.keep_alive and not head.has_body
        if not is_own_host(head.authority, self._own_hosts(conn)):
            keep_alive = False
            status, ctype, body = 421, "text/plain; charset=utf-8", MISDIRECTED
        elif head.method not in ("GET", "HEAD"):
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
