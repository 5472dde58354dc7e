"""Every request the proxy must refuse, with the status RFC 9110/9112 gives it: framing a
front end and a back end could read two ways (the smuggling family), broken header lines,
Host rules, versions, transfer codings and size limits, including limits that must hold
while a head arrives one byte at a time. Nothing of a refused feed is delivered."""

from __future__ import annotations

import pytest
from tests.proxy.http1.support import Recorder, bytewise, pieces, refusal

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.reader import (
    MAX_HEAD_BYTES,
    MAX_HEADERS,
    MAX_TARGET_BYTES,
    RequestReader,
    transfer_chunked,
)

HEAD = b"POST /x HTTP/1.1\r\nHost: svc\r\n"
CHUNKED_HEAD = HEAD + b"Transfer-Encoding: chunked\r\n\r\n"


def get(*lines: bytes, start: bytes = b"GET /x HTTP/1.1") -> bytes:
    return start + b"\r\n" + b"".join(line + b"\r\n" for line in lines) + b"\r\n"


REFUSALS: dict[str, tuple[bytes, int]] = {
    # Body framing: two readings of one message.
    "content-length-with-transfer-encoding": (
        HEAD + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "transfer-encoding-with-content-length": (
        HEAD + b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
        400,
    ),
    "two-different-content-lengths": (
        HEAD + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        400,
    ),
    "duplicate-content-length": (HEAD + b"Content-Length: 3\r\nContent-Length: 3\r\n\r\nabc", 400),
    "content-length-list": (HEAD + b"Content-Length: 3, 3\r\n\r\nabc", 400),
    "non-numeric-content-length": (HEAD + b"Content-Length: abc\r\n\r\n", 400),
    "hex-content-length": (HEAD + b"Content-Length: 0x3\r\n\r\nabc", 400),
    "negative-content-length": (HEAD + b"Content-Length: -1\r\n\r\n", 400),
    "plus-content-length": (HEAD + b"Content-Length: +3\r\n\r\nabc", 400),
    "empty-content-length": (HEAD + b"Content-Length: \r\n\r\n", 400),
    "overflowing-content-length": (HEAD + b"Content-Length: 99999999999999999999999\r\n\r\n", 400),
    "bad-chunk-size": (CHUNKED_HEAD + b"zz\r\nhello\r\n0\r\n\r\n", 400),
    "chunk-size-with-space": (CHUNKED_HEAD + b"5 \r\nhello\r\n0\r\n\r\n", 400),
    "negative-chunk-size": (CHUNKED_HEAD + b"-5\r\nhello\r\n0\r\n\r\n", 400),
    "overflowing-chunk-size": (CHUNKED_HEAD + b"ffffffffffffffffffff\r\nx\r\n0\r\n\r\n", 400),
    "chunk-without-crlf": (CHUNKED_HEAD + b"5\r\nhelloX0\r\n\r\n", 400),
    "chunk-with-bare-lf": (CHUNKED_HEAD + b"5\nhello\n0\n\n", 400),
    "bad-chunk-extension": (CHUNKED_HEAD + b"5;\x01\r\nhello\r\n0\r\n\r\n", 400),
    "transfer-encoding-in-http-1.0": (
        get(b"Transfer-Encoding: chunked", start=b"POST /x HTTP/1.0") + b"0\r\n\r\n",
        400,
    ),
    "chunked-not-final": (HEAD + b"Transfer-Encoding: chunked, gzip\r\n\r\n", 400),
    "chunked-twice": (HEAD + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400),
    "chunked-twice-over-two-lines": (
        HEAD + b"Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "only-an-unknown-coding": (HEAD + b"Transfer-Encoding: gzip\r\n\r\nabc", 400),
    "obfuscated-chunked": (HEAD + b"Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", 400),
    "chunked-with-tab": (HEAD + b"Transfer-Encoding: chunked\t\r\n\r\n0\r\n\r\n", 400),
    "empty-transfer-encoding": (HEAD + b"Transfer-Encoding: \r\n\r\n", 400),
    "unknown-coding-before-chunked": (
        HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    "identity-before-chunked": (
        HEAD + b"Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        501,
    ),
    # Broken header lines.
    "header-without-colon": (get(b"Host: svc", b"X-Broken header"), 400),
    "space-before-colon": (get(b"Host: svc", b"X-Space : a"), 400),
    "space-before-colon-transfer-encoding": (
        get(b"Host: svc", b"Transfer-Encoding : chunked", start=b"POST /x HTTP/1.1") + b"0\r\n\r\n",
        400,
    ),
    "space-in-name": (get(b"Host: svc", b"X Y: a"), 400),
    "empty-name": (get(b"Host: svc", b": a"), 400),
    "obs-fold": (get(b"Host: svc", b"X-Folded: a", b" b"), 400),
    "obs-fold-tab": (get(b"Host: svc", b"X-Folded: a", b"\tb"), 400),
    "whitespace-before-first-header": (get(b" Host: svc"), 400),
    "bare-lf": (b"GET /x HTTP/1.1\nHost: svc\n\n", 400),
    "bare-lf-in-headers": (b"GET /x HTTP/1.1\r\nHost: svc\nX: y\r\n\r\n", 400),
    "bare-cr": (b"GET /x HTTP/1.1\r\nHost: svc\rX: y\r\n\r\n", 400),
    "nul-in-value": (get(b"Host: svc", b"X-Nul: a\x00b"), 400),
    "del-in-value": (get(b"Host: svc", b"X-Del: a\x7fb"), 400),
    "control-char-in-name": (get(b"Host: svc", b"X-\x01: a"), 400),
    # Host (RFC 9112 §3.2).
    "missing-host": (get(), 400),
    "missing-host-http-1.0": (get(start=b"GET /x HTTP/1.0"), 400),
    "empty-host": (get(b"Host:"), 400),
    "blank-host": (get(b"Host:  "), 400),
    "host-with-only-a-port": (get(b"Host: :9080"), 400),
    "empty-host-asterisk": (get(b"Host:", start=b"OPTIONS * HTTP/1.1"), 400),
    "empty-host-http-1.0": (get(b"Host:", start=b"GET /x HTTP/1.0"), 400),
    "connect-without-host": (get(b"Host: :443", start=b"CONNECT :443 HTTP/1.1"), 400),
    "two-hosts": (get(b"Host: svc", b"Host: other"), 400),
    "two-equal-hosts": (get(b"Host: svc", b"Host: svc"), 400),
    "host-with-path": (get(b"Host: svc/evil"), 400),
    "host-with-space": (get(b"Host: s vc"), 400),
    "host-with-bad-port": (get(b"Host: svc:80x"), 400),
    "host-with-userinfo": (get(b"Host: user@svc"), 400),
    # Request line and target.
    "relative-target": (get(b"Host: svc", start=b"GET x HTTP/1.1"), 400),
    "asterisk-for-get": (get(b"Host: svc", start=b"GET * HTTP/1.1"), 400),
    "fragment-in-target": (get(b"Host: svc", start=b"GET /x#frag HTTP/1.1"), 400),
    "fragment-in-absolute-target": (get(b"Host: svc", start=b"GET http://svc/x#f HTTP/1.1"), 400),
    "other-scheme": (get(b"Host: svc", start=b"GET ftp://svc/x HTTP/1.1"), 400),
    "userinfo-in-absolute-target": (get(b"Host: svc", start=b"GET http://u:p@svc/ HTTP/1.1"), 400),
    "empty-port-in-absolute-target": (get(b"Host: svc", start=b"GET http://svc:/ HTTP/1.1"), 400),
    "big-port-in-absolute-target": (
        get(b"Host: svc", start=b"GET http://svc:99999/ HTTP/1.1"),
        400,
    ),
    "no-host-in-absolute-target": (get(b"Host: svc", start=b"GET http:///x HTTP/1.1"), 400),
    "connect-without-port": (get(b"Host: svc", start=b"CONNECT svc HTTP/1.1"), 400),
    "connect-with-path": (get(b"Host: svc", start=b"CONNECT /x HTTP/1.1"), 400),
    "space-in-target": (get(b"Host: svc", start=b"GET /a b HTTP/1.1"), 400),
    "control-char-in-target": (get(b"Host: svc", start=b"GET /a\x01b HTTP/1.1"), 400),
    "unknown-method": (get(b"Host: svc", start=b"BREW /pot HTTP/1.1"), 400),
    "lower-case-method": (get(b"Host: svc", start=b"get /x HTTP/1.1"), 400),
    "lower-case-version": (get(b"Host: svc", start=b"GET /x http/1.1"), 400),
    "rtsp-describe": (get(b"Host: svc", start=b"DESCRIBE /x RTSP/1.0"), 400),
    "rtsp-play-as-1.1": (get(b"Host: svc", start=b"PLAY /x RTSP/1.1"), 400),
    "rtsp-put": (get(b"Host: svc", start=b"PUT /x RTSP/1.0"), 400),
    "ice-get": (get(b"Host: svc", start=b"GET /x ICE/1.0"), 400),
    "version-without-minor": (get(b"Host: svc", start=b"GET /x HTTP/1"), 400),
    "version-with-two-digit-minor": (get(b"Host: svc", start=b"GET /x HTTP/1.10"), 400),
    "version-with-two-digit-major": (get(b"Host: svc", start=b"GET /x HTTP/11.1"), 400),
    "version-not-digits": (get(b"Host: svc", start=b"GET /x HTTP/1.x"), 400),
    "garbage": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 400),
    # Versions we do not speak.
    "http-2.0": (get(b"Host: svc", start=b"GET /x HTTP/2.0"), 505),
    "http-3.0": (get(b"Host: svc", start=b"GET /x HTTP/3.0"), 505),
    "http-9.9": (get(b"Host: svc", start=b"GET /x HTTP/9.9"), 505),
    "http-0.0": (get(b"Host: svc", start=b"GET /x HTTP/0.0"), 505),
    "http-0.9-with-headers": (get(b"Host: svc", start=b"GET /x HTTP/0.9"), 505),
    "http-2-preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
    "http-0.9-no-version": (b"GET /x\r\n\r\n", 505),
    "no-version-with-headers": (b"GET /x\r\nHost: svc\r\n\r\n", 505),
    # Sizes.
    "too-many-headers": (get(b"Host: svc", *(b"X-H%d: v" % i for i in range(MAX_HEADERS))), 431),
    "oversized-header": (get(b"Host: svc", b"X-Big: " + b"a" * MAX_HEAD_BYTES), 431),
    "oversized-header-section": (
        get(b"Host: svc", *(b"X-H%d: " % i + b"a" * 1000 for i in range(62))),
        431,
    ),
    "target-too-long": (
        get(b"Host: svc", start=b"GET /" + b"a" * MAX_TARGET_BYTES + b" HTTP/1.1"),
        414,
    ),
    "absolute-target-too-long": (
        get(b"Host: svc", start=b"GET http://svc/" + b"a" * MAX_TARGET_BYTES + b" HTTP/1.1"),
        414,
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSALS))
def test_refused_with_its_status_and_nothing_delivered(name: str) -> None:
    data, status = REFUSALS[name]
    error, rec = refusal(data)
    assert error.status == status, error
    assert rec.events == []


@pytest.mark.parametrize("name", sorted(n for n, (d, _) in REFUSALS.items() if len(d) < 4096))
def test_refused_with_the_same_status_one_byte_at_a_time(name: str) -> None:
    data, status = REFUSALS[name]
    error, _ = refusal(bytewise(data))
    assert error.status == status, error


def test_an_oversized_head_is_refused_one_byte_at_a_time_before_it_grows_further() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    reader.feed(b"GET /x HTTP/1.1\r\nHost: svc\r\nX-Big: ")
    fed = 0
    with pytest.raises(ProtocolError) as caught:
        for _ in range(2 * MAX_HEAD_BYTES):
            reader.feed(b"a")
            fed += 1
    assert caught.value.status == 431
    assert fed <= MAX_HEAD_BYTES
    assert rec.events == []


def test_many_small_headers_one_byte_at_a_time_hit_the_size_limit() -> None:
    data = get(b"Host: svc", *(b"X-H%d: " % i + b"a" * 2000 for i in range(40)))
    error, _ = refusal(pieces(data, range(0, len(data), 3)))
    assert error.status == 431


def test_a_head_just_under_the_limit_passes_and_one_just_over_does_not() -> None:
    start = b"GET /x HTTP/1.1\r\nHost: svc\r\nX-Big: "
    fill = MAX_HEAD_BYTES - 200
    ok = start + b"a" * fill + b"\r\n\r\n"
    rec = Recorder()
    RequestReader(rec).feed(ok)
    assert len(rec.messages) == 1
    error, _ = refusal(start + b"a" * (MAX_HEAD_BYTES + 10) + b"\r\n\r\n")
    assert error.status == 431


def test_a_head_behind_a_big_body_in_the_same_feed_is_not_counted_with_it() -> None:
    # Pipelining: 200 KiB of body, then the first bytes of the next head, in one read.
    body = b"b" * (200 * 1024)
    first = b"POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: %d\r\n\r\n" % len(body) + body
    rec = Recorder()
    reader = RequestReader(rec)
    reader.feed(first + b"GET /b HTTP/1.1\r\nHost: s")
    reader.feed(b"vc\r\n\r\n")
    assert [m.request.path for m in rec.messages] == ["/a", "/b"]


def test_endless_trailers_are_refused() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    reader.feed(CHUNKED_HEAD + b"3\r\nabc\r\n0\r\nX-Trailer: ")
    with pytest.raises(ProtocolError) as caught:
        for _ in range(4 * MAX_HEAD_BYTES // 1024):
            reader.feed(b"a" * 1024)
    assert caught.value.status == 431


def test_too_many_trailers_are_refused() -> None:
    trailers = b"".join(b"T%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    error, _ = refusal(CHUNKED_HEAD + b"0\r\n" + trailers + b"\r\n")
    assert error.status == 431


def test_an_endless_chunk_extension_is_refused() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    reader.feed(CHUNKED_HEAD + b"3;ext=")
    with pytest.raises(ProtocolError) as caught:
        for _ in range(4 * MAX_HEAD_BYTES // 1024):
            reader.feed(b"a" * 1024)
    assert caught.value.status == 400


def test_a_long_chunked_body_in_small_chunks_is_fine() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    reader.feed(CHUNKED_HEAD)
    for _ in range(2000):
        reader.feed(b"40;e=1\r\n" + b"x" * 64 + b"\r\n")
    reader.feed(b"0\r\n\r\n")
    (m,) = rec.messages
    assert m.complete and len(m.body) == 2000 * 64


@pytest.mark.parametrize(
    ("value", "outcome"),
    [
        (b"chunked", True),
        (b"Chunked", True),
        (b" chunked ", True),
        (b",chunked", True),
        (b"gzip, chunked", 501),
        (b"gzip,deflate,chunked", 501),
        (b"identity,chunked", 501),
        (b"chunked, gzip", 400),
        (b"chunked,chunked", 400),
        (b"gzip", 400),
        (b"identity", 400),
        (b"", 400),
        (b",", 400),
    ],
)
def test_transfer_coding_rules(value: bytes, outcome: bool | int) -> None:
    if outcome is True:
        assert transfer_chunked(value) is True
    else:
        with pytest.raises(ProtocolError) as caught:
            transfer_chunked(value)
        assert caught.value.status == outcome


def test_a_refused_reader_stays_refused() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    with pytest.raises(ProtocolError):
        reader.feed(b"GET /x HTTP/1.1\r\nBroken\r\n\r\n")
    with pytest.raises(ProtocolError):
        reader.feed(b"GET /y HTTP/1.1\r\nHost: s\r\n\r\n")
    assert rec.events == []
