"""Istio's standard metrics under `trellis_`, kept per label set and rendered as Prometheus text.

What is exported (Istio's names with `istio_` renamed, Istio's types):
- HTTP, per request: `trellis_requests_total` (counter), and the histograms
  `trellis_request_duration_milliseconds`, `trellis_request_bytes`,
  `trellis_response_bytes` (body sizes), all with Envoy's default buckets, as Istio has them.
- TCP (CONNECT tunnels), per connection: `trellis_tcp_connections_opened_total`,
  `trellis_tcp_connections_closed_total`, `trellis_tcp_sent_bytes_total`,
  `trellis_tcp_received_bytes_total` (counters; bytes are added when the connection
  closes).
- `trellis_metrics_overflow_total`, `trellis_metrics_series`, `trellis_metrics_series_limit`:
  the cardinality bound at work.

Labels are Istio's (LABELS; TCP metrics have neither `response_code` nor
`grpc_response_status`, as in Istio). Their values come from configuration and
identity (workload, namespace, labels, SPIFFE principals, the cluster chosen), never
from a request's path or headers beyond the length- and charset-checked peer header.

Cardinality is bounded: at most `max_series` label sets (HTTP and TCP together) per
proxy; requests and connections past the cap are counted under one series whose
labels all say "overflow", and `trellis_metrics_overflow_total` counts them. Each HTTP
label set is 1 + 3 x 22 = 67 Prometheus series (a counter and three histograms of 19
buckets, +Inf, _sum and _count), a TCP label set 4.

Recording is a cached lookup (the recorder keeps each label set's `Series`) and a few
additions: no locks, no prometheus_client objects on the hot path.

Read API (for in-process readers such as the golden-signal pusher): `http_series()`
returns `(labels, series)` pairs, labels in LABELS order (`label_index(name)` gives a
position); a `Series` has `count`, `duration_sum` (ms) and `duration` (per-bucket,
not cumulative, counts: one per bound of BUCKETS, then the +Inf overflow bucket).
`tcp_series()` is the same for TCP_LABELS and `TcpSeries`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

# Istio's label set, in the order Istio's stats filter emits it.
LABELS: Final = (
    "reporter",
    "source_workload",
    "source_canonical_service",
    "source_canonical_revision",
    "source_workload_namespace",
    "source_principal",
    "source_app",
    "source_version",
    "source_cluster",
    "destination_workload",
    "destination_workload_namespace",
    "destination_principal",
    "destination_app",
    "destination_version",
    "destination_service",
    "destination_canonical_service",
    "destination_canonical_revision",
    "destination_service_name",
    "destination_service_namespace",
    "destination_cluster",
    "request_protocol",
    "response_code",
    "grpc_response_status",
    "response_flags",
    "connection_security_policy",
)
TCP_LABELS: Final = tuple(n for n in LABELS if n not in ("response_code", "grpc_response_status"))
# Envoy's default histogram buckets, which Istio's three histograms use (ms and bytes).
BUCKETS: Final = (
    0.5,
    1,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    30000,
    60000,
    300000,
    600000,
    1800000,
    3600000,
)
BUCKETS_MS = BUCKETS  # the name the duration histogram's readers know
DEFAULT_MAX_SERIES: Final = 300
MAX_SERIES = DEFAULT_MAX_SERIES
_BOUNDS: Final[tuple[float, ...]] = tuple(float(b) for b in BUCKETS)
_BUCKET_COUNT: Final = len(BUCKETS)
OVERFLOW: Final = tuple("overflow" for _ in LABELS)
TCP_OVERFLOW: Final = tuple("overflow" for _ in TCP_LABELS)

Labels = tuple[str, ...]


def label_index(name: str) -> int:
    """Where label `name` sits in an HTTP series' labels (ValueError if it is not one)."""
    return LABELS.index(name)


def bucket_of(value: float) -> int:
    """The first bucket whose bound is not below `value` (bisect_left); _BUCKET_COUNT for
    +Inf. Scans up from the smallest: most values land in the first buckets, and compiled
    this beats a call into the bisect module."""
    i = 0
    while i < _BUCKET_COUNT and _BOUNDS[i] < value:
        i += 1
    return i


