"""Trace context on the wire: W3C Trace Context and B3 read, both written, and the
sampling decision. Pure: bytes and strings in, values out; no clock, no I/O.

Read, in order of precedence (the first valid one wins):
- W3C `traceparent: VV-TRACEID(32 hex)-PARENTID(16 hex)-FLAGS(2 hex)` (version ff
  and all-zero ids are invalid; a later version may append `-...`), with its
  `tracestate` carried on as it came (bounded);
- B3 single `b3: TRACEID-SPANID[-SAMPLED[-PARENTSPANID]]` or just `b3: 0|1|d`;
- B3 multi `x-b3-traceid` / `x-b3-spanid` / `x-b3-sampled` / `x-b3-flags`.
A 64-bit B3 trace id is widened to 128 bits with zeros (as OpenTelemetry does).
Anything malformed reads as no context: a new trace starts, nothing is refused.

Written upstream (`headers`): `traceparent`, `tracestate` (when there is one),
`b3`, `x-b3-traceid`, `x-b3-spanid`, `x-b3-parentspanid` (when there is one),
`x-b3-sampled`, and `x-request-id`.

Sampling: an incoming decision (W3C sampled flag, B3 sampled or debug) is
honoured; without one, the trace is sampled with probability `percent`/100.

Must not know about exchanges, spans or export.
"""

from __future__ import annotations

import re
from random import getrandbits
from typing import Final

from trellis.proxy.http1.head import Headers

# Module constants are Final: compiled, they are read without a globals lookup (the
# per-request path of every traced request runs through here).
UNDECIDED: Final = -1  # no sampling decision came with the request
MAX_TRACESTATE: Final = 512  # W3C: at least 512 characters must be carried on; more is cut
MAX_REQUEST_ID: Final = 128  # a longer x-request-id is replaced by a new one
# version-traceid-parentid-flags; a version after 00 may add "-..." (checked below).
_TRACEPARENT: Final = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?"
)

# The fields read, by length first (a cheap test for every header of a request).
_FIELDS: Final = frozenset(
    {
        b"traceparent",
        b"tracestate",
        b"b3",
        b"x-b3-traceid",
        b"x-b3-spanid",
        b"x-b3-sampled",
        b"x-b3-flags",
        b"x-b3-parentspanid",
        b"x-request-id",
    }
)
_LENGTHS: Final = frozenset(len(f) for f in _FIELDS)
# What is written upstream replaces what came: these are never forwarded as they were.
PROPAGATION_FIELDS: Final = _FIELDS
_HEX_DIGITS: Final = b"0123456789abcdef"
_ZERO_TRACE: Final = "0" * 32
_ZERO_SPAN: Final = "0" * 16


class TraceContext:
    """What a request carried: a trace to join (trace_id "" when none) and its request id."""

    __slots__ = ("b3_multi", "parent_id", "request_id", "sampled", "trace_id", "tracestate")

    def __init__(
        self,
        trace_id: str = "",
        parent_id: str = "",
        sampled: int = UNDECIDED,
        tracestate: str = "",
        request_id: str = "",
    ) -> None:
        self.trace_id = trace_id  # 32 lower-case hex, or "" (start a trace)
        self.parent_id = parent_id  # 16 lower-case hex, or ""
        self.sampled = sampled  # 1, 0, or UNDECIDED
        self.tracestate = tracestate
        self.request_id = request_id  # "" when missing or unusable
        self.b3_multi = False  # the caller wrote B3 multi (x-b3-*): written on for it

    def __repr__(self) -> str:
        return (
            f"TraceContext({self.trace_id!r}, {self.parent_id!r}, {self.sampled}, "
            f"{self.tracestate!r}, {self.request_id!r})"
        )


def _is_hex(value: bytes) -> bool:
    """Only lower-case hex digits (W3C and B3 both require lower case)."""
    return not value.translate(None, _HEX_DIGITS)


def _trace_id(value: bytes) -> str:
    """A B3 trace id (16 or 32 lower-case hex, not all zero) as 32 hex; "" when invalid."""
    if len(value) == 16:
        value = b"0" * 16 + value
    elif len(value) != 32:
        return ""
    if not _is_hex(value):
        return ""
    text = value.decode("ascii")
    return "" if text == _ZERO_TRACE else text


def _span_id(value: bytes) -> str:
    if len(value) != 16 or not _is_hex(value):
        return ""
    text = value.decode("ascii")
    return "" if text == _ZERO_SPAN else text


