"""Golden signals: the proxies' report deltas, aggregated into time buckets (pure, no clock).

Theory of operation:
- Each proxy sends, every few seconds, the deltas of its per-edge counters: requests,
  5xx, 403-by-RBAC and latency histogram buckets, once per (reporter, source,
  destination, mTLS). `ingest` adds them to the bucket of `now` (BUCKET_SECONDS wide;
  KEEP_BUCKETS kept, 15 minutes), re-binned onto BOUNDS_MS (Istio's latency buckets: a
  proxy's bounds, sent in its Hello, are mapped once per stream by `Rebin`).
- A bucket holds at most MAX_KEYS_PER_BUCKET cells; later keys are counted in
  `overflow` and dropped (the memory bound: KEEP_BUCKETS x MAX_KEYS_PER_BUCKET cells).
- Both ends of a call report it: the caller's outbound side (SOURCE) and the callee's
  inbound side (DESTINATION). An edge's figures come from SOURCE reports when the window
  has any (they also count what failed before reaching the callee: no route, no healthy
  upstream, timeouts), else from DESTINATION reports (a caller outside the mesh, or a
  caller whose proxy does not report). "denied" always comes from DESTINATION reports:
  authorization happens there. A service's figures are the sum of its incoming edges.
- rps = requests / the time the window's reports cover (never more than the window);
  quantiles are interpolated in the merged histogram, as Prometheus'
  histogram_quantile does.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

# Istio's default buckets for request durations (ms); one more bucket past the last bound.
BOUNDS_MS: Final = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000)
BUCKET_SECONDS: Final = 10
KEEP_BUCKETS: Final = 90  # 15 minutes
MAX_KEYS_PER_BUCKET: Final = 5000  # x KEEP_BUCKETS x ~300 bytes: the store stays under ~130 MiB
MIN_WINDOW: Final = 10
MAX_WINDOW: Final = KEEP_BUCKETS * BUCKET_SECONDS
UNKNOWN: Final = "unknown"

SOURCE: Final = 1
DESTINATION: Final = 2


@dataclass(frozen=True, slots=True)
class CellKey:
    reporter: int  # SOURCE or DESTINATION
    source: str
    destination: str
    mtls: bool


class Cell:
    """One key's counters in one bucket."""

    __slots__ = ("buckets", "denied", "errors", "mtls_requests", "requests", "since")

    def __init__(self, since: float) -> None:
        self.requests = 0
        self.errors = 0
        self.denied = 0
        self.mtls_requests = 0
        self.buckets = [0] * (len(BOUNDS_MS) + 1)
        self.since = since  # the earliest time the reports added here cover


@dataclass(frozen=True, slots=True)
class Delta:
    """One edge's counters from one report, already re-binned onto BOUNDS_MS."""

    key: CellKey
    requests: int
    errors: int
    denied: int
    buckets: Sequence[int]


class Rebin:
    """Maps a proxy's latency buckets onto BOUNDS_MS: each of its buckets goes to the first of
    ours whose bound is not below its own (exact when the bounds are the same)."""

    __slots__ = ("targets",)

    def __init__(self, bounds_ms: Sequence[float]) -> None:
        targets = []
        for bound in bounds_ms:
            i = 0
            while i < len(BOUNDS_MS) and BOUNDS_MS[i] < bound:
                i += 1
            targets.append(i)
        targets.append(len(BOUNDS_MS))  # past the proxy's last bound: past ours
        self.targets = targets

    def apply(self, counts: Sequence[int]) -> list[int]:
        out = [0] * (len(BOUNDS_MS) + 1)
        targets = self.targets
        last = len(targets) - 1
        for i, n in enumerate(counts):
            if n:
                out[targets[min(i, last)]] += n
        return out


@dataclass(slots=True)
class Bucket:
    start: int
    cells: dict[CellKey, Cell] = field(default_factory=dict)


