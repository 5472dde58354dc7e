"""Tracing's cost in the sidecar pair: max throughput and RSS with tracing off, at 1% and at
100% sampling (metrics on in all three), as ratios to off.

The pair is `bench.sidecars.SidecarPair` with mesh mTLS (as `trellis run` sidecars
are), the backend HAProxy, the load wrk (1 thread, 64 connections), pinned as in
`bench.dataplane` (load and control plane on one core, backend and both sidecars
on the other). Spans go to the pair's own control plane (the default receiver), on
the load core. The settings run interleaved, ROUNDS times each (a drift of the
shared machine then hits all three alike); a setting's figure is its median.
Each run also reads the sidecars' `/stats`: spans exported, dropped (queue full
or a failed export). Targets (issue 10): 1% costs ≤ 3% of max throughput, 100%
≤ 25%, RSS ≤ 60 MB.
"""

from __future__ import annotations

import http.client
import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median
from typing import Any

from bench import haproxy, sidecars, wrk
from bench.dataplane import _check, _wait_listening
from bench.procs import Cores, free_port, pin_this_process, rss_bytes
from bench.report import Section

SETTINGS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("off", {"enabled": False}),
    ("1%", {"sampling": 1}),
    ("100%", {"sampling": 100}),
)
TARGETS = {"1%": 0.97, "100%": 0.75}
ROUNDS = 3
WRK_CONNECTIONS = 64


@dataclass
class SettingResult:
    name: str
    rps: list[float] = field(default_factory=list)
    errors: int = 0
    rss_mb: list[float] = field(default_factory=list)  # the larger sidecar, after each run
    exported: int = 0
    dropped: int = 0
    sampled: int = 0


def _stats(port: int) -> dict[str, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/stats")
        return dict(json.loads(conn.getresponse().read())["tracing"])
    finally:
        conn.close()


def _one(
    result: SettingResult,
    tracing: dict[str, Any],
    logs: Path,
    backend_port: int,
    cores: Cores,
    load_prefix: list[str],
    seconds: int,
) -> None:
    pair = sidecars.SidecarPair(
        logs, backend_port, load_prefix, cores.prefix(), mtls=True, tracing=tracing
    )
    try:
        pair.start()
        _check(pair.outbound_port)
        warm = wrk.argv(
            f"http://127.0.0.1:{pair.outbound_port}/", WRK_CONNECTIONS, 2, host=sidecars.HOST
        )
        wrk.run([*load_prefix, *warm], logs, f"wrk-warm-{result.name}", 40)
        command = wrk.argv(
            f"http://127.0.0.1:{pair.outbound_port}/", WRK_CONNECTIONS, seconds, host=sidecars.HOST
        )
        closed = wrk.run([*load_prefix, *command], logs, f"wrk-{result.name}", seconds + 30)
        result.rps.append(closed.rps)
        result.errors += closed.errors
        result.rss_mb.append(max(rss_bytes(c.pid) for c in pair.proxies.values()) / 2**20)
        for port in pair.admin_ports.values():
            stats = _stats(port)
            result.exported += int(stats.get("exported", 0))
            result.dropped += int(stats.get("dropped_queue_full", 0)) + int(
                stats.get("dropped_export_failed", 0)
            )
            result.sampled += int(stats.get("sampled_requests", 0))
        print(
            f"  tracing {result.name}: {closed.rps:,.0f} rps, RSS {result.rss_mb[-1]:.1f} MB",
            flush=True,
        )
    finally:
        pair.stop()


def render(results: list[SettingResult], environment: list[str]) -> str:
    off = median(results[0].rps)
    lines = [
        "| tracing | max rps (median) | vs off | target | largest sidecar RSS | wrk errors"
        " | spans exported | spans dropped |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        rps = median(r.rps)
        target = f"≥ {TARGETS[r.name]:.2f}x" if r.name in TARGETS else ""
        lines.append(
            f"| {r.name} | {rps:,.0f} | {rps / off:.3f}x | {target} | {max(r.rss_mb):.1f} MB"
            f" (≤ 60) | {r.errors} | {r.exported:,} | {r.dropped:,} |"
        )
    return "\n".join([*lines, "", *environment])


def run(quick: bool) -> Section:
    rounds = 1 if quick else ROUNDS
    seconds = 4 if quick else 10
    cores = Cores.choose()
    pin_this_process(cores.load)
    load_prefix = [] if cores.load is None else ["taskset", "-c", str(cores.load)]
    results = [SettingResult(name) for name, _ in SETTINGS]
    with tempfile.TemporaryDirectory(prefix="trellis-bench-tracing-") as tmp:
        logs = Path(tmp)
        backend_port = free_port()
        backend = haproxy.start(
            haproxy.backend_config(backend_port), logs, "backend", cores.prefix()
        )
        try:
            _wait_listening(backend, backend_port, 15)
            for _ in range(rounds):
                for result, (_, tracing) in zip(results, SETTINGS, strict=True):
                    _one(result, tracing, logs, backend_port, cores, load_prefix, seconds)
        finally:
            backend.stop()
    environment = [
        f"Sidecar pair with mesh mTLS and metrics; wrk 1 thread, {WRK_CONNECTIONS} connections,"
        f" {seconds} s per run after 2 s of warm-up; {rounds} interleaved round(s).",
        f"CPUs: {os.cpu_count()}; {cores.describe()}. Spans go to the pair's control plane"
        " (load core).",
    ]
    return Section("tracing", render(results, environment))
