"""RequestView: what authorization sees of one inbound request (built per request, tiny).

Owns the per-request inputs of the RBAC matchers and how pseudo-headers are
read from them. Must not know about sockets, TLS, HTTP parsing or protobuf:
the proxy fills it from what it already parsed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_NO_HEADERS: Mapping[str, str] = {}


class RequestView:
    """One request as the RBAC engine sees it.

    - `principal`: the peer's SPIFFE ID from its verified client certificate,
      or "" (plaintext, or no client certificate): `authenticated` never matches "".
    - `source`: the peer's IP address (the TCP peer: no X-Forwarded-For).
    - `destination_port`: the workload port the request is for (Istio's
      `to.operation.ports`): the app port a sidecar forwards to, the port a
      proxyless server listens on.
    - `method`, `path` (without query or fragment), `query` (raw, without `?`;
      only `:path` header matchers see it, as in Envoy).
    - `headers`: lower-case name -> value, repeated headers joined with ",".
    - `host`: the request's authority as the proxy forwards it (an absolute-form
      target's host, else Host): what `:authority` and `host` matchers see, so a
      policy on the host checks the one the app receives. When not given, read
      from the `:authority`, else `host` header (Envoy aliases them).
    - `tunnel`: a CONNECT, decided at L4: the requests it will carry are never
      seen, so its method, path and headers count as unknown (engine.py).
    """

    __slots__ = (
        "_ip",
        "_ip_parsed",
        "destination_port",
        "headers",
        "host",
        "method",
        "path",
        "principal",
        "query",
        "source",
        "tunnel",
    )

    def __init__(
        self,
        *,
        principal: str = "",
        source: str = "",
        destination_port: int = 0,
        method: str = "GET",
        path: str = "/",
        query: str = "",
        headers: Mapping[str, str] = _NO_HEADERS,
        tunnel: bool = False,
        host: str | None = None,
    ) -> None:
        self.principal = principal
        self.source = source
        self.destination_port = destination_port
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.tunnel = tunnel
        self.host = host
        self._ip: IPAddress | None = None
        self._ip_parsed = False

    def source_ip(self) -> IPAddress | None:
        """`source` parsed once (None when it is not an IP address)."""
        if not self._ip_parsed:
            self._ip_parsed = True
            try:
                self._ip = ipaddress.ip_address(self.source)
            except ValueError:
                self._ip = None
        return self._ip

    def authority(self) -> str | None:
        if self.host is not None:
            return self.host
        headers = self.headers
        value = headers.get(":authority")
        return value if value is not None else headers.get("host")

    def full_path(self) -> str:
        """What a `:path` header matcher sees: the path with its query."""
        return f"{self.path}?{self.query}" if self.query else self.path

    def __repr__(self) -> str:
        what = "tunnel" if self.tunnel else f"{self.method} {self.full_path()}"
        return (
            f"RequestView({what} from {self.principal or '-'}"
            f"@{self.source or '-'} to port {self.destination_port})"
        )
