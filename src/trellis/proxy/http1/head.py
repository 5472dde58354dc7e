"""Message heads as the proxy sees them: request and response line, headers, framing.

Headers stay as the raw `(name, value)` byte pairs that arrived, in order (the
proxy forwards them as they were); `RequestHead.header_map()` builds, once and
only when asked, the lower-case `str -> str` view that route matching uses
(repeated headers joined with ","). Hop-by-hop headers (RFC 9110 §7.6.1) are
dropped by `end_to_end()` when a message is forwarded.

Must not know about sockets or routing.
"""

from __future__ import annotations

Headers = list[tuple[bytes, bytes]]

# RFC 9110 §7.6.1 and the usual non-standard ones; `te: trailers` is dropped too
# (we do not forward trailers over HTTP/1.1).
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"http2-settings",  # of an h2c upgrade (RFC 7540 §3.2.1), which is never forwarded
        b"content-length",  # re-written by the proxy from the framing it chose
    }
)


def end_to_end(headers: Headers, drop: frozenset[bytes] = HOP_BY_HOP) -> Headers:
    """`headers` without hop-by-hop ones, those the Connection header lists, and any other
    lower-case name in `drop` (a superset of HOP_BY_HOP built once by the caller). One
    pass over the headers in the usual case (no Connection header): this runs twice per
    request on the hot path."""
    out: Headers = []
    listed: set[bytes] | None = None
    for name, value in headers:
        low = name.lower()
        if low in drop:
            if low == b"connection":
                if listed is None:
                    listed = set()
                listed.update(t.strip().lower() for t in value.split(b","))
            continue
        out.append((name, value))
    if listed:
        out = [(n, v) for n, v in out if n.lower() not in listed]
    return out


def header_map(headers: Headers) -> dict[str, str]:
    """Lower-case name -> value; repeated names joined with "," (RFC 9110 §5.3)."""
    out: dict[str, str] = {}
    for name, value in headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        if key in out:
            out[key] = out[key] + "," + text
        else:
            out[key] = text
    return out


class RequestHead:
    """A request as received: what it asks for and how its body is framed."""

    __slots__ = (
        "_map",
        "absolute",
        "authority",
        "chunked",
        "content_length",
        "expect_continue",
        "headers",
        "keep_alive",
        "method",
        "path",
        "peer",
        "target",
        "upgrade",
        "version",
    )

    def __init__(
        self,
        method: str,
        target: str,
        path: str,
        authority: str,
        headers: Headers,
        *,
        absolute: bool = False,
        version: str = "1.1",
        keep_alive: bool = True,
        content_length: int | None = None,
        chunked: bool = False,
        expect_continue: bool = False,
        upgrade: bytes = b"",
        peer: bytes | None = None,
    ) -> None:
        self.method = method
        self.target = target  # the request-target as sent
        self.path = path  # path and query ("" for CONNECT)
        self.authority = authority  # lower-case host[:port]: the absolute URI's, else Host
        self.headers = headers
        self.absolute = absolute  # absolute-form (a forward-proxy request)
        self.version = version
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        # The protocol a bodiless request asks to switch to (`Connection: upgrade` with
        # `Upgrade: websocket`): forwarded, and a 101 makes the exchange a tunnel.
        self.upgrade = upgrade
        # The calling sidecar's `x-trellis-peer` field (repeated ones joined with ","),
        # picked out while reading: telemetry needs it on every inbound request.
        self.peer = peer
        self._map: dict[str, str] | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header_map(self) -> dict[str, str]:
        if self._map is None:
            self._map = header_map(self.headers)
        return self._map

    def get(self, name: str) -> str | None:
        """One header's value (lower-case `name`), repeated ones joined with ",". Found in
        the fields themselves until the whole map is built: routes and hash policies look up
        one or two names, and building the map for them was ~2% of an inbound sidecar."""
        if self._map is not None:
            return self._map.get(name)
        try:
            key = name.encode("latin-1")
        except UnicodeEncodeError:
            return None  # no field name can be spelled so
        size = len(key)
        found: str | None = None
        for field_name, value in self.headers:
            if len(field_name) == size and field_name.lower() == key:
                text = value.decode("latin-1")
                found = text if found is None else found + "," + text
        return found

    def __repr__(self) -> str:
        return f"<RequestHead {self.method} {self.target} authority={self.authority!r}>"


class ResponseHead:
    """A response as received from upstream, or made by the proxy.

    A response read from upstream keeps its head as it arrived (`raw`: status line
    through the blank line, already validated by llhttp); `headers` are split out of
    it only when asked. `plain` says the head has no hop-by-hop field, so it can be
    forwarded as it is (the usual case: `Exchange` then skips rebuilding it)."""

    __slots__ = (
        "_headers",
        "chunked",
        "close_delimited",
        "codings",
        "content_length",
        "keep_alive",
        "plain",
        "raw",
        "reason",
        "status",
        "version",
    )

    def __init__(
        self,
        status: int,
        headers: Headers | None,
        *,
        raw: bytes = b"",
        plain: bool = False,
        reason: bytes = b"",
        version: str = "1.1",
        keep_alive: bool = True,
        content_length: int | None = None,
        chunked: bool = False,
        close_delimited: bool = False,
        codings: bytes = b"",
    ) -> None:
        self.status = status
        self._headers = headers  # None: parsed from `raw` when first asked
        self.raw = raw
        self.plain = plain
        self.reason = reason
        self.version = version
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.close_delimited = close_delimited  # body ends when the connection closes
        # Transfer codings other than chunked (`gzip` of `gzip, chunked`): the body stays
        # coded with them, so they travel on (Transfer-Encoding is hop-by-hop).
        self.codings = codings

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if headers is None:
            headers = self._headers = head_fields(self.raw)
        return headers

    def __repr__(self) -> str:
        return f"<ResponseHead {self.status}>"


def head_fields(raw: bytes) -> Headers:
    """The header fields of a head llhttp accepted (CRLF line ends, no obs-fold, no
    whitespace before a colon): `(name, value)` pairs, values without their OWS."""
    out: Headers = []
    for line in raw.split(b"\r\n")[1:]:
        if line:
            name, _, value = line.partition(b":")
            out.append((name, value.strip(b" \t")))
    return out