def quantile(q: float, buckets: Sequence[int]) -> float | None:
    """The q-quantile (ms) of a histogram over BOUNDS_MS, linear within a bucket; None if empty.
    In the bucket past the last bound, the last bound (what Prometheus answers too)."""
    total = sum(buckets)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, n in enumerate(buckets):
        if n and seen + n >= rank:
            if i >= len(BOUNDS_MS):
                return float(BOUNDS_MS[-1])
            lo = 0.0 if i == 0 else float(BOUNDS_MS[i - 1])
            hi = float(BOUNDS_MS[i])
            return lo + (hi - lo) * (rank - seen) / n
        seen += n
    return float(BOUNDS_MS[-1])


class Totals:
    """Counters summed over cells (for one edge, service or time step)."""

    __slots__ = ("buckets", "denied", "errors", "mtls_requests", "requests", "since")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.denied = 0
        self.mtls_requests = 0
        self.buckets = [0] * (len(BOUNDS_MS) + 1)
        self.since = math.inf

    def add(self, cell: Cell | Totals) -> None:
        self.requests += cell.requests
        self.errors += cell.errors
        self.denied += cell.denied
        self.mtls_requests += cell.mtls_requests
        b = self.buckets
        for i, n in enumerate(cell.buckets):
            b[i] += n
        self.since = min(self.since, cell.since)

    def figures(self, seconds: float) -> dict[str, Any]:
        """rps, success rate, p50/p99 and counts over `seconds`."""
        requests = self.requests
        return {
            "rps": round(requests / seconds, 3) if seconds > 0 else 0.0,
            "success_rate": round(1 - self.errors / requests, 4) if requests else None,
            "p50_ms": _ms(quantile(0.5, self.buckets)),
            "p99_ms": _ms(quantile(0.99, self.buckets)),
            "requests": requests,
        }


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class SignalStore:
    """The buckets of the last KEEP_BUCKETS x BUCKET_SECONDS seconds. Not thread-safe: used on
    the control plane's event loop."""

    def __init__(
        self,
        *,
        bucket_seconds: int = BUCKET_SECONDS,
        keep_buckets: int = KEEP_BUCKETS,
        max_keys_per_bucket: int = MAX_KEYS_PER_BUCKET,
    ) -> None:
        self.bucket_seconds = bucket_seconds
        self.keep_buckets = keep_buckets
        self.max_keys = max_keys_per_bucket
        self._buckets: deque[Bucket] = deque()
        self.overflow = 0  # deltas dropped: their bucket was full
        self.ingested = 0  # deltas added

    # -- writing ---------------------------------------------------------------------------

    def _bucket(self, now: float) -> Bucket:
        start = int(now // self.bucket_seconds) * self.bucket_seconds
        buckets = self._buckets
        if buckets and buckets[-1].start == start:
            return buckets[-1]
        if buckets and buckets[-1].start > start:  # the clock went back: keep adding to the last
            return buckets[-1]
        bucket = Bucket(start)
        buckets.append(bucket)
        self._expire(now)
        return bucket

    def _expire(self, now: float) -> None:
        oldest = now - self.keep_buckets * self.bucket_seconds
        buckets = self._buckets
        while buckets and buckets[0].start + self.bucket_seconds <= oldest:
            buckets.popleft()

    def ingest(self, deltas: Iterable[Delta], now: float, interval_s: float) -> None:
        """Add one report's deltas, covering the `interval_s` seconds before `now`."""
        bucket = self._bucket(now)
        cells = bucket.cells
        since = now - max(0.0, interval_s)
        for d in deltas:
            cell = cells.get(d.key)
            if cell is None:
                if len(cells) >= self.max_keys:
                    self.overflow += 1
                    continue
                cell = cells[d.key] = Cell(since)
            elif since < cell.since:
                cell.since = since
            cell.requests += d.requests
            cell.errors += d.errors
            cell.denied += d.denied
            if d.key.mtls:
                cell.mtls_requests += d.requests
            b = cell.buckets
            for i, n in enumerate(d.buckets):
                b[i] += n
            self.ingested += 1

    # -- reading ---------------------------------------------------------------------------

    def _window(self, window: float, now: float) -> tuple[float, list[Bucket]]:
        self._expire(now)
        start = int((now - window) // self.bucket_seconds) * self.bucket_seconds
        return float(start), [b for b in self._buckets if b.start >= start and b.start <= now]

    def signals(self, window: float, now: float) -> dict[str, Any]:
        """Per service and per edge over the last `window` seconds (API_SIGNALS's shapes, without
        `generated_at` and `proxies_reporting`, which the caller knows)."""
        start, buckets = self._window(window, now)
        by_reporter: dict[tuple[int, str, str], Totals] = {}
        for bucket in buckets:
            for key, cell in bucket.cells.items():
                k = (key.reporter, key.source, key.destination)
                totals = by_reporter.get(k)
                if totals is None:
                    totals = by_reporter[k] = Totals()
                totals.add(cell)
        edges: dict[tuple[str, str], Totals] = {}
        denied: dict[str, int] = {}
        names: set[str] = set()
        for (reporter, source, destination), totals in by_reporter.items():
            names.add(source)
            names.add(destination)
            if reporter == DESTINATION:
                denied[destination] = denied.get(destination, 0) + totals.denied
                if (SOURCE, source, destination) in by_reporter:
                    continue  # the caller reported this edge: its figures win
            edges[(source, destination)] = totals
        names.discard(UNKNOWN)
        services: dict[str, Totals] = {name: Totals() for name in names}
        for (_, destination), totals in edges.items():
            services.setdefault(destination, Totals()).add(totals)

        def seconds(t: Totals) -> float:
            return max(1.0, now - max(start, t.since)) if t.since != math.inf else float(window)

        edge_json = [
            {
                "source": source,
                "destination": destination,
                **t.figures(min(window, seconds(t))),
                "mtls": t.requests > 0 and t.mtls_requests == t.requests,
            }
            for (source, destination), t in sorted(edges.items())
        ]
        service_json = []
        for name, t in sorted(services.items()):
            figures = t.figures(min(window, seconds(t)))
            figures["errors"] = t.errors
            figures["denied"] = denied.get(name, 0)
            service_json.append({"service": name, **figures})
        service_json.sort(key=lambda s: (-s["requests"], s["service"]))
        edge_json.sort(key=lambda e: (-e["requests"], e["source"], e["destination"]))
        return {"window_seconds": int(window), "services": service_json, "edges": edge_json}

    def history(
        self,
        minutes: float,
        now: float,
        *,
        service: str | None = None,
        source: str | None = None,
        destination: str | None = None,
    ) -> dict[str, Any]:
        """One point per bucket over the last `minutes`: a service's incoming traffic, or one
        edge's (source and/or destination given). Buckets without data are points with 0 rps."""
        start, buckets = self._window(minutes * 60, now)
        step = self.bucket_seconds
        points = []
        by_start = {b.start: b for b in buckets}
        t = int(start)
        while t <= now:
            bucket = by_start.get(t)
            chosen = Totals()
            if bucket is not None:
                chosen = _step_totals(bucket, service, source, destination)
            elapsed = min(step, max(1.0, now - t))
            figures = chosen.figures(elapsed)
            points.append(
                {
                    "t": t,
                    "rps": figures["rps"],
                    "success_rate": figures["success_rate"],
                    "p50_ms": figures["p50_ms"],
                    "p99_ms": figures["p99_ms"],
                }
            )
            t += step
        return {"step_seconds": step, "points": points}

    def statistics(self) -> dict[str, int]:
        return {
            "buckets": len(self._buckets),
            "cells": sum(len(b.cells) for b in self._buckets),
            "deltasIngested": self.ingested,
            "deltasOverflowed": self.overflow,
        }


def _step_totals(
    bucket: Bucket, service: str | None, source: str | None, destination: str | None
) -> Totals:
    """One bucket's figures for a service (its incoming edges) or an edge, with the same
    source-over-destination rule as `signals`."""
    by_edge: dict[tuple[int, str, str], Totals] = {}
    for key, cell in bucket.cells.items():
        if service is not None and key.destination != service:
            continue
        if source is not None and key.source != source:
            continue
        if destination is not None and key.destination != destination:
            continue
        k = (key.reporter, key.source, key.destination)
        totals = by_edge.get(k)
        if totals is None:
            totals = by_edge[k] = Totals()
        totals.add(cell)
    out = Totals()
    for (reporter, src, dst), totals in by_edge.items():
        if reporter == DESTINATION and (SOURCE, src, dst) in by_edge:
            continue
        out.add(totals)
    return out
