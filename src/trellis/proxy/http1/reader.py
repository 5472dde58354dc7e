"""Incremental HTTP/1.1 readers over httptools (llhttp): requests from clients, responses
from upstreams.

Theory of operation: `feed(data)` runs llhttp over the bytes; llhttp calls
back into the reader, which turns the callbacks into three events on its
handler — a head (`on_request` / `on_response`), body pieces (`on_body`, already
de-chunked) and the end (`on_request_end` / `on_response_end`). Several
messages may come out of one `feed` (pipelining); the handler decides what to
do with them.

What llhttp already refuses (we rely on it, and the fuzz tests check it):
Content-Length together with Transfer-Encoding, duplicate Content-Length,
a non-digit Content-Length, a bad chunk size, a header line without a colon,
whitespace before the colon, obs-fold, bare CR or LF, NUL in a value. What the
reader adds: size limits (431/414) that also hold while a head arrives in
pieces, exactly one valid Host on HTTP/1.1 (RFC 9112 §3.2), the request-target
forms (RFC 9112 §3.2.1-4), HTTP/1.x only (505), `chunked` as the only transfer
coding (501), and 100-continue detection.

Failure: every problem raises `ProtocolError` out of `feed`; after that the
reader is unusable and the connection must be closed.
"""

from __future__ import annotations

import re
from typing import Protocol

import httptools

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import Headers, RequestHead, ResponseHead

MAX_HEAD_BYTES = 60 * 1024  # Envoy's default max_request_headers_kb
MAX_HEADERS = 100  # Envoy's default max_headers_count
MAX_TARGET_BYTES = 16 * 1024

_HOST_RE = re.compile(rb"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.\-_~%!$&'()*+,;=]*)(?::[0-9]{1,5})?$")
_NO_BODY_STATUS = frozenset({204, 304})


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
    if "Transfer-Encoding" in reason and "invalid" in reason.lower():
        return ProtocolError(501, reason)
    return ProtocolError(400, reason)


