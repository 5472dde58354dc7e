"""What the trace store keeps of a span and of a trace, and what each costs in memory.

A span is kept as the protobuf bytes it arrived as (`raw`: decoded again only when
someone looks at its trace) plus the few fields the tree and the indexes need. The
resource and instrumentation scope it came with are kept once for all the spans that
share them (`Origin`): a sidecar sends the same resource with every batch.

Costs are what the store charges against its bound: the bytes kept plus a fixed
overhead per object for the Python objects around them (the slotted records, the
ints, the dict and index entries). The overheads were measured with tracemalloc on
CPython 3.11 (`tests/control/traces/test_store_memory.py` holds the charges to the
memory really allocated, both ways), so a store charged N bytes holds about N.

Pure data; knows nothing of the store's indexes or of OTLP beyond the bytes.
"""

from __future__ import annotations

from typing import Final

# Per object, beyond the bytes counted by length (see the module docstring).
SPAN_OVERHEAD: Final = 370  # SpanRecord, its ids and ints, the raw bytes' header, a dict slot
TRACE_OVERHEAD: Final = 480  # TraceRecord, its id, span dict, the trace table and order slots
SERVICE_OVERHEAD: Final = 60  # a trace's entry in one service's index, and in its tuple
STATUS_OVERHEAD: Final = 40  # a trace's entry in one status index
ORIGIN_OVERHEAD: Final = 400  # Origin, its key tuple and table slot, the service string

# Status classes a trace is indexed by: `1xx`..`5xx` (a span's HTTP response status)
# and `error` (a span whose status is ERROR, or 5xx).
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "error")
ERROR_BIT: Final = 1 << 6


def status_bits(http_status: int, error: bool) -> int:
    """The status classes of one span, as bits: 1 << (status // 100), and ERROR_BIT."""
    bits = 1 << (http_status // 100) if 100 <= http_status < 600 else 0
    if error or http_status >= 500:
        bits |= ERROR_BIT
    return bits


def class_bit(name: str) -> int:
    """The bit of a status class name (`5xx`, `error`); KeyError for others."""
    if name == "error":
        return ERROR_BIT
    if name in STATUS_CLASSES:
        return 1 << int(name[0])
    raise KeyError(name)


def class_names(bits: int) -> list[str]:
    return [name for name in STATUS_CLASSES if bits & class_bit(name)]


class Origin:
    """A resource and an instrumentation scope (their protobuf bytes), shared by the spans that
    came with them; `spans` counts the stored spans that point here."""

    __slots__ = ("key", "resource", "scope", "service", "spans")

    def __init__(self, resource: bytes, scope: bytes, service: str) -> None:
        self.key = (resource, scope)
        self.resource = resource
        self.scope = scope
        self.service = service  # the resource's service.name
        self.spans = 0

    @property
    def cost(self) -> int:
        return ORIGIN_OVERHEAD + len(self.resource) + len(self.scope) + len(self.service)


class SpanRecord:
    __slots__ = ("end", "origin", "parent_id", "raw", "span_id", "start")

    def __init__(
        self, span_id: bytes, parent_id: bytes, start: int, end: int, origin: Origin, raw: bytes
    ) -> None:
        self.span_id = span_id
        self.parent_id = parent_id  # b"" for a root
        self.start = start  # ns since the epoch
        self.end = end  # never before start
        self.origin = origin
        self.raw = raw  # the opentelemetry.proto.trace.v1.Span, serialized

    @property
    def cost(self) -> int:
        return SPAN_OVERHEAD + len(self.raw)


class TraceRecord:
    """One trace's spans (by span id, in arrival order) and what the indexes know of it."""

    __slots__ = (
        "bits",
        "cost",
        "duration_ns",
        "end",
        "live",
        "root",
        "services",
        "spans",
        "start",
        "trace_id",
    )

    def __init__(self, trace_id: bytes) -> None:
        self.trace_id = trace_id
        self.spans: dict[bytes, SpanRecord] = {}
        self.start = 0  # the earliest start of its spans
        self.end = 0  # the latest end
        self.root: SpanRecord | None = None  # the earliest span without a parent
        self.bits = 0  # status classes of its spans (status_bits)
        self.services: tuple[str, ...] = ()  # in the order they were seen
        self.cost = TRACE_OVERHEAD
        self.live = True  # False once evicted
        # The root span's duration; the trace's extent while it has no root (kept up to date
        # by `add`: searches read it for every trace).
        self.duration_ns = 0

    def add(self, span: SpanRecord) -> None:
        if not self.spans:
            self.start, self.end = span.start, span.end
        else:
            self.start = min(self.start, span.start)
            self.end = max(self.end, span.end)
        self.spans[span.span_id] = span
        self.cost += span.cost
        if not span.parent_id and (self.root is None or span.start < self.root.start):
            self.root = span
        root = self.root
        self.duration_ns = root.end - root.start if root is not None else self.end - self.start

    @property
    def error(self) -> bool:
        return bool(self.bits & ERROR_BIT)
