"""A peer sidecar's answer to our CONNECT (http1/framing.py `read_connect_answer`): parsed
as it arrives in any cuts, the tunnel bytes after it kept whole, the peer's flags reduced
to flag letters; and fuzzed (STYLE.md habit 10): arbitrary and mutated answers only ever
raise ProtocolError, and the cuts change nothing."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trellis.proxy.http1.errors import ProtocolError
from trellis.proxy.http1.framing import MAX_CONNECT_ANSWER, ConnectAnswer, read_connect_answer

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "300")),
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

SEEDS = [
    b"HTTP/1.1 200 OK\r\n\r\n",
    b"HTTP/1.1 200 Connection established\r\n\r\ntunnel bytes",
    b"HTTP/1.1 403 Forbidden\r\nx-trellis-flags: RBAC\r\ncontent-length: 0\r\n\r\n",
    b"HTTP/1.1 503 Service Unavailable\r\nX-Trellis-Flags: UF,URX\r\n\r\n",
    b"HTTP/1.0 400 Bad Request\r\n\r\n",
]


def arrive(data: bytes, cuts: list[int]) -> tuple[str, object]:
    """Feed `data` as a sidecar's tunnel does (what arrived so far, each time)."""
    points = [*sorted({c for c in cuts if 0 < c < len(data)}), len(data)]
    try:
        for p in points:
            answer = read_connect_answer(data[:p])
            if answer is not None:
                # What followed the head reaches the tunnel, now or as it arrives.
                tunnel = answer.rest + data[p:]
                return "answer", (answer.status, answer.flags, answer.status_line, tunnel)
        return "waiting", None
    except ProtocolError as e:
        assert e.status == 502 and e.reason
        return "refused", None


def test_an_established_tunnel_keeps_the_bytes_after_the_head() -> None:
    answer = read_connect_answer(SEEDS[1])
    assert isinstance(answer, ConnectAnswer)
    assert answer.established and answer.status == 200 and answer.rest == b"tunnel bytes"
    assert answer.status_line == "HTTP/1.1 200 Connection established"


def test_a_refusal_carries_the_peers_flags() -> None:
    answer = read_connect_answer(SEEDS[3])
    assert answer is not None and not answer.established
    assert (answer.status, answer.flags) == (503, "UF,URX")


def test_flags_are_reduced_to_flag_letters() -> None:
    data = b"HTTP/1.1 403 x\r\nx-trellis-flags: RBAC\x1b[31m; rm -rf /" + b"A" * 64 + b"\r\n\r\n"
    answer = read_connect_answer(data)
    assert answer is not None
    assert answer.flags.startswith("RBAC") and len(answer.flags) == 32
    assert set(answer.flags) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZ,")


def test_an_incomplete_head_waits_and_a_long_one_is_refused() -> None:
    assert read_connect_answer(b"HTTP/1.1 200 OK\r\n") is None
    with pytest.raises(ProtocolError):
        read_connect_answer(b"HTTP/1.1 200 OK\r\n" + b"x" * (MAX_CONNECT_ANSWER + 1))


@pytest.mark.parametrize(
    "data", [b"SSH-2.0-OpenSSH\r\n\r\n", b"HTTP/1.1 2000 OK\r\n\r\n", b"HTTP/1.1\r\n\r\n"]
)
def test_what_is_not_an_http_answer_is_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        read_connect_answer(data)


cuts = st.lists(st.integers(min_value=0, max_value=512), max_size=8)


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(data)))
        op = draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "flip" and at < len(data):
            data[at] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            data[at:at] = draw(st.sampled_from([b"\r\n", b":", b" ", b"\x00", b"\xff", b"2"]))
        else:
            del data[at : at + draw(st.integers(min_value=1, max_value=4))]
    return bytes(data)


@FUZZ
@given(st.binary(max_size=600), cuts)
def test_arbitrary_bytes_only_raise_protocol_error_whatever_the_cuts(
    data: bytes, c: list[int]
) -> None:
    assert arrive(data, c) == arrive(data, [])


@FUZZ
@given(mutated(), cuts)
def test_mutated_answers_only_raise_protocol_error_whatever_the_cuts(
    data: bytes, c: list[int]
) -> None:
    outcome = arrive(data, c)
    assert outcome == arrive(data, [])
    if outcome[0] == "answer":
        status, flags, _, _ = outcome[1]  # type: ignore[misc]
        assert 0 <= status <= 999 and len(flags) <= 32