class RequestReader:
    """Requests from a client connection. `feed` returns the bytes that follow a CONNECT
    head (the tunnel's first bytes), else None."""

    __slots__ = (
        "_content_length",
        "_expect",
        "_handler",
        "_head_bytes",
        "_headers",
        "_hosts",
        "_in_head",
        "_max_head",
        "_parser",
        "_te",
        "_url",
    )

    def __init__(self, handler: RequestHandler, *, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self._handler = handler
        self._max_head = max_head_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._reset()

    def _reset(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._url = b""
        self._headers: Headers = []
        self._hosts: list[bytes] = []
        self._content_length: int | None = None
        self._te: bytes | None = None
        self._expect = False

    def feed(self, data: bytes) -> bytes | None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as e:
            offset = int(e.args[0]) if e.args else len(data)
            return data[offset:]
        except httptools.HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, Exception) and isinstance(e, httptools.HttpParserCallbackError):
                raise cause from None  # ours (ProtocolError), or a handler's bug: not a 400
            raise _parse_error(e) from None
        if self._in_head:
            # The head is still arriving: llhttp buffers partial values where we cannot
            # see them, so count every byte fed since the head began.
            self._head_bytes += len(data)
            if self._head_bytes > self._max_head:
                raise ProtocolError(431, "request header section too large")
        return None

    # -- llhttp callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self._in_head = True

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > MAX_TARGET_BYTES:
            raise ProtocolError(414, "request-target too long")

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        headers.append((name, value))
        if len(headers) > MAX_HEADERS:
            raise ProtocolError(431, f"more than {MAX_HEADERS} header fields")
        low = name.lower()
        if low == b"host":
            self._hosts.append(value)
        elif low == b"content-length":
            self._content_length = int(value)
        elif low == b"transfer-encoding":
            self._te = value.strip().lower() if self._te is None else self._te + b"," + value
        elif low == b"expect":
            self._expect = value.strip().lower() == b"100-continue"

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        version = parser.get_http_version()
        if not version.startswith("1."):
            raise ProtocolError(505, f"HTTP/{version} is not supported")
        if sum(len(n) + len(v) + 4 for n, v in self._headers) + len(self._url) > self._max_head:
            raise ProtocolError(431, "request header section too large")
        chunked = False
        if self._te is not None:
            if self._te != b"chunked":
                raise ProtocolError(501, f"transfer coding {self._te.decode('latin-1')!r}")
            if version == "1.0":
                raise ProtocolError(400, "Transfer-Encoding in an HTTP/1.0 request")
            chunked = True
        method = parser.get_method().decode("ascii")
        target = self._url.decode("latin-1")
        path, authority, absolute = self._target(method, target, version)
        self._handler.on_request(
            RequestHead(
                method,
                target,
                path,
                authority,
                self._headers,
                absolute=absolute,
                version=version,
                keep_alive=parser.should_keep_alive(),
                content_length=self._content_length,
                chunked=chunked,
                expect_continue=self._expect,
            )
        )

    def _target(self, method: str, target: str, version: str) -> tuple[str, str, bool]:
        """(path, authority, absolute) from the request-target and Host (RFC 9112 §3.2)."""
        hosts = self._hosts
        if len(hosts) > 1:
            raise ProtocolError(400, "more than one Host header")
        if not hosts and version != "1.0":
            raise ProtocolError(400, "missing Host header")
        host = hosts[0].strip() if hosts else b""
        if not _HOST_RE.match(host):
            raise ProtocolError(400, "invalid Host header")
        if method == "CONNECT":
            if "/" in target or ":" not in target or not _HOST_RE.match(target.encode("latin-1")):
                raise ProtocolError(400, "CONNECT needs an authority-form target (host:port)")
            return "", target.lower(), False
        if target.startswith("/"):
            return target, host.decode("latin-1").lower(), False
        if target == "*" and method == "OPTIONS":
            return "*", host.decode("latin-1").lower(), False
        lowered = target[:8].lower()
        if lowered.startswith(("http://", "https://")):
            try:
                url = httptools.parse_url(target.encode("latin-1"))
            except httptools.HttpParserInvalidURLError:
                raise ProtocolError(400, "invalid absolute-form target") from None
            if not url.host or url.userinfo:
                raise ProtocolError(400, "invalid absolute-form target")
            authority = url.host.decode("latin-1").lower()
            if url.port is not None:
                authority = f"{authority}:{url.port}"
            path = (url.path or b"/").decode("latin-1")
            if url.query is not None:
                path = f"{path}?{url.query.decode('latin-1')}"
            return path, authority, True
        raise ProtocolError(400, "invalid request-target")

    def on_body(self, body: bytes) -> None:
        self._handler.on_body(body)

    def on_message_complete(self) -> None:
        self._handler.on_request_end()


class ResponseReader:
    """Responses on an upstream connection, one per request sent.

    `expect(head_request)` is called before each request goes out: a response to
    HEAD has no body whatever its framing headers say. 1xx responses (other than
    101) are skipped. A close-delimited body ends with `eof()`.
    """

    __slots__ = (
        "_content_length",
        "_handler",
        "_head",
        "_head_bytes",
        "_head_request",
        "_headers",
        "_in_head",
        "_informational",
        "_parser",
        "_te",
        "done",
    )

    def __init__(self, handler: ResponseHandler) -> None:
        self._handler = handler
        self._parser = httptools.HttpResponseParser(self)
        self._head_request = False
        self._head: ResponseHead | None = None
        self.done = False
        self._reset()

    def _reset(self) -> None:
        self._in_head = False
        self._head_bytes = 0
        self._headers: Headers = []
        self._content_length: int | None = None
        self._te = False
        self._informational = False

    def expect(self, head_request: bool) -> None:
        self._head_request = head_request
        self._head = None
        self.done = False
        if head_request:
            # llhttp would wait for the body that Content-Length announces: a fresh parser
            # per HEAD response, dropped once its head is read.
            self._parser = httptools.HttpResponseParser(self)

    def feed(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            raise ProtocolError(502, "upstream switched protocols") from None
        except httptools.HttpParserError as e:
            cause = e.__context__
            if isinstance(cause, Exception) and isinstance(e, httptools.HttpParserCallbackError):
                raise cause from None
            raise ProtocolError(502, f"invalid upstream response: {e}") from None
        if self._in_head:
            self._head_bytes += len(data)
            if self._head_bytes > MAX_HEAD_BYTES:
                raise ProtocolError(502, "upstream response header section too large")

    def eof(self) -> bool:
        """The connection closed: True when that ended a close-delimited body."""
        head = self._head
        if head is not None and head.close_delimited and not self.done:
            self.done = True
            self._handler.on_response_end()
            return True
        return False

    def on_message_begin(self) -> None:
        self._reset()
        self._in_head = True

    def on_status(self, status: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))
        if len(self._headers) > MAX_HEADERS:
            raise ProtocolError(502, "upstream response has too many header fields")
        low = name.lower()
        if low == b"content-length":
            self._content_length = int(value)
        elif low == b"transfer-encoding":
            self._te = True

    def on_headers_complete(self) -> None:
        self._in_head = False
        parser = self._parser
        status = parser.get_status_code()
        if 100 <= status < 200:
            if status == 101:
                raise ProtocolError(502, "upstream switched protocols")
            self._informational = True
            return
        no_body = self._head_request or status in _NO_BODY_STATUS
        head = ResponseHead(
            status,
            self._headers,
            version=parser.get_http_version(),
            keep_alive=parser.should_keep_alive(),
            content_length=None if no_body else self._content_length,
            chunked=self._te and not no_body,
            close_delimited=not no_body and not self._te and self._content_length is None,
        )
        self._head = head
        self._handler.on_response(head)
        if self._head_request:
            self.done = True
            self._handler.on_response_end()

    def on_body(self, body: bytes) -> None:
        self._handler.on_body(body)

    def on_message_complete(self) -> None:
        if self._informational:
            self._informational = False
            return
        if not self._head_request:
            self.done = True
            self._handler.on_response_end()
