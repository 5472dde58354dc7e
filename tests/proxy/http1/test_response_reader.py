"""ResponseReader: how an upstream response's body is framed (Content-Length, chunked,
close-delimited, none for HEAD, 204 and 304), interim responses, and what makes an upstream
broken (ProtocolError 502). A pooled connection reads response after response with one
reader, so each test checks the next response still parses."""

from __future__ import annotations

import httptools
import pytest
from tests.proxy.http1.support import Recorder, bytewise, read_responses

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.reader import MAX_HEAD_BYTES, MAX_HEADERS, ResponseReader

NEXT = b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nnext"


def statuses_and_bodies(exchanges: list[tuple[bool, list[bytes]]]) -> list[tuple[int, bytes]]:
    rec, _ = read_responses(exchanges)
    messages = rec.messages
    assert all(m.complete for m in messages), rec.events
    return [(m.response.status, m.body) for m in messages]


def test_content_length() -> None:
    rec, reader = read_responses([(False, [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"])])
    (m,) = rec.messages
    head = m.response
    assert (head.status, head.content_length, head.chunked, head.close_delimited) == (
        200,
        5,
        False,
        False,
    )
    assert m.body == b"hello" and m.complete and reader.done and head.keep_alive


def test_chunked_with_trailers_that_stay_out_of_the_head() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Digest: abc\r\n\r\n"
    )
    rec, _ = read_responses([(False, [data])])
    (m,) = rec.messages
    assert m.response.chunked and m.body == b"hello world" and m.complete
    assert [n for n, _ in m.response.headers] == [b"Transfer-Encoding"]


def test_chunked_split_at_every_byte() -> None:
    data = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert statuses_and_bodies([(False, bytewise(data))]) == [(200, b"hello")]


@pytest.mark.parametrize("version", [b"HTTP/1.1", b"HTTP/1.0"])
def test_close_delimited_body_ends_with_eof(version: bytes) -> None:
    rec, reader = read_responses([(False, [version + b" 200 OK\r\n\r\nabc", b"def"])])
    (m,) = rec.messages
    assert m.response.close_delimited and not m.response.keep_alive
    assert not m.complete and not reader.done
    assert reader.eof() is True
    assert rec.messages[0].complete and rec.messages[0].body == b"abcdef"
    assert reader.eof() is False  # once


def test_a_transfer_coding_other_than_chunked_is_close_delimited() -> None:
    # RFC 9112 §6.3: chunked not final in a response -> read until the connection closes.
    rec, reader = read_responses(
        [(False, [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxyz"])]
    )
    (m,) = rec.messages
    assert m.response.close_delimited and not m.response.chunked
    assert m.response.codings == b"gzip"
    assert reader.eof() is True and rec.messages[0].body == b"xyz"


@pytest.mark.parametrize(
    ("te", "codings"),
    [
        (b"chunked", b""),
        (b"gzip, chunked", b"gzip"),
        (b"GZIP ,  Deflate,chunked", b"gzip, deflate"),
        (b"gzip", b"gzip"),
    ],
)
def test_transfer_codings_besides_chunked_are_kept(te: bytes, codings: bytes) -> None:
    # The body stays coded with them: the proxy must pass them on, not drop them.
    chunked = te.lower().endswith(b"chunked")
    body = b"3\r\nxyz\r\n0\r\n\r\n" if chunked else b"xyz"
    rec, reader = read_responses(
        [(False, [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + te + b"\r\n\r\n" + body])]
    )
    (m,) = rec.messages
    assert m.response.codings == codings
    assert m.response.chunked is chunked
    if not chunked:
        reader.eof()
    assert rec.messages[0].body == b"xyz"


def test_eof_in_the_middle_of_a_content_length_body_is_not_an_end() -> None:
    rec, reader = read_responses([(False, [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab"])])
    assert reader.eof() is False
    assert not rec.messages[0].complete


@pytest.mark.parametrize(
    "framing",
    [b"Content-Length: 10", b"Transfer-Encoding: chunked", b"Content-Length: 0", b""],
)
def test_a_head_response_has_no_body_and_the_next_response_parses(framing: bytes) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + (framing + b"\r\n" if framing else b"") + b"\r\n"
    rec, reader = read_responses([(True, [head]), (False, [NEXT])])
    first, second = rec.messages
    assert first.complete and first.body == b""
    assert first.response.content_length is None and not first.response.chunked
    assert not first.response.close_delimited
    assert (second.response.status, second.body, second.complete) == (201, b"next", True)
    assert reader.done


def test_head_then_head_then_get() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    assert statuses_and_bodies([(True, [head]), (True, [head]), (False, [NEXT])]) == [
        (200, b""),
        (200, b""),
        (201, b"next"),
    ]


@pytest.mark.parametrize("status", [204, 304])
def test_no_body_statuses_ignore_their_framing_headers(status: int) -> None:
    head = b"HTTP/1.1 %d X\r\nContent-Length: 7\r\n\r\n" % status
    rec, _ = read_responses([(False, [head]), (False, [NEXT])])
    first, second = rec.messages
    assert first.response.status == status and first.body == b"" and first.complete
    assert first.response.content_length is None
    assert (second.response.status, second.body) == (201, b"next")


def test_interim_responses_are_skipped() -> None:
    data = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    )
    assert statuses_and_bodies([(False, [data])]) == [(200, b"ok")]
    assert statuses_and_bodies([(False, bytewise(data))]) == [(200, b"ok")]


def test_many_responses_on_one_reader() -> None:
    one = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\ny\r\n0\r\n\r\n"
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n"
    exchanges = [
        (i % 3 == 2, [head if i % 3 == 2 else one if i % 2 else chunked]) for i in range(9)
    ]
    result = statuses_and_bodies(exchanges)
    assert [body for _, body in result] == [
        b"" if i % 3 == 2 else (b"x" if i % 2 else b"y") for i in range(9)
    ]


def test_a_body_after_a_head_response_is_a_502() -> None:
    with pytest.raises(ProtocolError) as caught:
        read_responses([(True, [b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"])])
    assert caught.value.status == 502


BROKEN: dict[str, bytes] = {
    "switching-protocols": b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: ws\r\n"
    b"Connection: upgrade\r\n\r\n",
    "bare-101": b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
    "not-http": b"SSH-2.0-OpenSSH_9.6\r\n",
    "bad-status": b"HTTP/1.1 2x0 OK\r\n\r\n",
    "status-below-100": b"HTTP/1.1 099 Odd\r\nContent-Length: 0\r\n\r\n",
    "status-above-599": b"HTTP/1.1 999 Odd\r\nContent-Length: 0\r\n\r\n",
    "four-digit-status": b"HTTP/1.1 1000 Odd\r\nContent-Length: 0\r\n\r\n",
    "http-2.0": b"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
    "content-length-and-chunked": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "two-content-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "bad-content-length": b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
    "bad-chunk-size": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "header-without-colon": b"HTTP/1.1 200 OK\r\nBroken\r\n\r\n",
    "obs-fold": b"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
    "nul-in-value": b"HTTP/1.1 200 OK\r\nX: a\x00\r\nContent-Length: 0\r\n\r\n",
    "too-many-headers": b"HTTP/1.1 200 OK\r\n"
    + b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
    + b"\r\n",
    "unsolicited-response": b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nx"
    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_response_is_a_502(name: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        read_responses([(False, [BROKEN[name]])])
    assert caught.value.status == 502


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_a_broken_response_is_a_502_one_byte_at_a_time(name: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        read_responses([(False, bytewise(BROKEN[name]))])
    assert caught.value.status == 502


def test_an_oversized_response_head_is_a_502_while_it_arrives() -> None:
    chunks = [b"HTTP/1.1 200 OK\r\nX-Big: "] + [b"a" * 1024] * (MAX_HEAD_BYTES // 1024 + 2)
    with pytest.raises(ProtocolError) as caught:
        read_responses([(False, chunks)])
    assert caught.value.status == 502


def test_trailer_fields_are_bounded_by_bytes_not_count_and_dropped() -> None:
    # No per-field callbacks on responses: trailers (dropped over HTTP/1.1) are bounded
    # by the bytes they take, as a head is, whatever their number.
    data = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n"
        + b"".join(b"T-%d: v\r\n" % i for i in range(MAX_HEADERS + 1))
        + b"\r\n"
    )
    assert statuses_and_bodies([(False, [data]), (False, [NEXT])]) == [(200, b"x"), (201, b"next")]


def test_the_head_is_kept_as_it_came() -> None:
    head = b"HTTP/1.1 404 Not Here\r\nContent-Length: 2\r\nX-A:  spaced \t\r\nx-b:v\r\n\r\n"
    for chunks in ([head + b"no"], bytewise(head + b"no")):
        rec, _ = read_responses([(False, chunks)])
        (m,) = rec.messages
        r = m.response
        assert (r.raw, r.reason, r.plain, r.content_length) == (head, b"Not Here", True, 2)
        assert r.headers == [(b"Content-Length", b"2"), (b"X-A", b"spaced"), (b"x-b", b"v")]
        assert m.body == b"no" and m.complete


@pytest.mark.parametrize(
    "field",
    [
        b"Connection: close",
        b"keep-alive: timeout=5",
        b"TE: trailers",
        b"Trailer: X",
        b"Upgrade: h2c",
    ],
)
def test_a_head_with_a_hop_by_hop_field_is_not_plain(field: bytes) -> None:
    rec, _ = read_responses(
        [(False, [b"HTTP/1.1 200 OK\r\n%s\r\nContent-Length: 0\r\n\r\n" % field])]
    )
    (m,) = rec.messages
    assert not m.response.plain and m.response.content_length == 0 and m.complete


def test_a_final_response_in_the_same_read_as_an_interim_one() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + NEXT
    for chunks in ([data], bytewise(data)):
        rec, _ = read_responses([(False, chunks)])
        (m,) = rec.messages
        assert m.response.raw == NEXT[: NEXT.index(b"\r\n\r\n") + 4]
        assert (m.response.status, m.body) == (201, b"next")


NEXT_HEAD = NEXT[: NEXT.index(b"\r\n\r\n") + 4]


@pytest.mark.parametrize("blank", [b"\r\n", b"\r\n\r\n", b"\r\r\n\r\n", b"\n\r\n\r\n\n"])
def test_empty_lines_before_a_response_are_not_part_of_its_head(blank: bytes) -> None:
    interim = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"
    for data in (blank + NEXT, blank + interim + blank + NEXT):
        for chunks in ([data], bytewise(data), [blank, data[len(blank) :]]):
            rec, _ = read_responses([(False, chunks)])
            (m,) = rec.messages
            assert (m.response.raw, m.response.status, m.body) == (NEXT_HEAD, 201, b"next")
    rec, _ = read_responses([(False, [blank + b"HTTP/1.1 204 No Content\r\n\r\n"])])
    assert rec.messages[0].response.raw == b"HTTP/1.1 204 No Content\r\n\r\n"


def test_a_204_with_a_content_length_is_not_forwarded_as_it_came() -> None:
    # RFC 9110 §8.6: a 204 has no Content-Length; the rebuilt head leaves it out.
    rec, _ = read_responses([(False, [b"HTTP/1.1 204 X\r\nContent-Length: 5\r\n\r\n"])])
    (m,) = rec.messages
    assert not m.response.plain and m.response.content_length is None and m.complete
    rec, _ = read_responses([(False, [b"HTTP/1.1 304 X\r\nContent-Length: 5\r\n\r\n"])])
    assert rec.messages[0].response.plain  # a 304's Content-Length describes the resource


def test_endless_response_trailers_are_a_502() -> None:
    chunks = [b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: "]
    chunks += [b"a" * 1024] * (2 * MAX_HEAD_BYTES // 1024)
    with pytest.raises(ProtocolError) as caught:
        read_responses([(False, chunks)])
    assert caught.value.status == 502


SWITCH = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"


def test_a_101_to_an_upgrade_ends_http_and_hands_over_what_follows() -> None:
    rec = Recorder()
    reader = ResponseReader(rec)
    reader.expect(False, upgrade=True)
    assert reader.feed(SWITCH + b"\x81\x02hi") == b"\x81\x02hi"
    (m,) = rec.messages
    assert m.response.status == 101 and reader.switched and reader.done
    assert not m.complete  # no end of response: the exchange would finish, not splice
    assert (b"Upgrade", b"websocket") in m.response.headers


def test_a_101_without_connection_upgrade_is_a_502_even_when_asked() -> None:
    reader = ResponseReader(Recorder())
    reader.expect(False, upgrade=True)
    with pytest.raises(ProtocolError) as caught:
        reader.feed(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n")
    assert caught.value.status == 502


def test_an_upgrade_the_upstream_declines_is_an_ordinary_response() -> None:
    rec = Recorder()
    reader = ResponseReader(rec)
    reader.expect(False, upgrade=True)
    assert reader.feed(b"HTTP/1.1 426 Upgrade Required\r\nContent-Length: 2\r\n\r\nno") is None
    (m,) = rec.messages
    assert (m.response.status, m.body, m.complete) == (426, b"no", True)
    assert not reader.switched


class _Llhttp:
    """What httptools itself reports for a response head (the reader reads some of it from
    the status line instead of asking)."""

    def __init__(self) -> None:
        self.answer: tuple[int, str, bool] | None = None
        self.parser = httptools.HttpResponseParser(self)

    def on_headers_complete(self) -> None:
        p = self.parser
        self.answer = (p.get_status_code(), p.get_http_version(), p.should_keep_alive())


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 200\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 404 \r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.1 599 Custom reason\r\ncontent-length: 0\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n",
        b"HTTP/1.1 204 No Content\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n",
    ],
)
def test_status_version_and_keep_alive_are_llhttps(head: bytes) -> None:
    llhttp = _Llhttp()
    llhttp.parser.feed_data(head)
    assert llhttp.answer is not None
    rec, _ = read_responses([(False, [head])])
    response = rec.messages[0].response
    assert (response.status, response.version, response.keep_alive) == llhttp.answer