class Series:
    """One HTTP label set's counters. Callers that see the same labels again keep the object
    (the recorder caches it) and call `add`: no hashing of the labels per request."""

    __slots__ = (
        "count",
        "duration",
        "duration_sum",
        "req_bytes",
        "req_sizes",
        "resp_bytes",
        "resp_sizes",
    )

    def __init__(self) -> None:
        self.count = 0
        self.duration_sum = 0.0  # ms
        self.duration = [0] * (_BUCKET_COUNT + 1)  # per bucket, not cumulative; last: +Inf
        self.req_bytes = 0
        self.req_sizes = [0] * (_BUCKET_COUNT + 1)
        self.resp_bytes = 0
        self.resp_sizes = [0] * (_BUCKET_COUNT + 1)

    @property
    def buckets(self) -> list[int]:
        """The duration histogram's per-bucket counts (the name its first readers know)."""
        return self.duration

    def add(self, duration_ms: float, req_bytes: int, resp_bytes: int) -> None:
        self.count += 1
        self.duration_sum += duration_ms
        self.duration[bucket_of(duration_ms)] += 1
        self.req_bytes += req_bytes
        self.req_sizes[bucket_of(float(req_bytes))] += 1
        self.resp_bytes += resp_bytes
        self.resp_sizes[bucket_of(float(resp_bytes))] += 1


class TcpSeries:
    """One TCP label set's counters: connections opened and closed, bytes each way."""

    __slots__ = ("closed", "opened", "received", "sent")

    def __init__(self) -> None:
        self.opened = 0
        self.closed = 0
        self.sent = 0  # towards the downstream (the response direction)
        self.received = 0  # from the downstream (the request direction)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(names: tuple[str, ...], labels: Labels) -> str:
    return ",".join(f'{k}="{_escape(v)}"' for k, v in zip(names, labels, strict=True))


# `,le="0.5"} ` ... per bound, made once: formatting floats per line was a third of a scrape.
_LE: Final = tuple(f',le="{float(b):g}"}} ' for b in BUCKETS)


def _histogram(name: str, text: str, counts: list[int], total: float, count: int) -> str:
    """One label set's histogram lines (without the last newline), built from pieces."""
    head = name + "_bucket{" + text
    out: list[str] = []
    cumulative = 0
    for n, le in zip(counts, _LE, strict=False):  # the +Inf count is `count`
        cumulative += n
        out.append(head)
        out.append(le)
        out.append(str(cumulative))
        out.append("\n")
    out.append(f'{head},le="+Inf"}} {count}\n{name}_sum{{{text}}} {total:.3f}\n')
    out.append(f"{name}_count{{{text}}} {count}")
    return "".join(out)


