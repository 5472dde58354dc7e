"""Re-framing between the two sides of the proxy (http1/framing.py), on heads read by the
real readers: the usual response passes through as it came; anything else is rebuilt, a
body of unknown length chunked towards HTTP/1.1 and close-delimited towards HTTP/1.0; a
transfer coding an HTTP/1.0 client cannot take is refused; and the request head for the
upstream states Host first, the upgrade again, and the body's framing as it was read."""

from __future__ import annotations

from tests.proxy.http1.support import read_responses, request_messages

from trellis.proxy.http1.framing import (
    DROP_UPSTREAM,
    body_end,
    coding_unsendable,
    downstream_response_head,
    frame,
    upstream_request_head,
    with_fields,
)
from trellis.proxy.http1.head import Headers, RequestHead, ResponseHead, end_to_end


def response(data: bytes, head_request: bool = False) -> ResponseHead:
    rec, _ = read_responses([(head_request, [data])], eof=True)
    return rec.messages[0].response


def request(data: bytes) -> RequestHead:
    return request_messages(data)[0].request


GET_11 = b"GET /x HTTP/1.1\r\nHost: svc\r\n\r\n"
GET_10 = b"GET /x HTTP/1.0\r\nHost: svc\r\n\r\n"
LENGTH = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\n\r\nok"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
CLOSE = b"HTTP/1.1 200 OK\r\nX-A: 1\r\n\r\nok"
GZIP = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"


def test_the_usual_response_passes_through_as_it_came() -> None:
    head = response(LENGTH)
    out = downstream_response_head(head, request(GET_11), [], True, None)
    assert out.data == head.raw
    assert (out.chunked, out.keep_alive) == (False, True)


def test_flags_and_close_are_inserted_before_the_blank_line() -> None:
    head = response(LENGTH)
    out = downstream_response_head(head, request(GET_11), ["URX", "UO"], False, None)
    assert out.data == head.raw[:-2] + b"x-trellis-flags: URX,UO\r\nconnection: close\r\n\r\n"
    assert not out.keep_alive


def test_a_chunked_response_is_rechunked_for_an_http11_client() -> None:
    out = downstream_response_head(response(CHUNKED), request(GET_11), [], True, None)
    assert out.chunked and out.keep_alive
    assert b"transfer-encoding: chunked\r\n" in out.data
    assert frame(b"ok", out.chunked) + body_end(out.chunked) == b"2\r\nok\r\n0\r\n\r\n"


def test_a_body_of_unknown_length_is_close_delimited_for_an_http10_client() -> None:
    for data in (CHUNKED, CLOSE):
        out = downstream_response_head(response(data), request(GET_10), [], True, None)
        assert not out.chunked and not out.keep_alive
        assert b"transfer-encoding" not in out.data.lower()
        assert out.data.endswith(b"connection: close\r\n\r\n")
        assert frame(b"ok", out.chunked) == b"ok" and body_end(out.chunked) == b""


def test_a_close_delimited_response_is_chunked_for_an_http11_client() -> None:
    out = downstream_response_head(response(CLOSE), request(GET_11), [], True, None)
    assert out.chunked and out.keep_alive and b"transfer-encoding: chunked\r\n" in out.data


def test_a_transfer_coding_is_kept_by_name_and_refused_to_http10() -> None:
    head = response(GZIP)
    assert not coding_unsendable(head, request(GET_11))
    assert coding_unsendable(head, request(GET_10))
    out = downstream_response_head(head, request(GET_11), [], True, None)
    assert b"transfer-encoding: gzip, chunked\r\n" in out.data


def test_response_mutations_rebuild_the_head() -> None:
    def mutate(fields: Headers) -> Headers:
        return [*fields, (b"x-added", b"yes")]

    out = downstream_response_head(response(LENGTH), request(GET_11), [], True, mutate)
    assert b"x-added: yes\r\n" in out.data and b"content-length: 2\r\n" in out.data
    assert out.data.startswith(b"HTTP/1.1 200 OK\r\n")


def test_a_head_request_keeps_the_content_length_of_its_response() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\nConnection: keep-alive\r\n\r\n"
    head = response(data, head_request=True)
    req = request(b"HEAD /x HTTP/1.1\r\nHost: svc\r\n\r\n")
    out = downstream_response_head(head, req, [], True, None)
    assert b"Content-Length: 99\r\n" in out.data and b"keep-alive" not in out.data


def test_the_request_head_for_the_upstream() -> None:
    req = request(
        b"POST /p HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n"
        b"X-Trellis-Target-Port: 1\r\nExpect: 100-continue\r\nX-A: 1\r\n\r\n0\r\n\r\n"
    )
    fields = end_to_end(req.headers, DROP_UPSTREAM)
    data = upstream_request_head(req, "/q", "other", fields, [(b"x-trellis-peer", b"me")])
    assert data == (
        b"POST /q HTTP/1.1\r\nhost: other\r\nX-A: 1\r\nx-trellis-peer: me\r\n"
        b"transfer-encoding: chunked\r\n\r\n"
    )
    assert with_fields(data, b"x-b: 2\r\n").endswith(b"chunked\r\nx-b: 2\r\n\r\n")
    assert with_fields(data, b"") == data


def test_an_upgrade_is_restated_for_the_next_hop() -> None:
    req = request(
        b"GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"
    )
    data = upstream_request_head(req, req.path, req.authority, [], [])
    assert b"connection: upgrade\r\nupgrade: websocket\r\n" in data
