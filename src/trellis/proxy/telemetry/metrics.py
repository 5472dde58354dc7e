"""Request metrics in Istio's shape, rendered as Prometheus text on the admin port.

One series per label set: `trellis_requests_total`, the histogram
`trellis_request_duration_milliseconds` (Istio's buckets), and the request
and response byte totals. Labels are Istio's names (`reporter`,
`source_workload`, `destination_service`, `response_code`, `response_flags`,
`connection_security_policy`, ...). Recording is a dict lookup and a few
additions: no locks, no prometheus_client objects on the hot path.

Cardinality is bounded: at most MAX_SERIES label sets; later ones are
counted under one series whose labels all say "overflow" (and
`trellis_metrics_overflow_total` says it happened).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Final

LABELS = (
    "reporter",
    "source_workload",
    "source_workload_namespace",
    "source_app",
    "destination_workload",
    "destination_workload_namespace",
    "destination_app",
    "destination_service",
    "destination_service_name",
    "destination_service_namespace",
    "request_protocol",
    "response_code",
    "response_flags",
    "connection_security_policy",
)
BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
MAX_SERIES = 2000
_BOUNDS: Final[tuple[float, ...]] = tuple(float(b) for b in BUCKETS_MS)
_BUCKET_COUNT: Final = len(BUCKETS_MS)
_OVERFLOW = tuple("overflow" for _ in LABELS)

Labels = tuple[str, ...]


class Series:
    """One label set's counters. Callers that see the same labels again keep the object
    (`RequestMetrics.series`) and call `add`: no hashing of the labels per request."""

    __slots__ = ("buckets", "count", "req_bytes", "resp_bytes", "sum_ms")

    def __init__(self) -> None:
        self.count = 0
        self.sum_ms = 0.0
        self.buckets = [0] * (len(BUCKETS_MS) + 1)
        self.req_bytes = 0
        self.resp_bytes = 0

    def add(self, duration_ms: float, req_bytes: int, resp_bytes: int) -> None:
        self.count += 1
        self.sum_ms += duration_ms
        # The first bucket whose bound is not below the duration (bisect_left), scanning
        # up from the smallest: most requests land in the first buckets, and compiled this
        # beats a call into the bisect module.
        i = 0
        while i < _BUCKET_COUNT and _BOUNDS[i] < duration_ms:
            i += 1
        self.buckets[i] += 1
        self.req_bytes += req_bytes
        self.resp_bytes += resp_bytes


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _label_text(labels: Labels, extra: str = "") -> str:
    parts = [f'{k}="{_escape(v)}"' for k, v in zip(LABELS, labels, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}"


class RequestMetrics:
    def __init__(self) -> None:
        self._series: dict[Labels, Series] = {}
        # (outcome, policy) -> count: RBAC denials and dry-run ("shadow") denials.
        self.authz: dict[tuple[str, str], int] = {}
        self.gauges: list[Callable[[], Iterable[str]]] = []

    def series(self, labels: Labels) -> Series:
        """The series of `labels`, made on first use; the overflow series past MAX_SERIES."""
        series = self._series.get(labels)
        if series is None:
            if len(self._series) >= MAX_SERIES:
                labels = _OVERFLOW
                series = self._series.get(labels)
            if series is None:
                series = self._series[labels] = Series()
        return series

    def record(self, labels: Labels, duration_ms: float, req_bytes: int, resp_bytes: int) -> None:
        self.series(labels).add(duration_ms, req_bytes, resp_bytes)

    @property
    def overflowed(self) -> int:
        """Requests counted under the overflow labels."""
        series = self._series.get(_OVERFLOW)
        return series.count if series is not None else 0

    def count_authz(self, outcome: str, policy: str) -> None:
        key = (outcome, policy if len(self.authz) < MAX_SERIES else "overflow")
        self.authz[key] = self.authz.get(key, 0) + 1

    def total(self, **match: str) -> int:
        """Requests counted in series whose labels match (for tests and the CLI)."""
        index = {k: LABELS.index(k) for k in match}
        return sum(
            s.count
            for labels, s in self._series.items()
            if all(labels[i] == match[k] for k, i in index.items())
        )

    def render(self) -> str:
        lines = [
            "# HELP trellis_requests_total Requests, by source, destination and response.",
            "# TYPE trellis_requests_total counter",
        ]
        items = sorted(self._series.items())
        for labels, s in items:
            lines.append(f"trellis_requests_total{_label_text(labels)} {s.count}")
        lines += [
            "# HELP trellis_request_duration_milliseconds Request duration.",
            "# TYPE trellis_request_duration_milliseconds histogram",
        ]
        for labels, s in items:
            cumulative = 0
            for bound, n in zip(BUCKETS_MS, s.buckets, strict=False):
                cumulative += n
                le = f'le="{bound:g}"'
                lines.append(
                    f"trellis_request_duration_milliseconds_bucket{_label_text(labels, le)}"
                    f" {cumulative}"
                )
            inf = 'le="+Inf"'
            lines.append(
                f"trellis_request_duration_milliseconds_bucket{_label_text(labels, inf)} {s.count}"
            )
            text = _label_text(labels)
            lines.append(f"trellis_request_duration_milliseconds_sum{text} {s.sum_ms:.3f}")
            lines.append(f"trellis_request_duration_milliseconds_count{text} {s.count}")
        for name, attr, help_ in (
            ("trellis_request_bytes_total", "req_bytes", "Request body bytes."),
            ("trellis_response_bytes_total", "resp_bytes", "Response body bytes."),
        ):
            lines += [f"# HELP {name} {help_}", f"# TYPE {name} counter"]
            for labels, s in items:
                lines.append(f"{name}{_label_text(labels)} {getattr(s, attr)}")
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
            "# HELP trellis_metrics_overflow_total Requests counted under overflow labels.",
            "# TYPE trellis_metrics_overflow_total counter",
            f"trellis_metrics_overflow_total {self.overflowed}",
        ]
        for gauge in self.gauges:
            lines.extend(gauge())
        return "\n".join(lines) + "\n"
