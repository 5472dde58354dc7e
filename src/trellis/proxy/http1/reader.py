"""Incremental HTTP/1.1 readers over httptools (llhttp): requests from clients, responses
from upstreams.

Theory of operation: `feed(data)` runs llhttp over the bytes; llhttp calls
back into the reader, which turns the callbacks into three events on its
handler — a head (`on_request` / `on_response`), body pieces (`on_body`, already
de-chunked) and the end (`on_request_end` / `on_response_end`). Several
messages may come out of one `feed` (pipelining); the handler decides what to
do with them.

A request reader holds the events of a `feed` until all of its bytes have
parsed: a feed that fails delivers nothing, so nothing that arrived together
with a framing error (a bad chunk behind a valid head, a broken request
pipelined behind a good one) is ever forwarded. Bytes that arrive later than
a head cannot be judged before it goes upstream (bodies stream); there the
handler is told through the error, and resets what it started.

What llhttp already refuses (we rely on it, and the fuzz tests check it):
Content-Length together with Transfer-Encoding, duplicate Content-Length,
a non-digit Content-Length, a bad chunk size or extension, a header line
without a colon, whitespace before the colon, obs-fold, bare CR or LF, NUL in a
value. What the reader adds: size limits (431/414) that also hold while a head
arrives in pieces, the Host rules below, the request-target forms (RFC 9112
§3.2.1-4), the version rules below, the Transfer-Encoding rules (RFC 9112 §6.1,
§6.3: `chunked` final and once, else 400; another coding besides it, 501), no
content on an Upgrade request (llhttp skips it: 501), upgrades to `websocket` only
(any other, `h2c` included, is ignored: the request is served as HTTP/1.1 and the
connection then closes, since a protocol switched behind a policy check would carry
requests no policy sees), 100-continue detection
(HTTP/1.1 only), and a bound on bytes that frame a body without carrying any (chunk lines,
trailers), which llhttp and httptools would otherwise buffer without limit.
Trailer fields are read and dropped: they never join the head's headers.

Host (RFC 9112 §3.2, RFC 9110 §4.2.1, §7.2): at most one Host field, with a valid
value; HTTP/1.1 requests must have one. Every request names a non-empty host: an
origin-form or asterisk-form request takes it from Host, so an empty Host (or one
that is only a port) is 400, and so is an HTTP/1.0 request without Host (an http
URI with an empty host is invalid, and the listeners route and authorize on the
authority; Envoy refuses a request without Host the same way). An absolute-form
or CONNECT target names its own host: Host is then ignored beyond its syntax (RFC
9112 §3.2.2), and the proxy sends upstream a Host rebuilt from the target.

Versions (RFC 9112 §2.3, RFC 9110 §2.5, §15.6.6): HTTP/1.0 and HTTP/1.1 as they
are; HTTP/1.2 to HTTP/1.9 are read as HTTP/1.1 — a higher minor version of a major
version we implement SHOULD be processed as the highest minor version we
implement, and 505 is for a major version the server refuses; our answer says
HTTP/1.1 and the request goes upstream as HTTP/1.1. Any other major version
(HTTP/0.x, HTTP/2.0 and its preface, HTTP/3.0 ... HTTP/9.x) is 505; a version
that is not DIGIT "." DIGIT is 400. llhttp on its own refuses 1.2-1.9, 3.0-9.9
and 0.0 as "Invalid HTTP version" (400): its version check is relaxed
(`lenient_version`, which changes nothing else) so that these rules are ours.
llhttp also takes `RTSP/x.y` (with GET, POST, OPTIONS and RTSP's own methods)
and `ICE/x.y` (with SOURCE) for `HTTP/x.y`, and reports only the digits. RTSP's
own methods (DESCRIBE, PLAY...) are refused here (400: llhttp refuses them after
`HTTP/`); a GET, POST, OPTIONS or SOURCE so spelled is read as the HTTP request
it looks like and goes upstream as HTTP/1.1 — the callbacks do not say where the
request line is, so the protocol name cannot be checked without reading every
head twice.

Failure: every problem raises `ProtocolError` out of `feed`; after that the
reader is unusable and the connection must be closed. Bytes after a request
with `Connection: close` (or an HTTP/1.0 one without keep-alive) are ignored
(RFC 9112 §9.6), not an error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, Protocol

import httptools

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import Headers, RequestHead, ResponseHead
from trellis.wire import PEER_HEADER

MAX_HEAD_BYTES = 60 * 1024  # Envoy's default max_request_headers_kb
MAX_HEADERS = 100  # Envoy's default max_headers_count
MAX_TARGET_BYTES = 16 * 1024
PEER_FIELD = PEER_HEADER  # who the calling sidecar is (telemetry), kept aside
# The one protocol a request may switch to through the sidecar (Istio's default
# `upgrade_configs`): its messages are not HTTP requests a policy would have to see.
UPGRADE_ALLOWED = b"websocket"

_HOST_RE = re.compile(rb"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~%!$&'()*+,;=]*)(?::[0-9]{1,5})?$")
_NO_BODY_STATUS = frozenset({204, 304})
# In a response head llhttp accepted (CRLF line ends, no whitespace before a colon, no
# CR inside a value), a field starts right after a CRLF: searching the lower-cased head
# finds the ones framing and forwarding need, without splitting it into fields.
_FRAMING_FIELDS = re.compile(
    rb"\r\n(content-length|connection|keep-alive|proxy-connection|te|trailer"
    rb"|transfer-encoding|upgrade):[ \t]*([^\r]*)"
)
# Host field values already found valid -> their authority (stripped, lower-case): a
# sidecar sees a handful of them, and checking each request's anew was ~2% of its CPU.
# Bounded in count and in size (longer values, which callers control, are not kept).
_AUTHORITIES: dict[bytes, str] = {}
_AUTHORITIES_MAX = 1024
_AUTHORITY_MAX_BYTES = 255

# llhttp's error reasons that are not a plain 400 (RFC 9112 §2.2: what cannot be parsed).
_LLHTTP_STATUS = {
    "Pause on PRI/Upgrade": 505,  # the HTTP/2 connection preface
}
_CLOSED = "Data after `Connection: close`"
# Methods llhttp takes only after `RTSP/` (docstring): such a request is not HTTP.
_RTSP_ONLY_METHODS = frozenset(
    {
        "ANNOUNCE",
        "DESCRIBE",
        "FLUSH",
        "GET_PARAMETER",
        "PAUSE",
        "PLAY",
        "RECORD",
        "REDIRECT",
        "SET_PARAMETER",
        "SETUP",
        "TEARDOWN",
    }
)


class RequestHandler(Protocol):
    def on_request(self, head: RequestHead) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_request_end(self) -> None: ...


class ResponseHandler(Protocol):
    def on_response(self, head: ResponseHead) -> None: ...
    def on_body(self, data: bytes) -> None: ...
    def on_response_end(self) -> None: ...


def _parse_error(e: httptools.HttpParserError) -> ProtocolError:
    reason = str(e) or type(e).__name__
    return ProtocolError(_LLHTTP_STATUS.get(reason, 400), reason)


def _cause(e: httptools.HttpParserError) -> Exception | None:
    """What one of our callbacks raised (a ProtocolError, or a bug), when that stopped llhttp."""
    cause = e.__context__
    if (
        isinstance(e, httptools.HttpParserCallbackError)
        and isinstance(cause, Exception)
        and not isinstance(cause, httptools.HttpParserError)
    ):
        return cause
    return None


def _minor_version(version: str) -> str:
    """The version a request other than HTTP/1.0 or HTTP/1.1 is read as: HTTP/1.1 for
    1.2-1.9 (RFC 9110 §2.5), else 505 (RFC 9110 §15.6.6: a major version we refuse)."""
    if version.startswith("1."):
        return "1.1"
    raise ProtocolError(505, f"HTTP/{version} is not supported")


def _no_host(hosts: list[bytes]) -> ProtocolError:
    if hosts:
        return ProtocolError(400, "empty host in the Host header: the request names no authority")
    return ProtocolError(400, "missing Host header")


def transfer_chunked(value: bytes) -> bool:
    """The Transfer-Encoding field (all lines joined with ",") of a request: True when the
    body is chunked; ProtocolError when it cannot be framed (400) or uses a coding we do
    not implement (501). RFC 9112 §6.1 and §6.3."""
    codings = [c.strip().lower() for c in value.split(b",")]
    codings = [c for c in codings if c]
    if not codings or codings[-1] != b"chunked":
        raise ProtocolError(400, "Transfer-Encoding without chunked as the final coding")
    if codings.count(b"chunked") > 1:
        raise ProtocolError(400, "chunked applied more than once")
    if len(codings) > 1:
        listed = b", ".join(codings).decode("latin-1")
        raise ProtocolError(501, f"transfer coding {listed!r} not implemented")
    return True


class _Framing:
    """Bytes that frame a body without carrying any (chunk-size lines, extensions,
    trailers) are bounded: llhttp streams them, but httptools buffers a trailer field whole.
    `progress()` on every sign of a message moving on; `stalled(n)` after each feed."""

    __slots__ = ("bytes", "moved", "trailers")

    def __init__(self) -> None:
        self.bytes = 0
        self.moved = False
        self.trailers = False  # after a chunk header with no data since: the last chunk

    def progress(self) -> None:
        self.moved = True
        self.trailers = False

    def stalled(self, fed: int, limit: int, status_trailers: int, status_chunks: int) -> None:
        if self.moved:
            self.bytes = 0
            self.moved = False
            return
        self.bytes += fed
        if self.bytes > limit:
            if self.trailers:
                raise ProtocolError(status_trailers, "trailer section too large")
            raise ProtocolError(status_chunks, "chunk framing too large")


class RequestReader:
    """Requests from a client connection. `feed` returns the bytes that follow a CONNECT
    head (the tunnel's first bytes), else None."""

    __slots__ = (
        "_accounted",
        "_at_start",
        "_closed",
        "_content_length",
        "_data",
        "_events",
        "_expect",
        "_framing",
        "_fresh",
        "_handler",
        "_head_bytes",
        "_head_offset",
        "_head_size",
        "_headers",
        "_hosts",
        "_in_body",
        "_in_head",
        "_max_head",
        "_parser",
        "_peer",
        "_te",
        "_trailers",
        "_upgrade",
        "_url",
    )

    def __init__(self, handler: RequestHandler, *, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self._handler = handler
        self._max_head = max_head_bytes
        self._parser = httptools.HttpRequestParser(self)
        # Only the check of the version's digits: the version rules are ours (docstring).
        self._parser.set_dangerous_leniencies(lenient_version=True)
        self._events: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._framing = _Framing()
        self._closed = False
        self._in_body = False
        self._accounted = 0
        self._head_offset = -1
        # The bytes being fed, and whether the current head began at their start (then
        # its request line is read from them, not asked of httptools: a call that
        # formats a string each time, ~2% of a sidecar).
        self._data = b""
        self._fresh = False
        self._at_start = False
        self._reset()

    def _reset(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._url = b""
        self._headers: Headers = []
        self._head_size = 0  # bytes of the header fields so far
        self._hosts: list[bytes] = []
        self._content_length: int | None = None
        self._te: bytes | None = None
        self._expect = False
        self._upgrade = b""
        self._peer: bytes | None = None
        self._trailers = 0

    def feed(self, data: bytes) -> bytes | None:
        if self._closed:
            return None  # after `Connection: close`: nothing more is read
        events = self._events
        events.clear()
        self._accounted = 0
        self._head_offset = -1
        self._data = data
        self._fresh = not self._in_head and not self._in_body
        self._at_start = False
        rest = None
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            offset = int(e.args[0]) if e.args else len(data)
            rest = data[offset:]
        except httptools.HttpParserError as e:
            if str(e) == _CLOSED:
                self._closed = True  # RFC 9112 §9.6: the rest is not read
            else:
                events.clear()
                cause = _cause(e)
                raise (cause if cause is not None else _parse_error(e)) from None
        else:
            self._check_sizes(len(data))
        self._data = b""
        self._deliver()
        return rest

    def _check_sizes(self, fed: int) -> None:
        if self._in_head:
            # The head is still arriving: llhttp buffers partial values where we cannot
            # see them, so count every byte of it fed so far. When it began in this feed,
            # what came before it (bodies, earlier heads) is not its.
            if self._head_offset >= 0:
                self._head_bytes = fed - self._head_offset
            else:
                self._head_bytes += fed
            if self._head_bytes > self._max_head:
                self._events.clear()
                raise ProtocolError(431, "request header section too large")
        elif self._in_body:
            try:
                self._framing.stalled(fed, self._max_head, 431, 400)
            except ProtocolError:
                self._events.clear()
                raise

    def _deliver(self) -> None:
        events = self._events
        if not events:
            return
        self._events = []
        for callback, args in events:
            callback(*args)

    # -- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self._in_head = True
        self._head_offset = self._accounted
        self._at_start = self._fresh
        self._fresh = False

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._accounted += len(url)
        if len(self._url) > MAX_TARGET_BYTES:
            raise ProtocolError(414, "request-target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._accounted += len(name) + len(value) + 4
        if not self._in_head:
            # A trailer field: read, bounded, dropped (never forwarded as a header).
            self._trailers += 1
            if self._trailers > MAX_HEADERS:
                raise ProtocolError(431, f"more than {MAX_HEADERS} trailer fields")
            return
        headers = self._headers
        headers.append((name, value))
        self._head_size += len(name) + len(value) + 4
        if len(headers) > MAX_HEADERS:
            raise ProtocolError(431, f"more than {MAX_HEADERS} header fields")
        low = name.lower()
        if low == b"host":
            self._hosts.append(value)
        elif low == b"content-length":
            self._content_length = int(value)
        elif low == b"transfer-encoding":
            self._te = value if self._te is None else self._te + b"," + value
        elif low == b"expect":
            self._expect = value.strip().lower() == b"100-continue"
        elif low == b"upgrade":
            upgrade = self._upgrade
            self._upgrade = value.strip() if not upgrade else upgrade + b"," + value.strip()
        elif low == PEER_FIELD:
            peer = self._peer
            self._peer = value if peer is None else peer + b"," + value

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        framing = self._framing
        framing.moved, framing.trailers = True, False  # progress(), inlined: hot
        parser = self._parser
        version = ""
        if self._at_start:
            data = self._data
            end = data.find(b"\r\n")
            if end > 9 and data.endswith(b" HTTP/1.1", 0, end):
                version = "1.1"
        if not version:
            version = parser.get_http_version()
            if version != "1.1" and version != "1.0":
                version = _minor_version(version)
        if self._head_size + len(self._url) > self._max_head:
            raise ProtocolError(431, "request header section too large")
        chunked = False
        if self._te is not None:
            if version == "1.0":
                raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
            chunked = transfer_chunked(self._te)
        method = parser.get_method().decode("ascii")
        if method in _RTSP_ONLY_METHODS:
            raise ProtocolError(400, f"{method} is an RTSP method, not HTTP")
        content_length = self._content_length
        upgrade = b""
        keep_alive = parser.should_keep_alive()
        if parser.should_upgrade():
            # llhttp stops at this head and hands over the bytes after it. For CONNECT they
            # are the tunnel's (RFC 9110 §9.3.6: no content); for an Upgrade request they
            # are the new protocol's once the upstream answers 101, so a body could not
            # be told from them.
            if method != "CONNECT":
                if chunked or content_length:
                    raise ProtocolError(501, "an Upgrade request with content is not supported")
                if self._upgrade.lower() == UPGRADE_ALLOWED:
                    upgrade = self._upgrade
                else:
                    # Any other protocol (h2c, or one of the app's own) would carry requests
                    # no policy sees once switched: the upgrade is ignored (RFC 9110 §7.8)
                    # and the request served as HTTP/1.1, after which the connection
                    # closes (the client may already be speaking the new protocol).
                    keep_alive = False
            content_length, chunked = None, False
        target = self._url.decode("latin-1")
        path, authority, absolute = self._target(method, target, version)
        head = RequestHead(
            method,
            target,
            path,
            authority,
            self._headers,
            absolute=absolute,
            version=version,
            keep_alive=keep_alive,
            content_length=content_length,
            chunked=chunked,
            expect_continue=self._expect and version == "1.1",  # RFC 9110 §10.1.1
            upgrade=upgrade,
            peer=self._peer,
        )
        self._events.append((self._handler.on_request, (head,)))

    def _target(self, method: str, target: str, version: str) -> tuple[str, str, bool]:
        """(path, authority, absolute) from the request-target and Host (RFC 9112 §3.2)."""
        hosts = self._hosts
        if len(hosts) > 1:
            raise ProtocolError(400, "more than one Host header")
        if not hosts and version != "1.0":
            raise ProtocolError(400, "missing Host header")
        raw = hosts[0] if hosts else b""
        host_authority = _AUTHORITIES.get(raw)
        if host_authority is None:
            host = raw.strip()
            if not _HOST_RE.match(host):
                raise ProtocolError(400, "invalid Host header")
            host_authority = host.decode("latin-1").lower()
            if len(raw) <= _AUTHORITY_MAX_BYTES:
                if len(_AUTHORITIES) >= _AUTHORITIES_MAX:
                    _AUTHORITIES.clear()
                _AUTHORITIES[raw] = host_authority
        if "#" in target:
            raise ProtocolError(400, "a fragment in the request-target")  # RFC 9112 §3.2
        if method == "CONNECT":
            if (
                "/" in target
                or ":" not in target
                or target[0] == ":"
                or not _HOST_RE.match(target.encode("latin-1"))
            ):
                raise ProtocolError(400, "CONNECT needs an authority-form target (host:port)")
            return "", target.lower(), False
        if target.startswith("/"):
            if not host_authority or host_authority[0] == ":":
                raise _no_host(hosts)
            return target, host_authority, False
        if target == "*" and method == "OPTIONS":
            if not host_authority or host_authority[0] == ":":
                raise _no_host(hosts)
            return "*", host_authority, False
        lowered = target[:8].lower()
        if lowered.startswith(("http://", "https://")):
            try:
                # Any: the stubs type every field `bytes`, but absent ones are None (and
                # compiled code checks declared types).
                url: Any = httptools.parse_url(target.encode("latin-1"))
            except httptools.HttpParserInvalidURLError:
                raise ProtocolError(400, "invalid absolute-form target") from None
            if not url.host or url.userinfo:
                raise ProtocolError(400, "invalid absolute-form target")
            authority = url.host.decode("latin-1").lower()
            if ":" in authority:
                authority = f"[{authority}]"  # an IPv6 literal keeps its brackets
            if url.port is not None:
                authority = f"{authority}:{url.port}"
            path = (url.path or b"/").decode("latin-1")
            if url.query is not None:
                path = f"{path}?{url.query.decode('latin-1')}"
            return path, authority, True
        raise ProtocolError(400, "invalid request-target")

    def on_chunk_header(self) -> None:
        self._framing.moved = True
        self._framing.trailers = True  # until data comes: this may be the last chunk

    def on_chunk_complete(self) -> None:
        framing = self._framing
        framing.moved, framing.trailers = True, False  # progress(), inlined: hot

    def on_body(self, body: bytes) -> None:
        framing = self._framing
        framing.moved, framing.trailers = True, False  # progress(), inlined: hot
        self._accounted += len(body)
        self._events.append((self._handler.on_body, (body,)))

    def on_message_complete(self) -> None:
        self._in_body = False
        framing = self._framing
        framing.moved, framing.trailers = True, False  # progress(), inlined: hot
        self._events.append((self._handler.on_request_end, ()))


class ResponseReader:
    """Responses on an upstream connection, one per request sent.

    `expect(head_request)` is called before each request goes out: a response to
    HEAD has no body whatever its framing headers say, so it gets a parser of its
    own and the next request a fresh one (llhttp would read the next response as
    the body the HEAD response announced). 1xx responses (other than 101) are
    skipped. A close-delimited body ends with `eof()`; a Transfer-Encoding whose
    final coding is not chunked means close-delimited (RFC 9112 §6.3).

    A request that asked to switch protocols is expected with `upgrade=True`: a
    101 (with `Connection: upgrade` and `Upgrade`) then ends the reading, and
    `feed` returns the bytes after its head, the new protocol's (`switched`).

    The head is kept as it arrived (`ResponseHead.raw`) rather than rebuilt from
    llhttp's per-field callbacks (there is no `on_header` here, so llhttp validates
    the fields without a call into Python for each): a response starts where the
    bytes fed after a request start, or right after an interim response's head,
    past any empty lines (llhttp skips them), and must start with a status line;
    it ends at the first blank line after that, which llhttp's strict CRLF rules
    (no bare CR or LF, no obs-fold) make exact. The few fields framing and
    forwarding need are found in it by a loop of searches over its lower-cased
    bytes.

    A status outside 100-599, a version other than 1.x, a 101 nobody asked for,
    a body after a response to HEAD, a response that starts where none was asked
    for (after the previous one ended, in the same read) and anything llhttp
    refuses raise ProtocolError(502): the upstream is broken.
    """

    __slots__ = (
        "_awaiting",
        "_data",
        "_framing",
        "_handler",
        "_head",
        "_head_bytes",
        "_head_request",
        "_head_start",
        "_in_body",
        "_in_head",
        "_informational",
        "_next_start",
        "_parser",
        "_parts",
        "_upgrade",
        "done",
        "switched",
    )

    def __init__(self, handler: ResponseHandler) -> None:
        self._handler = handler
        self._parser = httptools.HttpResponseParser(self)
        self._head_request = False
        self._head: ResponseHead | None = None
        self._framing = _Framing()
        self._in_body = False
        self._upgrade = False
        self._data = b""  # the bytes being fed
        self._next_start = 0  # where in them a response may begin (-1: none may)
        self._head_start = 0  # where in them the current head began
        self._parts: list[bytes] = []  # the current head's bytes from earlier feeds
        self._awaiting = True  # a request went out and its final response has not begun
        self.done = False
        self.switched = False  # a 101 answered an upgrade: what follows is not HTTP
        self._reset()

    def _reset(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._informational = False

    def expect(self, head_request: bool, upgrade: bool = False) -> None:
        if head_request or self._head_request:
            self._parser = httptools.HttpResponseParser(self)
            self._in_body = False
        self._head_request = head_request
        self._upgrade = upgrade
        self._head = None
        self._awaiting = True
        self.done = False

    def feed(self, data: bytes) -> bytes | None:
        """Parse `data`; after a 101 to an upgrade, return the bytes that follow its head."""
        self._data = data
        # A response may begin only at the start of a read that comes while none is in
        # progress (or after an interim head, set when that is parsed).
        self._next_start = -1 if self._in_head or self._in_body else 0
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            if not self.switched:
                raise ProtocolError(502, "upstream switched protocols") from None
            offset = int(e.args[0]) if e.args else len(data)
            return data[offset:]
        except httptools.HttpParserError as e:
            cause = _cause(e)
            if cause is not None:
                raise cause from None
            raise ProtocolError(502, f"invalid upstream response: {e}") from None
        finally:
            self._data = b""
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                raise ProtocolError(502, "upstream response header section too large")
            # The head goes on in the next read: keep what came of it in this one.
            start = self._head_start
            self._parts.append(data[start:] if start else data)
            self._head_start = 0
        elif self._in_body:
            self._framing.stalled(len(data), MAX_HEAD_BYTES, 502, 502)
        return None

    def eof(self) -> bool:
        """The connection closed: True when that ended a close-delimited body."""
        head = self._head
        if head is not None and head.close_delimited and not self.done:
            self.done = True
            self._handler.on_response_end()
            return True
        return False

    def on_message_begin(self) -> None:
        start = self._next_start
        if start < 0 or not self._awaiting:
            raise ProtocolError(502, "upstream sent a response nobody asked for")
        self._reset()
        self._in_head = True
        self._head_start = start
        self._next_start = -1

    def _raw_head(self) -> bytes:
        """The head just parsed, as it arrived; notes where a following response may begin."""
        data = self._data
        parts = self._parts
        if parts:
            parts.append(data)
            joined = b"".join(parts)
            parts.clear()
            base = len(joined) - len(data)  # where `data` starts in `joined`
            start = 0
        else:
            joined, base, start = data, 0, self._head_start
        # llhttp skips empty lines (any run of CR and LF) before a message: the head
        # starts at the first byte that is neither, and must be a status line.
        size = len(joined)
        while start < size and joined[start] in (13, 10):
            start += 1
        if not joined.startswith(b"HTTP/", start):
            raise ProtocolError(502, "upstream response head not where it was expected")
        end = joined.find(b"\r\n\r\n", start)
        if end < 0:  # llhttp accepted no head without one
            raise ProtocolError(502, "upstream response head without its blank line")
        end += 4
        self._next_start = end - base
        return joined[start:end] if start or end != size else joined

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._in_body = True
        framing = self._framing
        framing.moved, framing.trailers = True, False  # progress(), inlined: hot
        raw = self._raw_head()
        # A field line takes at least 4 bytes: only a long head can have too many.
        if len(raw) > 4 * MAX_HEADERS and raw.count(b"\r\n") > MAX_HEADERS + 2:
            raise ProtocolError(502, "upstream response has too many header fields")
        parser = self._parser
        if raw.startswith(b"HTTP/1.1 ") and raw[9:12].isdigit() and raw[12:13] in (b" ", b"\r"):
            # llhttp accepted this status line: read it instead of asking (a call each).
            version = "1.1"
            status = int(raw[9:12])
        else:
            version = parser.get_http_version()
            status = parser.get_status_code()
        if not 100 <= status <= 599:
            raise ProtocolError(502, f"upstream response status {status} is not valid")
        if not version.startswith("1."):
            raise ProtocolError(502, f"upstream response is HTTP/{version}")
        line_end = raw.find(b"\r\n")
        reason = raw[13:line_end] if line_end > 13 else b""
        plain = True
        length = b""
        te = b""
        lowered = raw.lower()
        found = _FRAMING_FIELDS.search(lowered)
        while found is not None:  # (a loop of searches: cheaper than finditer's scanner)
            name = found.group(1)
            if name == b"content-length":
                length = found.group(2)
            else:
                plain = False
                if name == b"transfer-encoding":
                    te = te + b"," + found.group(2) if te else found.group(2)
            found = _FRAMING_FIELDS.search(lowered, found.end())
        if status < 200:
            if status == 101:
                if not (self._upgrade and parser.should_upgrade()):
                    raise ProtocolError(502, "upstream switched protocols")
                self._awaiting = False
                head = ResponseHead(
                    101, None, raw=raw, reason=reason, version=version, keep_alive=False
                )
                self._head = head
                self.done = self.switched = True
                self._handler.on_response(head)
                return
            self._informational = True
            return
        # The final response: nothing may begin after it in this read (its body, if any,
        # follows), nor in a later one before the next request.
        self._next_start = -1
        self._awaiting = False
        if length and status == 204:
            plain = False  # RFC 9110 §8.6: no Content-Length on a 204; rebuilt without it
        chunked = False
        others = b""
        content_length: int | None = None
        if te:  # lower-cased already
            codings = [c for c in (c.strip() for c in te.split(b",")) if c]
            chunked = codings[-1:] == [b"chunked"]
            others = b", ".join(codings[:-1] if chunked else codings)
        if length and not chunked:
            content_length = int(length)
        no_body = self._head_request or status in _NO_BODY_STATUS
        head = ResponseHead(
            status,
            None,
            raw=raw,
            plain=plain,
            reason=reason,
            version=version,
            # llhttp's answer, known without asking when no field could change it: an
            # HTTP/1.1 response with a Content-Length and no Connection field stays open.
            keep_alive=(plain and version == "1.1" and bool(length) and not self._head_request)
            or parser.should_keep_alive(),
            content_length=None if no_body else content_length,
            chunked=chunked and not no_body,
            close_delimited=not no_body and not chunked and content_length is None,
            codings=b"" if no_body else others,
        )
        self._head = head
        self._handler.on_response(head)
        if self._head_request:
            self.done = True
            self._handler.on_response_end()

    def on_chunk_header(self) -> None:
        self._framing.moved = True
        self._framing.trailers = True

    def on_chunk_complete(self) -> None:
        framing = self._framing
        framing.moved, framing.trailers = True, False  # progress(), inlined: hot

    def on_body(self, body: bytes) -> None:
        if self._head_request:
            # The response to HEAD ended with its head; the connection is out of step.
            raise ProtocolError(502, "upstream sent a body in a response to HEAD")
        framing = self._framing
        framing.moved, framing.trailers = True, False  # progress(), inlined: hot
        self._handler.on_body(body)

    def on_message_complete(self) -> None:
        self._in_body = False
        framing = self._framing
        framing.moved, framing.trailers = True, False  # progress(), inlined: hot
        if self._informational:
            self._informational = False
            return
        if self.switched:
            return  # llhttp ends a 101's message; the connection is a tunnel's now
        if not self._head_request:
            self.done = True
            self._handler.on_response_end()
