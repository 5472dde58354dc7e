"""W3C / B3 trace context: parse, format, sampling (trellis.proxy.telemetry.tracecontext).

Runs compiled and interpreted (Makefile `test`). The fuzz tests feed any bytes as any of
the fields: the answer is a context (maybe empty), never an exception, and what is
written for the next hop always parses back to the same ids.
"""

from __future__ import annotations

from hypothesis import example, given
from hypothesis import strategies as st

from trellis.proxy.http1.head import head_fields
from trellis.proxy.telemetry.tracecontext import (
    MAX_TRACESTATE,
    PROPAGATION_FIELDS,
    UNDECIDED,
    extract,
    headers,
    new_request_id,
    new_span_id,
    new_trace_id,
    parse_b3,
    parse_traceparent,
    sample,
)

TID = "4bf92f3577b34da6a3ce929d0e0e4736"
SID = "00f067aa0ba902b7"


def test_w3c_traceparent() -> None:
    ctx = extract([(b"traceparent", f"00-{TID}-{SID}-01".encode())])
    assert (ctx.trace_id, ctx.parent_id, ctx.sampled) == (TID, SID, 1)
    ctx = extract([(b"TraceParent", f"00-{TID}-{SID}-00".encode())])
    assert (ctx.trace_id, ctx.sampled) == (TID, 0)


def test_w3c_tracestate_carried_and_bounded() -> None:
    ctx = extract(
        [
            (b"traceparent", f"00-{TID}-{SID}-01".encode()),
            (b"tracestate", b"a=1,b=2"),
            (b"tracestate", b"c=3"),
        ]
    )
    assert ctx.tracestate == "a=1,b=2,c=3"
    long = ",".join(f"k{i}=" + "v" * 20 for i in range(100)).encode()
    ctx = extract([(b"traceparent", f"00-{TID}-{SID}-01".encode()), (b"tracestate", long)])
    assert 0 < len(ctx.tracestate) <= MAX_TRACESTATE
    assert ctx.tracestate.endswith("v")  # cut at a member boundary


def test_invalid_traceparent_is_no_context() -> None:
    bad = [
        f"ff-{TID}-{SID}-01",  # version ff
        f"00-{'0' * 32}-{SID}-01",  # all-zero trace id
        f"00-{TID}-{'0' * 16}-01",  # all-zero parent
        f"00-{TID.upper()}-{SID}-01",  # upper case
        f"00-{TID}-{SID}-01-extra",  # version 00 has no more fields
        f"00-{TID[:-1]}-{SID}-01",
        "garbage",
    ]
    for value in bad:
        assert parse_traceparent(value.encode()) is None, value
        assert extract([(b"traceparent", value.encode())]).trace_id == ""
    # A later version may add fields after a dash.
    later = parse_traceparent(f"01-{TID}-{SID}-01-whatever".encode())
    assert later is not None and later.trace_id == TID


def test_repeated_traceparent_is_invalid() -> None:
    value = f"00-{TID}-{SID}-01".encode()
    assert extract([(b"traceparent", value), (b"traceparent", value)]).trace_id == ""


def test_b3_single() -> None:
    ctx = parse_b3(f"{TID}-{SID}-1".encode())
    assert ctx is not None and (ctx.trace_id, ctx.parent_id, ctx.sampled) == (TID, SID, 1)
    ctx = parse_b3(f"{TID}-{SID}".encode())
    assert ctx is not None and ctx.sampled == UNDECIDED
    ctx = parse_b3(f"{TID}-{SID}-d-{SID}".encode())
    assert ctx is not None and ctx.sampled == 1
    short = parse_b3(f"{TID[16:]}-{SID}-0".encode())  # 64-bit trace id: widened
    assert short is not None and short.trace_id == "0" * 16 + TID[16:] and short.sampled == 0
    only = parse_b3(b"0")
    assert only is not None and only.trace_id == "" and only.sampled == 0
    for value in (b"x", f"{TID}-{SID}-x".encode(), f"{TID}-zz".encode(), b"1-2-3-4-5"):
        assert parse_b3(value) is None


def test_b3_multi() -> None:
    ctx = extract(
        [
            (b"X-B3-TraceId", TID.encode()),
            (b"X-B3-SpanId", SID.encode()),
            (b"X-B3-Sampled", b"1"),
        ]
    )
    assert (ctx.trace_id, ctx.parent_id, ctx.sampled) == (TID, SID, 1)
    debug = extract(
        [(b"x-b3-traceid", TID.encode()), (b"x-b3-spanid", SID.encode()), (b"x-b3-flags", b"1")]
    )
    assert debug.sampled == 1
    decision_only = extract([(b"x-b3-sampled", b"0")])
    assert decision_only.trace_id == "" and decision_only.sampled == 0


def test_precedence_w3c_then_b3_single_then_multi() -> None:
    other = "1" * 32
    both = extract(
        [
            (b"b3", f"{other}-{SID}-0".encode()),
            (b"traceparent", f"00-{TID}-{SID}-01".encode()),
            (b"x-b3-traceid", b"2" * 32),
            (b"x-b3-spanid", SID.encode()),
        ]
    )
    assert both.trace_id == TID and both.sampled == 1
    single = extract([(b"b3", f"{other}-{SID}-0".encode()), (b"x-b3-traceid", b"2" * 32)])
    assert single.trace_id == other


