"""Fuzzing the readers (STYLE.md habit 10): arbitrary bytes, requests built from dangerous
parts, and mutated corpus seeds, fed in random cuts, only ever raise ProtocolError.

And what they accept holds together: messages come as (head, body*, end)*, each body is
exactly what its head's framing announces (what a proxy re-frames from the head is what it
read), and the cuts between feeds change nothing: the same messages, the same tunnel
bytes after a CONNECT, or the same refusal status.

`FUZZ_EXAMPLES=20000 pytest tests/proxy/http1/test_fuzz.py` runs longer than the suite does.
"""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.proxy.http1.support import Recorder, check_framing, corpus_files, pieces

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.reader import RequestReader, ResponseReader

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SEEDS = [p.read_bytes() for p in corpus_files() if p.stat().st_size <= 2048]
TOKENS = [
    b"\r\n",
    b"\n",
    b"\r",
    b"\r\n\r\n",
    b":",
    b" ",
    b"\t",
    b"\x00",
    b",",
    b";",
    b"0",
    b"5",
    b"f",
    b"-",
    b"chunked",
    b"Transfer-Encoding: chunked\r\n",
    b"Content-Length: 0\r\n",
    b"Content-Length: 5\r\n",
    b"Host: svc\r\n",
    b"Connection: close\r\n",
    b"Expect: 100-continue\r\n",
    b"0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HTTP/1.1",
    b"HTTP/1.0",
    b"CONNECT",
    b"http://",
    b"\xff",
]


# -- running a reader -----------------------------------------------------------------------


Outcome = tuple[str, Any]


def run_requests(chunks: list[bytes]) -> Outcome:
    """('refused', status) or ('accepted', (messages, tunnel bytes)); anything else raised
    out of the reader fails the test."""
    rec = Recorder()
    reader = RequestReader(rec)
    tunnel = None
    try:
        for i, chunk in enumerate(chunks):
            rest = reader.feed(chunk)
            if rest is not None:
                tunnel = rest + b"".join(chunks[i + 1 :])
                break
    except ProtocolError as e:
        assert 400 <= e.status <= 599 and e.reason, e
        rec.messages  # noqa: B018 - what was delivered before the refusal is well formed
        return "refused", e.status
    messages = rec.messages
    check_framing(messages)
    summary = [
        (m.request.method, m.request.target, m.request.authority, m.body, m.complete)
        for m in messages
    ]
    # A message cut off by the end of the input is still arriving, whatever the cuts.
    return "accepted", (summary, tunnel)


def same_whatever_the_cuts(data: bytes, cuts: list[int]) -> None:
    whole = run_requests([data])
    cut = run_requests(pieces(data, cuts))
    if whole[0] == "accepted" and cut[0] == "accepted":
        assert _complete(whole[1]) == _complete(cut[1]), (data, cuts)
    else:
        assert whole == cut, (data, cuts)


def _complete(result: tuple[list[tuple[Any, ...]], bytes | None]) -> Any:
    summary, tunnel = result
    # Bodies of an incomplete last message may have been delivered in part: compare
    # complete messages fully and the incomplete one by its head.
    return [row if row[-1] else row[:3] for row in summary], tunnel


# -- strategies -----------------------------------------------------------------------------

cuts = st.lists(st.integers(min_value=0, max_value=4096), max_size=12)


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes]) -> bytes:
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate", "token"]))
        at = draw(st.integers(min_value=0, max_value=max(len(data), 1)))
        if op == "flip" and data:
            at = min(at, len(data) - 1)
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del data[at : at + draw(st.integers(min_value=1, max_value=8))]
        elif op == "duplicate":
            size = draw(st.integers(min_value=1, max_value=32))
            data[at:at] = data[at : at + size]
        else:
            data[at:at] = draw(st.sampled_from(TOKENS))
    return bytes(data)


HEADER_PARTS = [
    b"Host: svc",
    b"Host: svc:9080",
    b"Host: other",
    b"Host:",
    b"Content-Length: 0",
    b"Content-Length: 3",
    b"Content-Length: 7",
    b"Content-Length: 3, 3",
    b"Content-Length: -1",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip, chunked",
    b"Transfer-Encoding: chunked, gzip",
    b"Transfer-Encoding: identity",
    b"Transfer-Encoding : chunked",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: upgrade",
    b"Upgrade: websocket",
    b"Expect: 100-continue",
    b"X-Fold: a\r\n b",
    b"X-Nul: a\x00b",
    b"Broken line",
]
BODY_PARTS = [
    b"",
    b"abc",
    b"abcdefg",
    b"0\r\n\r\n",
    b"3\r\nabc\r\n0\r\n\r\n",
    b"3;ext=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"zz\r\n",
    b"3\r\nabcX",
    b"GET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n",
]


@st.composite
def built_requests(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"OPTIONS"]))
        target = draw(
            st.sampled_from(
                [b"/", b"/a?b=c", b"*", b"svc:443", b"http://svc:9080/x", b"http://[::1]/", b"x"]
            )
        )
        version = draw(
            st.sampled_from([b"HTTP/1.1", b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1.2", b"HTTP/2.0"])
        )
        headers = draw(st.lists(st.sampled_from(HEADER_PARTS), max_size=5))
        body = draw(st.sampled_from(BODY_PARTS))
        out += b"%s %s %s\r\n" % (method, target, version)
        out += b"".join(h + b"\r\n" for h in headers) + b"\r\n" + body
    return out


# -- requests -------------------------------------------------------------------------------


@FUZZ
@given(st.binary(max_size=600), cuts)
def test_arbitrary_bytes(data: bytes, at: list[int]) -> None:
    same_whatever_the_cuts(data, at)


@FUZZ
@given(st.binary(max_size=300), cuts)
def test_arbitrary_bytes_after_a_valid_head(data: bytes, at: list[int]) -> None:
    same_whatever_the_cuts(b"POST /x HTTP/1.1\r\nHost: svc\r\n" + data, at)


@FUZZ
@given(mutated(SEEDS), cuts)
def test_mutated_corpus_requests(data: bytes, at: list[int]) -> None:
    same_whatever_the_cuts(data, at)


@FUZZ
@given(built_requests(), cuts)
def test_requests_built_from_dangerous_parts(data: bytes, at: list[int]) -> None:
    same_whatever_the_cuts(data, at)


# -- responses ------------------------------------------------------------------------------

RESPONSE_SEEDS = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;x=y\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
    b"HTTP/1.0 200 OK\r\n\r\nclose-delimited",
    b"HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n",
]


def run_response(head_request: bool, chunks: list[bytes]) -> None:
    rec = Recorder()
    reader = ResponseReader(rec)
    reader.expect(head_request)
    try:
        for chunk in chunks:
            reader.feed(chunk)
            if reader.done:
                reader.expect(head_request)
        reader.eof()
    except ProtocolError as e:
        assert e.status == 502, e
        return
    for m in rec.messages:
        head = m.response
        assert 200 <= head.status <= 599
        if m.complete and head.content_length is not None:
            assert len(m.body) == head.content_length


@FUZZ
@given(st.booleans(), st.binary(max_size=600), cuts)
def test_arbitrary_response_bytes(head_request: bool, data: bytes, at: list[int]) -> None:
    run_response(head_request, pieces(data, at))


@FUZZ
@given(st.booleans(), mutated(RESPONSE_SEEDS), cuts)
def test_mutated_responses(head_request: bool, data: bytes, at: list[int]) -> None:
    run_response(head_request, pieces(data, at))