class RequestMetrics:
    """The proxy's metric registry: HTTP and TCP series, authorization counts, gauges."""

    def __init__(self, max_series: int = DEFAULT_MAX_SERIES) -> None:
        if max_series < 1:
            raise ValueError(f"the metrics series cap must be at least 1, not {max_series}")
        self.max_series = max_series
        self._series: dict[Labels, Series] = {}
        self._tcp: dict[Labels, TcpSeries] = {}
        # (outcome, policy) -> count: RBAC denials and dry-run ("shadow") denials.
        self.authz: dict[tuple[str, str], int] = {}
        self.gauges: list[Callable[[], Iterable[str]]] = []

    def _full(self) -> bool:
        return len(self._series) + len(self._tcp) >= self.max_series

    def series(self, labels: Labels) -> Series:
        """The series of `labels`, made on first use; the overflow series past the cap."""
        series = self._series.get(labels)
        if series is None:
            if self._full():
                labels = OVERFLOW
                series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = Series()
        return series

    def tcp_series(self, labels: Labels) -> TcpSeries:
        """The TCP series of `labels` (TCP_LABELS order); the overflow series past the cap."""
        series = self._tcp.get(labels)
        if series is None:
            if self._full():
                labels = TCP_OVERFLOW
                series = self._tcp.get(labels)
            if series is None:
                series = self._tcp[labels] = TcpSeries()
        return series

    def record(self, labels: Labels, duration_ms: float, req_bytes: int, resp_bytes: int) -> None:
        self.series(labels).add(duration_ms, req_bytes, resp_bytes)

    @property
    def overflowed(self) -> int:
        """Requests counted under the overflow labels."""
        series = self._series.get(OVERFLOW)
        return series.count if series is not None else 0

    def count_authz(self, outcome: str, policy: str) -> None:
        key = (outcome, policy if len(self.authz) < self.max_series else "overflow")
        self.authz[key] = self.authz.get(key, 0) + 1

    # -- read API -------------------------------------------------------------------------

    def http_series(self) -> list[tuple[Labels, Series]]:
        """Every HTTP label set and its series (a copy of the index; the series are live)."""
        return list(self._series.items())

    def tcp_series_items(self) -> list[tuple[Labels, TcpSeries]]:
        """Every TCP label set (TCP_LABELS order) and its series."""
        return list(self._tcp.items())

    def total(self, **match: str) -> int:
        """Requests counted in series whose labels match (for tests and the CLI)."""
        index = {k: LABELS.index(k) for k in match}
        return sum(
            s.count
            for labels, s in self._series.items()
            if all(labels[i] == match[k] for k, i in index.items())
        )

    # -- Prometheus text ------------------------------------------------------------------

    def render(self) -> str:
        items = sorted(self._series.items())
        texts = [_label_text(LABELS, labels) for labels, _ in items]
        lines = [
            "# HELP trellis_requests_total Requests handled, by reporter, source, destination"
            " and response (Istio's istio_requests_total).",
            "# TYPE trellis_requests_total counter",
        ]
        for text, (_, s) in zip(texts, items, strict=True):
            lines.append(f"trellis_requests_total{{{text}}} {s.count}")
        for name, help_ in (
            ("trellis_request_duration_milliseconds", "Request duration in milliseconds."),
            ("trellis_request_bytes", "Request body size in bytes."),
            ("trellis_response_bytes", "Response body size in bytes."),
        ):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} histogram"]
            for text, (_, s) in zip(texts, items, strict=True):
                if name == "trellis_request_duration_milliseconds":
                    counts, total = s.duration, s.duration_sum
                elif name == "trellis_request_bytes":
                    counts, total = s.req_sizes, float(s.req_bytes)
                else:
                    counts, total = s.resp_sizes, float(s.resp_bytes)
                lines.append(_histogram(name, text, counts, total, s.count))
        tcp = sorted(self._tcp.items())
        tcp_texts = [_label_text(TCP_LABELS, labels) for labels, _ in tcp]
        for name, attr, help_ in (
            ("trellis_tcp_connections_opened_total", "opened", "TCP connections opened."),
            ("trellis_tcp_connections_closed_total", "closed", "TCP connections closed."),
            (
                "trellis_tcp_sent_bytes_total",
                "sent",
                "Bytes sent to the downstream over TCP connections (added at close).",
            ),
            (
                "trellis_tcp_received_bytes_total",
                "received",
                "Bytes received from the downstream over TCP connections (added at close).",
            ),
        ):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
            for text, (_, t) in zip(tcp_texts, tcp, strict=True):
                lines.append(f"{name}{{{text}}} {getattr(t, attr)}")
        lines += [
            "# HELP trellis_authz_decisions_total Inbound requests denied by an authorization"
            " policy (outcome=denied), or that a dry-run policy would have denied"
            " (outcome=shadow_denied).",
            "# TYPE trellis_authz_decisions_total counter",
        ]
        for (outcome, policy), n in sorted(self.authz.items()):
            text = f'outcome="{outcome}",policy="{_escape(policy)}"'
            lines.append(f"trellis_authz_decisions_total{{{text}}} {n}")
        lines += [
            "# HELP trellis_metrics_overflow_total Requests and TCP connections counted under"
            ' the "overflow" labels because the series cap was reached.',
            "# TYPE trellis_metrics_overflow_total counter",
            f"trellis_metrics_overflow_total {self._overflow_count()}",
            "# HELP trellis_metrics_series Label sets kept (HTTP and TCP).",
            "# TYPE trellis_metrics_series gauge",
            f"trellis_metrics_series {len(self._series) + len(self._tcp)}",
            "# HELP trellis_metrics_series_limit The per-proxy cap on label sets.",
            "# TYPE trellis_metrics_series_limit gauge",
            f"trellis_metrics_series_limit {self.max_series}",
        ]
        for gauge in self.gauges:
            lines.extend(gauge())
        return "\n".join(lines) + "\n"

    def _overflow_count(self) -> int:
        tcp = self._tcp.get(TCP_OVERFLOW)
        return self.overflowed + (tcp.opened if tcp is not None else 0)
