"""RequestReader bodies and message boundaries: Content-Length and chunked bodies (with
extensions and trailers), the same messages whatever the cuts between feeds, pipelining,
and what a failing feed delivers (nothing)."""

from __future__ import annotations

import pytest
from tests.proxy.http1.support import (
    Message,
    Recorder,
    bytewise,
    pieces,
    refusal,
    request_messages,
)

from trellis.proxy.http1.reader import RequestReader

POST_CL = b"POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 11\r\n\r\nhello world"
POST_CHUNKED = (
    b"POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n"
    b'5;name=value;quoted="a b"\r\nhello\r\n'
    b"1\r\n \r\n"
    b"A;x\r\nworld, and\r\n"
    b"0\r\nX-Checksum: abc\r\nX-Other: 1\r\n\r\n"
)
GET = b"GET /next?q=1 HTTP/1.1\r\nHost: svc\r\n\r\n"


def summary(messages: list[Message]) -> list[tuple[str, str, bytes, bool]]:
    return [(m.request.method, m.request.path, m.body, m.complete) for m in messages]


def test_content_length_body() -> None:
    (m,) = request_messages(POST_CL)
    assert m.complete and m.body == b"hello world"
    assert m.request.content_length == 11 and not m.request.chunked


def test_chunked_body_with_extensions_is_de_chunked() -> None:
    (m,) = request_messages(POST_CHUNKED)
    assert m.complete and m.body == b"hello world, and"
    assert m.request.chunked and m.request.content_length is None


def test_trailers_are_read_and_never_become_headers() -> None:
    (m,) = request_messages(POST_CHUNKED)
    names = [n.lower() for n, _ in m.request.headers]
    assert names == [b"host", b"transfer-encoding"]


def test_a_smuggled_host_in_trailers_changes_nothing() -> None:
    data = (
        b"POST /x HTTP/1.1\r\nHost: good\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\nHost: evil\r\nX-Trellis-Peer: spoofed\r\n\r\n" + GET
    )
    first, second = request_messages(data)
    assert first.request.authority == "good"
    assert first.request.header_map() == {"host": "good", "transfer-encoding": "chunked"}
    assert second.request.path == "/next?q=1"


def test_a_content_length_in_trailers_is_refused() -> None:
    data = b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n"
    error, rec = refusal(data + b"Content-Length: 5\r\n\r\nhello")
    assert error.status == 400 and rec.events == []


def test_zero_length_and_no_body() -> None:
    data = b"POST /a HTTP/1.1\r\nHost: s\r\nContent-Length: 0\r\n\r\n" + GET
    assert summary(request_messages(data)) == [
        ("POST", "/a", b"", True),
        ("GET", "/next?q=1", b"", True),
    ]


def test_a_get_may_carry_a_body() -> None:
    (m,) = request_messages(b"GET /g HTTP/1.1\r\nHost: s\r\nContent-Length: 2\r\n\r\nhi")
    assert m.body == b"hi" and m.request.has_body


@pytest.mark.parametrize("data", [POST_CL, POST_CHUNKED, POST_CL + GET + POST_CHUNKED])
def test_every_cut_into_two_feeds_gives_the_same_messages(data: bytes) -> None:
    whole = summary(request_messages(data))
    for cut in range(len(data) + 1):
        assert summary(request_messages([data[:cut], data[cut:]])) == whole, cut


@pytest.mark.parametrize("data", [POST_CL, POST_CHUNKED, POST_CL + GET + POST_CHUNKED])
def test_one_byte_at_a_time_gives_the_same_messages(data: bytes) -> None:
    assert summary(request_messages(bytewise(data))) == summary(request_messages(data))


def test_every_pair_of_cuts_in_a_chunked_body() -> None:
    data = POST_CHUNKED
    whole = summary(request_messages(data))
    start = data.index(b"\r\n\r\n")  # the head is covered above; cut the framing twice
    for a in range(start, len(data)):
        for b in range(a, len(data), 7):
            assert summary(request_messages(pieces(data, (a, b)))) == whole, (a, b)


def test_body_pieces_stream_before_the_message_ends() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    reader.feed(POST_CL[:-6])
    assert [kind for kind, _ in rec.events] == ["head", "body"]
    assert rec.events[1][1] == b"hello"
    reader.feed(POST_CL[-6:])
    assert [kind for kind, _ in rec.events] == ["head", "body", "body", "end"]


def test_pipelined_requests_in_one_feed_come_out_in_order() -> None:
    data = GET + POST_CL + POST_CHUNKED + GET.replace(b"/next", b"/last")
    assert summary(request_messages(data)) == [
        ("GET", "/next?q=1", b"", True),
        ("POST", "/up", b"hello world", True),
        ("POST", "/up", b"hello world, and", True),
        ("GET", "/last?q=1", b"", True),
    ]