def test_an_unsampled_context_with_a_request_id_is_read_no_further() -> None:
    came = f"00-{TID}-{SID}-00".encode()
    ctx = extract([(b"traceparent", came), (b"x-request-id", b"r")])
    assert (ctx.trace_id, ctx.sampled, ctx.request_id, ctx.parent_id) == (TID, 0, "r", "")
    # Without a request id this hop writes its own context: it is read whole.
    whole = extract([(b"traceparent", came)])
    assert (whole.trace_id, whole.parent_id, whole.sampled) == (TID, SID, 0)
    bad = extract([(b"traceparent", f"00-{'z' * 32}-{SID}-00".encode())])
    assert bad.trace_id == ""
    # An invalid one is refused the same with a request id beside it (the short cut checks
    # what the full parse does): a new trace, not garbage ids passed on.
    for invalid in (f"00-{'z' * 32}-{SID}-00", f"00-{TID}-{'y' * 16}-00",
                    f"00-{'0' * 32}-{SID}-00", f"00-{TID}-{'0' * 16}-00",
                    f"00-{TID.upper()}-{SID}-00", f"00-{TID}-{SID}-z0"):  # fmt: skip
        ctx = extract([(b"traceparent", invalid.encode()), (b"x-request-id", b"r")])
        assert (ctx.trace_id, ctx.request_id) == ("", "r"), invalid


def test_request_id_kept_or_dropped() -> None:
    assert extract([(b"x-request-id", b"abc-123")]).request_id == "abc-123"
    assert extract([(b"x-request-id", b"x" * 500)]).request_id == ""
    assert extract([(b"x-request-id", b"\xff\xfe")]).request_id == ""
    assert extract([]).request_id == ""


def test_headers_round_trip_both_forms() -> None:
    block = headers(TID, SID, "1111111111111111", True, "a=1", "rid-1")
    fields = head_fields(b"GET / HTTP/1.1\r\n" + block + b"\r\n")
    names = {n for n, _ in fields}
    assert names <= PROPAGATION_FIELDS
    assert names >= {b"traceparent", b"b3", b"x-b3-traceid", b"x-b3-spanid", b"x-request-id"}
    w3c = extract([f for f in fields if f[0] in (b"traceparent", b"tracestate")])
    assert (w3c.trace_id, w3c.parent_id, w3c.sampled, w3c.tracestate) == (TID, SID, 1, "a=1")
    single = extract([f for f in fields if f[0] == b"b3"])
    assert (single.trace_id, single.parent_id, single.sampled) == (TID, SID, 1)
    multi = extract([f for f in fields if f[0].startswith(b"x-b3-")])
    assert (multi.trace_id, multi.parent_id, multi.sampled) == (TID, SID, 1)
    assert dict(fields)[b"x-b3-parentspanid"] == b"1111111111111111"
    unsampled = headers(TID, SID, "", False, "", "r")
    assert b"-00\r\n" in unsampled and b"x-b3-sampled: 0" in unsampled
    assert b"parentspanid" not in unsampled and b"tracestate" not in unsampled


def test_sampling_decision() -> None:
    undecided = extract([])
    assert sample(undecided, 1.0, 0.005) and not sample(undecided, 1.0, 0.01)
    assert not sample(undecided, 0.0, 0.0) and sample(undecided, 100.0, 0.9999)
    yes = extract([(b"traceparent", f"00-{TID}-{SID}-01".encode())])
    no = extract([(b"traceparent", f"00-{TID}-{SID}-00".encode())])
    assert sample(yes, 0.0, 0.99) and not sample(no, 100.0, 0.0)  # the caller decides


def test_sampling_rate_is_the_percentage() -> None:
    import random

    rng = random.Random(7)
    ctx = extract([])
    hits = sum(sample(ctx, 1.0, rng.random()) for _ in range(100_000))
    assert 800 <= hits <= 1200


def test_new_ids() -> None:
    ids = {new_trace_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(len(i) == 32 and int(i, 16) for i in ids)
    span = new_span_id()
    assert len(span) == 16 and int(span, 16)
    rid = new_request_id()
    assert len(rid) == 36 and rid[14] == "4" and rid[19] in "89ab"


_NAMES = st.sampled_from([*sorted(PROPAGATION_FIELDS), b"host", b"X-B3-TRACEID", b"B3"])


@given(st.lists(st.tuples(_NAMES, st.binary(max_size=80)), max_size=12))
@example([(b"b3", b"0"), (b"x-request-id", b" ")])  # B3's bare deny: no ids at all
def test_fuzz_any_fields_parse_or_start_a_trace(fields: list[tuple[bytes, bytes]]) -> None:
    ctx = extract(fields)
    if ctx.sampled == 0 and ctx.request_id and ctx.parent_id == "":
        # An unsampled context with a request id: passed through, its ids unread (a
        # traceparent's trace id is kept; B3's single "0" carries none).
        assert ctx.trace_id == "" or len(ctx.trace_id) == 32
        return
    assert ctx.trace_id == "" or (len(ctx.trace_id) == 32 and int(ctx.trace_id, 16))
    assert ctx.parent_id == "" or (len(ctx.parent_id) == 16 and int(ctx.parent_id, 16))
    assert ctx.sampled in (UNDECIDED, 0, 1)
    assert ctx.tracestate.isprintable() and len(ctx.tracestate) <= MAX_TRACESTATE
    assert ctx.request_id.isprintable()
    if ctx.trace_id:
        # Whatever was read is written so that the next hop reads the same.
        span = new_span_id()
        block = headers(ctx.trace_id, span, ctx.parent_id, ctx.sampled == 1, ctx.tracestate, "r")
        again = extract(head_fields(b"GET / HTTP/1.1\r\n" + block + b"\r\n"))
        assert (again.trace_id, again.parent_id) == (ctx.trace_id, span)


@given(
    st.text(alphabet="0123456789abcdef-", max_size=60),
    st.sampled_from([b"traceparent", b"b3"]),
)
def test_fuzz_near_valid_shapes(text: str, name: bytes) -> None:
    ctx = extract([(name, text.encode())])
    assert ctx.trace_id == "" or len(ctx.trace_id) == 32