def _b3_sampled(value: bytes) -> int:
    v = value.strip().lower()
    if v in (b"1", b"d", b"true"):
        return 1
    if v in (b"0", b"false"):
        return 0
    return UNDECIDED


def parse_traceparent(value: bytes) -> TraceContext | None:
    """W3C traceparent; None when invalid (the caller then starts a trace)."""
    m = _TRACEPARENT.fullmatch(value.strip())
    if m is None:
        return None
    version = m.group(1)
    if version == b"ff" or (version == b"00" and m.group(5) is not None):
        return None  # version 00 is exactly 55 characters; a later one may add "-..."
    tid = m.group(2).decode("ascii")
    pid = m.group(3).decode("ascii")
    if tid == _ZERO_TRACE or pid == _ZERO_SPAN:
        return None
    return TraceContext(tid, pid, 1 if m.group(4)[1] in b"13579bdf" else 0)


def parse_b3(value: bytes) -> TraceContext | None:
    """B3 single header; a bare sampling state gives a context without a trace id."""
    value = value.strip()
    parts = value.split(b"-")
    if len(parts) == 1:
        sampled = _b3_sampled(parts[0])
        return TraceContext(sampled=sampled) if sampled != UNDECIDED else None
    if len(parts) > 4:
        return None
    tid, sid = _trace_id(parts[0]), _span_id(parts[1])
    if not tid or not sid:
        return None
    sampled = UNDECIDED
    if len(parts) >= 3:
        sampled = _b3_sampled(parts[2])
        if sampled == UNDECIDED:
            return None
    if len(parts) == 4 and not _span_id(parts[3]):
        return None
    return TraceContext(tid, sid, sampled)


def extract(headers: Headers) -> TraceContext:
    """The trace context and request id of a request's headers (one pass over them)."""
    traceparent: bytes | None = None
    tracestate: bytes | None = None
    b3: bytes | None = None
    b3_trace: bytes | None = None
    b3_span: bytes | None = None
    b3_sampled: bytes | None = None
    b3_flags: bytes | None = None
    request_id: bytes | None = None
    for name, value in headers:
        n = len(name)  # 2, 10, 11, 12 or 18 (_LENGTHS), as machine integers compiled
        if n != 2 and (n < 10 or n > 12) and n != 18:
            continue
        low = name.lower()
        if low not in _FIELDS:
            continue
        if low == b"traceparent":
            traceparent = value if traceparent is None else b"!"  # repeated: invalid
        elif low == b"tracestate":
            tracestate = value if tracestate is None else tracestate + b"," + value
        elif low == b"b3":
            b3 = value if b3 is None else b"!"
        elif low == b"x-b3-traceid":
            b3_trace = value
        elif low == b"x-b3-spanid":
            b3_span = value
        elif low == b"x-b3-sampled":
            b3_sampled = value
        elif low == b"x-b3-flags":
            b3_flags = value
        elif low == b"x-request-id":
            request_id = value
    context: TraceContext | None = None
    rid = _request_id(request_id) if request_id is not None else ""
    if traceparent is not None and rid and _unsampled_v00(traceparent):
        # The usual request of an unsampled trace, with its request id: it goes on as it
        # came (tracer.py `passthrough`) and nobody records it, so its ids are read no
        # further (a hop that writes or records a context parses it whole).
        context = TraceContext(traceparent[3:35].decode("latin-1"), "", 0, "", rid)
        if b3_trace is not None:
            context.b3_multi = True
        return context
    if traceparent is not None:
        context = parse_traceparent(traceparent)
        if context is not None and tracestate is not None:
            context.tracestate = _tracestate(tracestate)
    if context is None and b3 is not None:
        context = parse_b3(b3)
    if context is None and (b3_trace is not None or b3_sampled is not None or b3_flags):
        context = _parse_b3_multi(b3_trace, b3_span, b3_sampled, b3_flags)
    if context is None:
        context = TraceContext()
    if b3_trace is not None:
        context.b3_multi = True
    context.request_id = rid
    return context


_UNSAMPLED_V00: Final = re.compile(rb"00-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f][02468ace]")
_ZERO_TRACE_BYTES: Final = b"0" * 32
_ZERO_SPAN_BYTES: Final = b"0" * 16


