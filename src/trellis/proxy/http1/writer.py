"""Bytes for the wire: request and response heads, chunked framing, local responses.

The proxy chooses the framing of what it forwards (RFC 9112 §6): a body of
known length keeps `Content-Length`; otherwise it is chunked towards an
HTTP/1.1 peer and close-delimited towards an HTTP/1.0 client.

Must not know about sockets or routing.
"""

from __future__ import annotations

from http import HTTPStatus

from trellis.proxy.http1.head import Headers

CRLF = b"\r\n"
LAST_CHUNK = b"0\r\n\r\n"
CONTINUE_100 = b"HTTP/1.1 100 Continue\r\n\r\n"

_REASONS = {s.value: s.phrase.encode("ascii") for s in HTTPStatus}


def reason_phrase(status: int) -> bytes:
    return _REASONS.get(status, b"Unknown")


def _fields(headers: Headers) -> bytes:
    # One join over the pieces: no intermediate bytes object per field.
    parts: list[bytes] = []
    for n, v in headers:
        parts.append(n)
        parts.append(b": ")
        parts.append(v)
        parts.append(CRLF)
    return b"".join(parts)


def request_head(method: bytes, target: bytes, headers: Headers) -> bytes:
    return b"%s %s HTTP/1.1\r\n%s\r\n" % (method, target, _fields(headers))


def response_head(status: int, headers: Headers, reason: bytes = b"") -> bytes:
    return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status, reason or reason_phrase(status), _fields(headers))


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def local_response(
    status: int,
    body: bytes,
    *,
    flags: str = "",
    close: bool = False,
    extra: Headers | None = None,
    head_only: bool = False,
) -> bytes:
    """A complete response made by the proxy itself (errors, redirects, admin pages)."""
    headers: Headers = [(b"content-type", b"text/plain; charset=utf-8")]
    headers.append((b"content-length", b"%d" % len(body)))
    if flags:
        headers.append((b"x-trellis-flags", flags.encode("ascii")))
    if extra:
        headers.extend(extra)
    if close:
        headers.append((b"connection", b"close"))
    head = response_head(status, headers)
    return head if head_only else head + body
