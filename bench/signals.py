"""`python -m bench signals`: what golden-signal reports cost the control plane (in process).

Measures, on this process's core, the work the telemetry service does per Report: parse
the ProxyMessage (upb) and ingest its edges into the SignalStore (`TelemetryHub.ingest`,
what `Telemetry/Stream` calls); then a /signals query over a store as full as its cap
allows, and the memory one cell takes (tracemalloc). No network: the gRPC stream's own
cost per message (~tens of µs, like an OTLP Export's, see the tracestore section) comes
on top. Figures: CPU time (time.process_time), so another process on the core slows the
wall clock but not them much.
"""

from __future__ import annotations

import time
import tracemalloc

from bench.procs import set_affinity
from bench.report import Section
from trellis.control.signals.aggregate import BOUNDS_MS, MAX_KEYS_PER_BUCKET, SignalStore
from trellis.control.signals.stream import TelemetryHub
from trellis.telemetry_api import telemetry_pb2 as pb

REPORT_INTERVAL = 2.0


def _report(proxy: int, edges: int) -> bytes:
    buckets = [0] * (len(BOUNDS_MS) + 1)
    buckets[3], buckets[5], buckets[9] = 50, 40, 10
    return pb.ProxyMessage(
        report=pb.Report(
            interval_ms=2000,
            edges=[
                pb.EdgeDelta(
                    reporter=pb.SOURCE if i % 2 else pb.DESTINATION,
                    source=f"svc-{proxy}.ns-{proxy % 7}",
                    destination=f"svc-{i}.ns-{i % 7}",
                    mtls=True,
                    requests=100,
                    errors=2,
                    denied=0,
                    buckets=buckets,
                )
                for i in range(edges)
            ],
        )
    ).SerializeToString()


def _hub() -> tuple[TelemetryHub, object]:
    hub = TelemetryHub()
    hello = pb.Hello(node_id="sidecar~b.ns", workload="b", namespace="ns", service="b.ns",
                     bucket_bounds_ms=list(BOUNDS_MS))  # fmt: skip
    conn = hub.connect(hello, "bench", False)
    assert conn is not None
    return hub, conn


def per_report(edges: int, proxies: int, rounds: int) -> tuple[float, int]:
    """CPU µs per report of `edges` edges, `proxies` distinct senders (distinct keys)."""
    from trellis.control.signals.aggregate import Rebin

    hub, conn = _hub()
    rebin = Rebin(BOUNDS_MS)
    data = [_report(p, edges) for p in range(proxies)]
    now = time.time()
    start = time.process_time()
    n = 0
    for r in range(rounds):
        for d in data:
            message = pb.ProxyMessage()
            message.ParseFromString(d)
            hub.ingest(conn, message.report, rebin, now + r * REPORT_INTERVAL)  # type: ignore[arg-type]
            n += 1
    cpu = time.process_time() - start
    return cpu / n * 1e6, len(data[0])


def query_cost(proxies: int, edges: int) -> tuple[float, int]:
    """CPU ms of one /signals (60 s window) over `proxies` x `edges` keys in each bucket."""
    hub, conn = _hub()
    from trellis.control.signals.aggregate import Rebin

    rebin = Rebin(BOUNDS_MS)
    now = time.time() - 60
    data = [_report(p, edges) for p in range(proxies)]
    for step in range(30):  # 60 s of reports every 2 s
        for d in data:
            message = pb.ProxyMessage()
            message.ParseFromString(d)
            hub.ingest(conn, message.report, rebin, now + step * REPORT_INTERVAL)  # type: ignore[arg-type]
    start = time.process_time()
    body = hub.signals(60)
    return (time.process_time() - start) * 1000, len(body["edges"])


def bytes_per_cell(cells: int = 5000) -> float:
    store = SignalStore()
    from trellis.control.signals.aggregate import CellKey, Delta

    deltas = [
        Delta(CellKey(1, f"s{i}.ns", f"d{i}.ns", True), 1, 0, 0, [1] * (len(BOUNDS_MS) + 1))
        for i in range(cells)
    ]
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store.ingest(deltas, time.time(), 2)
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return (after - before) / cells


def run(quick: bool = False) -> Section:
    import os

    cpus = sorted(os.sched_getaffinity(0))
    set_affinity({cpus[-1]})
    rows = []
    for edges, proxies, rounds in ((10, 200, 10), (100, 100, 5), (1000, 20, 3)):
        if quick:
            rounds = 1
        us, size = per_report(edges, proxies, rounds)
        per_core = 1e6 / us
        rows.append(
            f"| {edges:,} | {size:,} | {us:,.0f} | {us / edges:.1f} | {per_core:,.0f} | "
            f"{per_core * REPORT_INTERVAL * 0.1:,.0f} |"
        )
    query_rows = []
    for proxies, edges in ((100, 20), (1000, 20)):
        ms, n = query_cost(proxies, edges)
        query_rows.append(f"| {proxies:,} x {edges} | {n:,} | {ms:,.0f} |")
    cell = bytes_per_cell()
    full = cell * MAX_KEYS_PER_BUCKET * 90 / 2**20
    markdown = "\n".join(
        [
            f"In process, pinned to core {cpus[-1]}; CPU time per report (parse + ingest). "
            f"Proxies report every {REPORT_INTERVAL:g} s.",
            "",
            "| edges per report | bytes | CPU µs per report | µs per edge | reports per "
            "CPU-second | proxies at 10% of a core |",
            "|---:|---:|---:|---:|---:|---:|",
            *rows,
            "",
            "A /signals query (60 s window; 30 reports from each proxy):",
            "",
            "| proxies x edges each | edges answered | CPU ms per query |",
            "|---:|---:|---:|",
            *query_rows,
            "",
            f"Memory: ~{cell:,.0f} bytes per cell (tracemalloc); the cap "
            f"({MAX_KEYS_PER_BUCKET:,} cells per 10 s bucket, 90 buckets) bounds the store near "
            f"{full:,.0f} MiB.",
        ]
    )
    return Section("signals", markdown)
