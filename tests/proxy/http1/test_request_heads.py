"""RequestReader heads: the four request-target forms (RFC 9112 §3.2), Host rules, HTTP/1.0,
keep-alive and 100-continue, as the proxy's listeners see them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tests.proxy.http1.support import Recorder, refusal, request_messages

from trellis.proxy.http1.head import RequestHead, end_to_end, header_map
from trellis.proxy.http1.reader import RequestReader


def head_of(data: bytes) -> RequestHead:
    messages = request_messages(data)
    assert len(messages) == 1 and messages[0].complete
    return messages[0].request


def get(
    target: bytes, *headers: bytes, version: bytes = b"HTTP/1.1", method: bytes = b"GET"
) -> bytes:
    return b"%s %s %s\r\n%s\r\n" % (method, target, version, b"".join(h + b"\r\n" for h in headers))


# -- origin-form ----------------------------------------------------------------------------


def test_origin_form_takes_its_authority_from_host_lower_cased() -> None:
    head = head_of(get(b"/a/b?c=D&e", b"Host: Reviews.Default:9080", b"X-Thing: 1"))
    assert (head.method, head.target, head.path) == ("GET", "/a/b?c=D&e", "/a/b?c=D&e")
    assert head.authority == "reviews.default:9080"
    assert not head.absolute
    assert head.version == "1.1"
    assert head.headers == [(b"Host", b"Reviews.Default:9080"), (b"X-Thing", b"1")]


def test_a_host_seen_before_gives_the_same_authority_and_a_bad_one_is_still_refused() -> None:
    # The reader remembers Host values it found valid (a cache): the second time must
    # read the same, and nothing invalid may slip in through it.
    for _ in range(3):
        head = head_of(get(b"/", b"Host:  Shop.Example:8080  "))
        assert head.authority == "shop.example:8080"
    long_name = b"a" * 300  # valid, longer than what the cache keeps
    for _ in range(2):
        assert head_of(get(b"/", b"Host: " + long_name)).authority == "a" * 300
    for bad in (b"Host: shop example", b"Host: shop.example:80:80", b"Host: a/b"):
        for _ in range(2):
            error, _ = refusal(get(b"/", bad))
            assert error.status == 400 and "Host" in str(error), bad


def test_header_values_keep_their_bytes_and_repeated_ones_join() -> None:
    head = head_of(get(b"/", b"Host: a", b"Accept: x", b"accept: y", b"X-Hi: \xe9t\xe9"))
    assert head.get("accept") == "x,y"
    assert head.header_map()["x-hi"] == "\xe9t\xe9"
    assert head.get("missing") is None


@pytest.mark.parametrize("host", [b"Host:", b"Host:   ", b"Host: :8080"])
@pytest.mark.parametrize("start", [b"GET / HTTP/1.1", b"GET / HTTP/1.0", b"OPTIONS * HTTP/1.1"])
def test_an_empty_host_names_no_authority_and_is_refused(host: bytes, start: bytes) -> None:
    # RFC 9110 §4.2.1: an http URI with an empty host is invalid, and the target URI of an
    # origin-form or asterisk-form request takes its host from Host (RFC 9112 §3.3).
    method, target, version = start.split()
    error, rec = refusal(get(target, host, version=version, method=method))
    assert error.status == 400 and "names no authority" in str(error)
    assert rec.events == []


def test_an_absolute_form_target_names_its_host_whatever_host_says() -> None:
    # RFC 9112 §3.2.2: Host is ignored (beyond its syntax) when the target is absolute.
    for host in (b"Host:", b"Host: :80", b"Host: elsewhere"):
        head = head_of(get(b"http://svc:81/x", host))
        assert (head.authority, head.path, head.absolute) == ("svc:81", "/x", True)
    error, _ = refusal(get(b"http://svc:81/x", b"Host: a b"))
    assert error.status == 400 and "invalid Host" in str(error)


def test_connect_needs_a_host_in_its_target() -> None:
    for target in (b":443", b":"):
        error, _ = refusal(get(target, b"Host: svc:443", method=b"CONNECT"))
        assert error.status == 400 and "authority-form" in str(error), target


# -- absolute-form --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "authority", "path"),
    [
        (b"http://reviews:9080/x?y=1&z", "reviews:9080", "/x?y=1&z"),
        (b"http://Reviews.Default/x", "reviews.default", "/x"),
        (b"HTTP://SVC:81/X", "svc:81", "/X"),
        (b"https://svc:8443/a/b", "svc:8443", "/a/b"),
        (b"http://svc", "svc", "/"),
        (b"http://svc?q=1", "svc", "/?q=1"),
        (b"http://10.0.0.7:8080/", "10.0.0.7:8080", "/"),
        (b"http://[::1]/x", "[::1]", "/x"),
        (b"http://[fe80::1]:9080/x", "[fe80::1]:9080", "/x"),
    ],
)
def test_absolute_form_names_the_destination(target: bytes, authority: str, path: str) -> None:
    head = head_of(get(target, b"Host: ignored.example"))
    assert head.absolute
    assert head.target == target.decode()
    assert (head.authority, head.path) == (authority, path)


# -- authority-form and asterisk-form -------------------------------------------------------


def test_connect_takes_an_authority_and_hands_over_the_bytes_after_its_head() -> None:
    rec = Recorder()
    reader = RequestReader(rec)
    rest = reader.feed(
        get(b"Reviews:443", b"Host: reviews:443", method=b"CONNECT") + b"\x16\x03tls"
    )
    assert rest == b"\x16\x03tls"
    (message,) = rec.messages
    head = message.request
    assert (head.method, head.path, head.authority) == ("CONNECT", "", "reviews:443")
    assert not head.has_body


def test_connect_to_an_ipv6_authority() -> None:
    head = head_of(get(b"[::1]:443", b"Host: [::1]:443", method=b"CONNECT"))
    assert head.authority == "[::1]:443"


def test_options_asterisk() -> None:
    head = head_of(get(b"*", b"Host: svc", method=b"OPTIONS"))
    assert (head.method, head.path, head.authority) == ("OPTIONS", "*", "svc")


# -- HTTP/1.0, keep-alive, 100-continue -----------------------------------------------------


def test_http_1_0_closes_by_default() -> None:
    head = head_of(get(b"/old", b"Host: Old", version=b"HTTP/1.0"))
    assert (head.version, head.authority, head.keep_alive) == ("1.0", "old", False)


def test_http_1_0_without_host_names_its_host_in_the_target_or_is_refused() -> None:
    # No Host: an origin-form request names no authority, which the listeners need (400);
    # an absolute-form one names it in the target (HTTP/1.0 does not require Host).
    error, _ = refusal(get(b"/old", version=b"HTTP/1.0"))
    assert error.status == 400 and str(error) == "missing Host header"
    head = head_of(get(b"http://svc/old", version=b"HTTP/1.0"))
    assert (head.version, head.authority, head.path) == ("1.0", "svc", "/old")


@pytest.mark.parametrize("minor", range(2, 10))
def test_a_higher_minor_version_of_http_1_is_read_as_http_1_1(minor: int) -> None:
    # RFC 9110 §2.5: processed as the highest minor version we implement; its semantics
    # (keep-alive, chunked, 100-continue) are HTTP/1.1's, and it goes upstream as such.
    version = b"HTTP/1.%d" % minor
    head = head_of(get(b"/x", b"Host: svc", b"Expect: 100-continue", version=version))
    assert (head.version, head.keep_alive, head.expect_continue) == ("1.1", True, True)
    chunked = get(
        b"/x", b"Host: svc", b"Transfer-Encoding: chunked", version=version, method=b"POST"
    )
    messages = request_messages(chunked + b"2\r\nhi\r\n0\r\n\r\n")
    assert messages[0].request.chunked and messages[0].body == b"hi"
    # The same when the head is not the first thing in its read (pipelined).
    pair = request_messages(get(b"/a", b"Host: svc") + get(b"/b", b"Host: svc", version=version))
    assert [m.request.version for m in pair] == ["1.1", "1.1"]


@pytest.mark.parametrize(
    ("version", "connection", "keep_alive"),
    [
        (b"HTTP/1.1", None, True),
        (b"HTTP/1.1", b"close", False),
        (b"HTTP/1.1", b"CLOSE", False),
        (b"HTTP/1.1", b"keep-alive, close", False),
        (b"HTTP/1.1", b"keep-alive", True),
        (b"HTTP/1.0", None, False),
        (b"HTTP/1.0", b"keep-alive", True),
        (b"HTTP/1.0", b"Keep-Alive", True),
    ],
)
def test_keep_alive_rules(version: bytes, connection: bytes | None, keep_alive: bool) -> None:
    headers = [b"Host: a"] + ([b"Connection: " + connection] if connection is not None else [])
    assert head_of(get(b"/", *headers, version=version)).keep_alive is keep_alive


@pytest.mark.parametrize(
    ("version", "expect", "expected"),
    [
        (b"HTTP/1.1", b"100-continue", True),
        (b"HTTP/1.1", b"100-Continue", True),
        (b"HTTP/1.1", b" 100-continue ", True),
        (b"HTTP/1.1", b"something-else", False),
        (b"HTTP/1.0", b"100-continue", False),  # RFC 9110 §10.1.1: ignored from HTTP/1.0
    ],
)
def test_100_continue_detection(version: bytes, expect: bytes, expected: bool) -> None:
    data = get(
        b"/up",
        b"Host: a",
        b"Expect: " + expect,
        b"Content-Length: 2",
        version=version,
        method=b"POST",
    )
    head = head_of(data + b"hi")
    assert head.expect_continue is expected
    assert head.content_length == 2 and head.has_body


def test_no_100_continue_without_an_expectation() -> None:
    assert not head_of(get(b"/", b"Host: a")).expect_continue


# -- forwarding helpers ---------------------------------------------------------------------


def test_end_to_end_drops_hop_by_hop_and_connection_listed_headers() -> None:
    headers = [
        (b"Host", b"a"),
        (b"Connection", b"close, X-Secret"),
        (b"Keep-Alive", b"timeout=5"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Content-Length", b"3"),
        (b"TE", b"trailers"),
        (b"Upgrade", b"websocket"),
        (b"Proxy-Connection", b"keep-alive"),
        (b"x-secret", b"1"),
        (b"X-Kept", b"2"),
    ]
    assert end_to_end(headers) == [(b"Host", b"a"), (b"X-Kept", b"2")]


@pytest.mark.parametrize("split", [False, True])
def test_each_pipelined_request_gets_its_own_version(split: bool) -> None:
    # The version of a head that starts a read comes from its request line; any other
    # (pipelined behind a body, or a head split over reads) is asked of llhttp.
    first = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\nok"
    second = get(b"/b", b"Host: h", b"Connection: keep-alive", version=b"HTTP/1.0")
    third = get(b"/c", b"Host: h")
    data = first + second + third
    chunks = [data[i : i + 7] for i in range(0, len(data), 7)] if split else [data]
    heads = [m.request for m in request_messages(chunks)]
    assert [(h.path, h.version) for h in heads] == [("/a", "1.1"), ("/b", "1.0"), ("/c", "1.1")]
    assert [m.request.version for m in request_messages([second, first])] == ["1.0", "1.1"]
    assert [m.request.version for m in request_messages([b"\r\n" + second])] == ["1.0"]


def test_the_peer_field_is_kept_aside_and_repeated_ones_join() -> None:
    head = head_of(get(b"/", b"Host: h", b"X-Trellis-Peer: a=1", b"x-trellis-peer: b=2"))
    assert head.peer == b"a=1,b=2"
    assert head.get("x-trellis-peer") == "a=1,b=2"  # still a header like any other
    assert head_of(get(b"/", b"Host: h")).peer is None


# -- header lookup --------------------------------------------------------------------------

_NAMES = st.sampled_from(
    [b"x-canary", b"X-Canary", b"X-CANARY", b"cookie", b"x-canar", b"\xe9t\xe9"]
)
_VALUES = st.binary(max_size=8).map(lambda v: v.replace(b"\r", b"").replace(b"\n", b""))


@given(st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
def test_one_header_is_found_as_the_map_has_it(fields: list[tuple[bytes, bytes]]) -> None:
    """`RequestHead.get` finds a value in the fields themselves, before any map is built,
    and agrees with the map: lower-case name, repeated fields joined with ","."""
    expected = header_map(fields)
    for name in ("x-canary", "cookie", "x-canar", "\xe9t\xe9", "absent", "\u2603"):
        head = RequestHead("GET", "/", "/", "a", fields)
        assert head.get(name) == expected.get(name)
        head.header_map()
        assert head.get(name) == expected.get(name)
