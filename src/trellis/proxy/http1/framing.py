"""Re-framing for a proxy: what an HTTP/1 message read on one side becomes on the other.

Owns the rules of RFC 9112 a proxy applies between its reader and its writer:
- the request head sent upstream: `Host` first, the end-to-end fields (hop-by-hop
  and the sidecars' own headers dropped), an upgrade re-stated (hop-by-hop, RFC 9110
  §7.8), the body's framing as it was read (`Content-Length` or chunked);
- the response head sent downstream: passed on as it came when it can be (`head.raw`:
  nothing hop-by-hop, length-framed, HTTP/1.1, nothing to rewrite — the usual case,
  our fields added before its blank line), else rebuilt: a body of unknown length
  is chunked towards an HTTP/1.1 client and close-delimited towards an HTTP/1.0 one,
  and a transfer coding an HTTP/1.0 client cannot be sent is refused (§6.1);
- body pieces framed for the chosen framing (`frame`);
- a peer sidecar's answer to our CONNECT (`read_connect_answer`), parsed here so it is
  fuzzed with the other readers.

Pure bytes in, bytes out: no sockets, routing or policy (the stack passes what a route
changes as a function).
"""

from __future__ import annotations

import re
from collections.abc import Callable

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.head import HOP_BY_HOP, Headers, RequestHead, ResponseHead, end_to_end
from trellis.proxy.http1.writer import CRLF, LAST_CHUNK, chunk, request_head, response_head
from trellis.wire import FLAGS_HEADER, PEER_HEADER, TARGET_PORT_HEADER

# What never goes upstream as it came: hop-by-hop fields, the Host (re-stated first),
# Expect (answered here), and the sidecars' own headers.
DROP_UPSTREAM = HOP_BY_HOP | {b"host", b"expect", TARGET_PORT_HEADER, PEER_HEADER}
MAX_CONNECT_ANSWER = 16 * 1024
_NOT_A_FLAG = re.compile(r"[^A-Z,]")  # what is not a response flag in a peer's answer


def upstream_request_head(
    head: RequestHead, path: str, authority: str, fields: Headers, added: Headers
) -> bytes:
    """The request head for the upstream: `fields` are the end-to-end ones to send (after
    the route's changes), `added` the proxy's own; the Host, the upgrade and the body's
    framing are added here."""
    fields.insert(0, (b"host", authority.encode("latin-1")))
    if head.upgrade:  # hop-by-hop, so re-stated for the next hop (RFC 9110 §7.8)
        fields += [(b"connection", b"upgrade"), (b"upgrade", head.upgrade)]
    fields.extend(added)
    if head.content_length is not None:
        fields.append((b"content-length", b"%d" % head.content_length))
    elif head.chunked:
        fields.append((b"transfer-encoding", b"chunked"))
    return request_head(head.method.encode("ascii"), path.encode("latin-1"), fields)


def with_fields(head: bytes, block: bytes) -> bytes:
    """A serialized head with more fields (`block`: complete `name: value\\r\\n` lines)
    added before its blank line."""
    return head[:-2] + block + CRLF if block else head


def frame(data: bytes, chunked: bool) -> bytes:
    """A body piece as it goes out: a chunk, or as it is."""
    return chunk(data) if chunked else data


def body_end(chunked: bool) -> bytes:
    return LAST_CHUNK if chunked else b""


def coding_unsendable(response: ResponseHead, request: RequestHead) -> bool:
    """RFC 9112 §6.1: no Transfer-Encoding to an HTTP/1.0 client, and without it the coded
    body could not be read: such a response cannot be relayed."""
    return bool(response.codings) and request.version != "1.1"


class DownstreamHead:
    """The response head for the client, and the framing of the body that follows."""

    __slots__ = ("chunked", "data", "keep_alive")

    def __init__(self, data: bytes, chunked: bool, keep_alive: bool) -> None:
        self.data = data
        self.chunked = chunked  # the body is re-framed as chunks (`frame`)
        self.keep_alive = keep_alive  # False: the connection closes after this response


def passes_through(response: ResponseHead) -> bool:
    """The usual response: nothing hop-by-hop, length-framed, HTTP/1.1 — its head can go on
    as it came (`raw_head`), when nothing rewrites its fields."""
    return (
        response.plain
        and not response.chunked
        and not response.close_delimited
        and response.version == "1.1"
    )