def _unsampled_v00(value: bytes) -> bool:
    """A valid version-00 traceparent whose sampled flag is 0 (the flags' last hex digit
    even): lower-case hex ids, neither all zeros. Anything else is parsed whole (and an
    invalid one starts a new trace), whatever other fields the request has."""
    return (
        len(value) == 55
        and _UNSAMPLED_V00.fullmatch(value) is not None
        and value[3:35] != _ZERO_TRACE_BYTES
        and value[36:52] != _ZERO_SPAN_BYTES
    )


def _parse_b3_multi(
    trace: bytes | None, span: bytes | None, sampled: bytes | None, flags: bytes | None
) -> TraceContext | None:
    decision = UNDECIDED
    if flags is not None and flags.strip() == b"1":
        decision = 1  # debug
    elif sampled is not None:
        decision = _b3_sampled(sampled)
    if trace is None or span is None:
        return TraceContext(sampled=decision) if decision != UNDECIDED else None
    tid, sid = _trace_id(trace.strip()), _span_id(span.strip())
    if not tid or not sid:
        return TraceContext(sampled=decision) if decision != UNDECIDED else None
    return TraceContext(tid, sid, decision)


def _tracestate(value: bytes) -> str:
    """Carried on as it came when it is printable ASCII, cut at a member boundary past
    MAX_TRACESTATE; anything else is dropped (W3C: an invalid tracestate is discarded)."""
    try:
        text = value.decode("ascii")
    except UnicodeDecodeError:
        return ""
    if not text.isprintable():
        return ""
    if len(text) > MAX_TRACESTATE:
        text = text[:MAX_TRACESTATE].rpartition(",")[0]
    return text.strip()


def _request_id(value: bytes) -> str:
    """An x-request-id kept when it is short, printable ASCII; "" (make a new one) if not.
    (The reader hands values without their surrounding whitespace.)"""
    if not value or len(value) > MAX_REQUEST_ID or not value.isascii():
        return ""
    text = value.decode("ascii")
    return text if text.isprintable() else ""


def sample(context: TraceContext, percent: float, draw: float) -> bool:
    """Whether to record spans: the incoming decision when there is one, else `draw`
    (uniform in [0, 1)) under `percent`/100."""
    if context.sampled != UNDECIDED:
        return context.sampled == 1
    return draw * 100.0 < percent


def new_trace_id() -> str:
    return "%032x" % (getrandbits(128) or 1)


def new_span_id() -> str:
    return "%016x" % (getrandbits(64) or 1)


def new_ids() -> tuple[str, str]:
    """A new trace id and span id, from one draw (48 hex digits)."""
    text = f"{getrandbits(192):048x}"
    trace_id, span_id = text[:32], text[32:]
    if trace_id == _ZERO_TRACE:
        trace_id = new_trace_id()
    if span_id == _ZERO_SPAN:
        span_id = new_span_id()
    return trace_id, span_id


_VARIANT: Final = dict(zip("0123456789abcdef", "89ab89ab89ab89ab", strict=True))


def request_id_of(trace_id: str) -> str:
    """A version 4 UUID made of a new trace's random id (its version and variant bits
    set): the request gets an id of its own at no extra draw."""
    t = trace_id
    return f"{t[:8]}-{t[8:12]}-4{t[13:16]}-{_VARIANT[t[16]]}{t[17:20]}-{t[20:]}"


def new_request_id() -> str:
    """A random (version 4) UUID, as Envoy makes them."""
    return request_id_of(f"{getrandbits(128):032x}")


def headers(
    trace_id: str,
    span_id: str,
    parent_id: str,
    sampled: bool,
    tracestate: str,
    request_id: str,
    b3_multi: bool = True,
) -> bytes:
    """The propagation fields for the next hop, as header lines (each ending CRLF):
    `span_id` is the span the next hop's work is a child of, `parent_id` that span's
    parent (B3 multi says it; "" for none). B3 multi only when `b3_multi` (the caller
    used it): every field is parsed by every hop, and B3 single says the same."""
    flag = "1" if sampled else "0"
    out = (
        f"traceparent: 00-{trace_id}-{span_id}-0{flag}\r\nb3: {trace_id}-{span_id}-{flag}\r\n"
        f"x-request-id: {request_id}\r\n"
    )
    if tracestate:
        out += f"tracestate: {tracestate}\r\n"
    if b3_multi:
        out += f"x-b3-traceid: {trace_id}\r\nx-b3-spanid: {span_id}\r\nx-b3-sampled: {flag}\r\n"
        if parent_id:
            out += f"x-b3-parentspanid: {parent_id}\r\n"
    return out.encode("ascii")