def test_empty_lines_between_requests_are_skipped() -> None:
    assert len(request_messages(b"\r\n" + GET + b"\r\n" + GET)) == 2


def test_a_feed_that_fails_delivers_nothing_of_itself() -> None:
    # A valid head, then a bad chunk size in the same feed: the head is not delivered, so a
    # proxy forwards nothing of it.
    bad = b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
    error, rec = refusal(bad)
    assert error.status == 400 and rec.events == []
    # Nor a valid request pipelined in front of a broken one.
    error, rec = refusal(GET + b"BROKEN\r\n\r\n")
    assert error.status == 400 and rec.events == []


def test_what_earlier_feeds_delivered_stays_delivered() -> None:
    head = b"POST /x HTTP/1.1\r\nHost: s\r\nTransfer-Encoding: chunked\r\n\r\n"
    error, rec = refusal([head + b"3\r\nabc\r\n", b"zz\r\n"])
    assert error.status == 400
    assert [kind for kind, _ in rec.events] == ["head", "body"]


@pytest.mark.parametrize("closer", [b"Connection: close\r\n", b""])
def test_bytes_after_a_closing_request_are_ignored(closer: bytes) -> None:
    # RFC 9112 §9.6: the server reads nothing after a request that closes the connection.
    version = b"HTTP/1.1" if closer else b"HTTP/1.0"
    first = b"GET /a " + version + b"\r\nHost: s\r\n" + closer + b"\r\n"
    rec = Recorder()
    reader = RequestReader(rec)
    assert reader.feed(first + GET + b"garbage") is None
    assert reader.feed(b"more garbage") is None
    assert [m.request.path for m in rec.messages] == ["/a"]


def test_a_bodiless_upgrade_request_hands_over_what_follows_it() -> None:
    # The bytes after it are not read as HTTP: they are the new protocol's once the
    # upstream answers 101. The head says what to switch to.
    rec = Recorder()
    reader = RequestReader(rec)
    data = b"GET /ws HTTP/1.1\r\nHost: s\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n"
    assert reader.feed(data + b"\x81\x05frame") == b"\x81\x05frame"
    (m,) = rec.messages
    assert m.complete and not m.request.has_body
    assert m.request.upgrade == b"websocket"


@pytest.mark.parametrize(
    "upgrade",
    [b"h2c", b"x-raw", b"websocket, h2c", b"WebSocket/13", b"websocket\r\nUpgrade: h2c"],
)
def test_an_upgrade_to_another_protocol_than_websocket_is_ignored(upgrade: bytes) -> None:
    # Switched, the connection would carry requests no policy sees: the request is an
    # ordinary one (no upgrade forwarded), and the connection ends after its answer, since
    # what follows its head may already be the other protocol's (never read as HTTP).
    rec = Recorder()
    reader = RequestReader(rec)
    data = b"GET /up HTTP/1.1\r\nHost: s\r\nConnection: upgrade\r\nUpgrade: %s\r\n\r\n" % upgrade
    assert reader.feed(data + b"GET /admin HTTP/1.1\r\n\r\n") == b"GET /admin HTTP/1.1\r\n\r\n"
    (m,) = rec.messages
    assert m.request.upgrade == b"" and not m.request.keep_alive


def test_an_upgrade_header_without_connection_upgrade_asks_for_nothing() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    assert reader.feed(b"GET /ws HTTP/1.1\r\nHost: s\r\nUpgrade: websocket\r\n\r\n") is None
    (m,) = rec.messages
    assert m.request.upgrade == b""


@pytest.mark.parametrize(
    "framing", [b"Content-Length: 3\r\n\r\nabc", b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"]
)
def test_an_upgrade_request_with_content_is_not_implemented(framing: bytes) -> None:
    # llhttp skips the content of an Upgrade request; forwarded without the Upgrade, its
    # head would announce a body that never follows.
    data = b"POST /up HTTP/1.1\r\nHost: s\r\nConnection: upgrade\r\nUpgrade: h2c\r\n" + framing
    error, rec = refusal(data)
    assert error.status == 501 and rec.events == []


@pytest.mark.parametrize(
    "framing", [b"Content-Length: 3\r\n\r\n", b"Transfer-Encoding: chunked\r\n\r\n"]
)
def test_connect_has_no_content_whatever_its_headers_say(framing: bytes) -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    rest = reader.feed(b"CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n" + framing + b"abc")
    assert rest == b"abc"
    (m,) = rec.messages
    assert m.complete and not m.request.has_body
    assert m.request.content_length is None and not m.request.chunked