def raw_head(response: ResponseHead, flags: list[str], keep_alive: bool) -> bytes:
    """A response head that passes through, with our fields (if any) before its blank
    line: the flags, and `connection: close` when the connection will not be kept."""
    raw = response.raw
    if flags or not keep_alive:
        extra = b""
        if flags:
            extra = FLAGS_HEADER + b": " + ",".join(flags).encode("ascii") + CRLF
        if not keep_alive:
            extra += b"connection: close\r\n"
        raw = raw[:-2] + extra + CRLF
    return raw


def downstream_response_head(
    response: ResponseHead,
    request: RequestHead,
    flags: list[str],
    keep_alive: bool,
    mutate: Callable[[Headers], Headers] | None,
) -> DownstreamHead:
    """The head to send the client for `response` (to `request`), with the proxy's flags
    and `connection: close` when the connection will not be kept; `mutate` rewrites the
    fields (a route's response header changes) and forbids the pass-through."""
    if mutate is None and passes_through(response):
        return DownstreamHead(raw_head(response, flags, keep_alive), False, keep_alive)
    fields = end_to_end(response.headers)
    if mutate is not None:
        fields = mutate(fields)
    chunked = False
    if request.method == "HEAD":
        fields.extend((n, v) for n, v in response.headers if n.lower() == b"content-length")
    elif response.content_length is not None:
        fields.append((b"content-length", b"%d" % response.content_length))
    elif response.chunked or response.close_delimited:
        if request.version == "1.1":
            chunked = True
            codings = response.codings
            fields.append((b"transfer-encoding", codings + b", chunked" if codings else b"chunked"))
        else:
            keep_alive = False  # close-delimited: the end of the body is the end of the line
    if flags:
        fields.append((FLAGS_HEADER, ",".join(flags).encode("ascii")))
    if not keep_alive:
        fields.append((b"connection", b"close"))
    return DownstreamHead(
        response_head(response.status, fields, response.reason), chunked, keep_alive
    )


def switching_protocols_head(response: ResponseHead, protocol: bytes) -> bytes:
    """The 101 for the client: the upstream's end-to-end fields, the upgrade re-stated."""
    fields = end_to_end(response.headers)
    fields += [(b"connection", b"upgrade"), (b"upgrade", protocol)]
    return response_head(101, fields, response.reason)


def upgrade_protocol(response: ResponseHead) -> bytes:
    """The protocol a 101 switches to (its `Upgrade` field, the last one), or b""."""
    protocol = b""
    for name, value in response.headers:
        if name.lower() == b"upgrade":
            protocol = value
    return protocol


class ConnectAnswer:
    """A peer sidecar's answer to our CONNECT: its status, its response flags (letters and
    commas only, at most 32), the status line (for a log), and the tunnel bytes that came
    after the head."""

    __slots__ = ("flags", "rest", "status", "status_line")

    def __init__(self, status: int, flags: str, status_line: str, rest: bytes) -> None:
        self.status = status
        self.flags = flags
        self.status_line = status_line
        self.rest = rest

    @property
    def established(self) -> bool:
        return 200 <= self.status < 300


def read_connect_answer(data: bytes) -> ConnectAnswer | None:
    """The answer in `data` (what arrived so far), or None until its head is complete.
    Raises ProtocolError (502) when it is too long to be one or its status line is not
    HTTP's."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        if len(data) > MAX_CONNECT_ANSWER:
            raise ProtocolError(502, "answer too long")
        return None
    if end > MAX_CONNECT_ANSWER:
        raise ProtocolError(502, "answer too long")
    head = data[:end]
    lines = head.split(b"\r\n")
    status_line = lines[0]
    parts = status_line.split(b" ", 2)
    code = parts[1] if len(parts) > 1 else b""
    if not parts[0].startswith(b"HTTP/1.") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(502, "not an HTTP answer: " + _text(status_line[:100]))
    flags = b""
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep and name.strip().lower() == FLAGS_HEADER:
            flags = value.strip()
    clean = _NOT_A_FLAG.sub("", _text(flags))[:32]
    return ConnectAnswer(int(code), clean, _text(status_line), data[end + 4 :])


def _text(data: bytes) -> str:
    return data.decode("latin-1")
