"""The built-in trace store's receiver: spans/s ingested on one core, drops, CPU and memory.

One `trellis control` (default 64 MiB trace store) runs pinned to the measured core;
this process, on the load core, sends it sidecar-shaped OTLP Export batches over
gRPC on the plaintext xDS port (`bench.otlpload`), as sidecars do by default:
  1. a warm-up at 5,000 spans/s;
  2. 5,000 spans/s in Exports of 512 spans (an SDK's default batch), open loop;
  3. 5,000 spans/s in Exports of 50 spans (many sidecars, small batches), open loop;
  4. 5,000 spans/s of 512 on the secure port (mTLS with a mesh SVID, through the
     control plane's TLS front: how a sidecar on a secure mesh exports);
  5. the max: Exports of 512 spans, `CONCURRENCY` in flight, closed loop, on each port.
Per run: spans offered and ingested (the store's `spansAccepted`, from the API's
statistics), drops (sent but neither stored nor refused with a reason: failed
Exports, rejected spans), Export latency, the control plane's CPU share of its
core, CPU per 1000 spans and spans per CPU-second (/proc: the figure other work
on the machine does not move), its RSS. Then, on the full store, the p50
of a few searches over HTTP. The store fills in the first minute and evicts from
then on: RSS at the end and its peak (VmHWM) show whether the bound holds.
The target in issue 10: 5,000 spans/s on one core without drops, memory bounded.

Must not know how the store keeps spans.
"""

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bench.otlpload import Batches, LoadResult, closed_loop, open_loop
from bench.procs import Child, Cores, cpu_seconds, own_cpu_seconds, pin_this_process, rss_bytes
from bench.report import Section
from bench.sidecars import _wait_banner, control_argv, trellis_binary
from bench.stats import Summary

TOKEN = "bench-admin-token"
RATE = 5000  # spans/s: issue 10's target
CONCURRENCY = 2  # 1 leaves the receiver idle between Exports; more only queue (measured)
QUERIES = (
    ("newest 20", {"limit": 20}),
    ("service + 5xx", {"service": "service-1", "status": "5xx", "limit": 20}),
    ("min duration 15ms", {"minDuration": "15ms", "limit": 20}),
)


def mesh_credentials(http: httpx.Client, secure: str) -> grpc.ChannelCredentials:
    """TLS credentials with a mesh SVID, got as a sidecar gets one: a join token from the API,
    then the CA service's Sign on the secure port."""
    bundle = http.get("/api/v1/ca/bundle").content
    token = http.post("/api/v1/tokens", json={"serviceAccount": "bench", "ttlSeconds": 3600})
    token.raise_for_status()
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([]))
        .sign(key, hashes.SHA256())
    )
    body = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode()}
    body["token"] = token.json()["token"]
    with grpc.secure_channel(secure, grpc.ssl_channel_credentials(bundle)) as channel:
        sign = channel.unary_unary("/trellis.ca.v1.Certificates/Sign")
        answer = json.loads(sign(json.dumps(body).encode(), timeout=30))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return grpc.ssl_channel_credentials(bundle, key_pem, answer["certificate"].encode())


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


@dataclass(frozen=True, slots=True)
class Run:
    name: str
    load: LoadResult
    offered: float | None  # spans/s asked for (None: as fast as answered)
    ingested: int  # spans the store accepted during the run
    cp_cpu: float  # seconds
    load_cpu: float  # seconds, this process
    rss: int  # bytes, at the end

    @property
    def drops(self) -> int:
        return self.load.spans_sent - self.ingested

    def row(self) -> str:
        load = self.load
        lat = Summary.of(load.latencies) if load.latencies else None
        offered = f"{self.offered:,.0f}" if self.offered is not None else "max"
        lag = Summary.of(load.send_lag).p99 * 1e3 if load.send_lag else None
        return (
            f"| {self.name} | {load.spans_per_export} | {offered} "
            f"| {self.ingested / load.elapsed:,.0f} | {self.drops} ({load.exports_failed} failed"
            f" Exports, {load.spans_rejected} rejected) "
            f"| {f'{lat.p50 * 1e3:.1f} / {lat.p99 * 1e3:.1f}' if lat else '-'} "
            f"| {f'{lag:.1f}' if lag is not None else '-'} "
            f"| {100 * self.cp_cpu / load.elapsed:.0f}% "
            f"| {1e3 * self.cp_cpu / max(1, self.ingested) * 1000:.1f} "
            f"| {self.ingested / max(self.cp_cpu, 1e-9):,.0f} "
            f"| {100 * self.load_cpu / load.elapsed:.0f}% "
            f"| {self.rss / 2**20:.0f} |"
        )


class Bench:
    def __init__(self, api: str, pid: int) -> None:
        self.api = api
        self.pid = pid
        self.http = httpx.Client(
            base_url=api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        )

    def statistics(self) -> dict[str, int]:
        answer = self.http.get("/api/v1/traces/statistics")
        answer.raise_for_status()
        stats: dict[str, int] = answer.json()
        return stats

    def measure(self, name: str, offered: float | None, go: Coroutine[Any, Any, LoadResult]) -> Run:
        before = self.statistics()["spansAccepted"]
        cpu, own = cpu_seconds(self.pid), own_cpu_seconds()
        load = asyncio.run(go)
        cp_cpu, load_cpu = cpu_seconds(self.pid) - cpu, own_cpu_seconds() - own
        ingested = self.statistics()["spansAccepted"] - before
        run = Run(name, load, offered, ingested, cp_cpu, load_cpu, rss_bytes(self.pid))
        print(f"  {name}: {ingested / load.elapsed:,.0f} spans/s, drops {run.drops}", flush=True)
        return run

    def query_p50(self, params: dict[str, object], times: int = 20) -> float:
        samples = []
        for _ in range(times):
            began = time.perf_counter()
            self.http.get("/api/v1/traces", params=params).raise_for_status()
            samples.append(time.perf_counter() - began)
        return Summary.of(samples).p50

    def trace_p50(self, times: int = 20) -> float:
        newest = self.http.get("/api/v1/traces", params={"limit": 1}).json()["items"][0]
        samples = []
        for _ in range(times):
            began = time.perf_counter()
            self.http.get(f"/api/v1/traces/{newest['traceId']}").raise_for_status()
            samples.append(time.perf_counter() - began)
        return Summary.of(samples).p50


def run(quick: bool) -> Section:
    seconds = 5.0 if quick else 20.0
    cores = Cores.choose()
    pin_this_process(cores.load)
    with tempfile.TemporaryDirectory(prefix="trellis-bench-") as tmp:
        logs = Path(tmp)
        control = Child(
            [*cores.prefix(), *control_argv(trellis_binary(), logs / "data")],
            logs,
            "control",
            env={"TRELLIS_TOKEN": TOKEN, "TRELLIS_CONFIG": str(logs / "cli.json")},
        )
        try:
            api, xds, secure = _wait_banner(control, 30)
            bench = Bench(api, control.pid)
            rss_idle = rss_bytes(control.pid)
            mtls = mesh_credentials(bench.http, secure)
            big, small = Batches(512), Batches(50)
            bench.measure("warm-up", RATE, open_loop(xds, RATE, big, 3.0))
            half = seconds / 2
            runs = [
                bench.measure("plaintext, open loop", RATE, open_loop(xds, RATE, big, seconds)),
                bench.measure("plaintext, open loop", RATE, open_loop(xds, RATE, small, seconds)),
                bench.measure(
                    "secure port (mTLS), open loop",
                    RATE,
                    open_loop(secure, RATE, big, seconds, credentials=mtls),
                ),
                bench.measure(
                    f"plaintext, closed loop ({CONCURRENCY} in flight)",
                    None,
                    closed_loop(xds, big, half, CONCURRENCY),
                ),
                bench.measure(
                    f"secure port (mTLS), closed loop ({CONCURRENCY} in flight)",
                    None,
                    closed_loop(secure, big, half, CONCURRENCY, credentials=mtls),
                ),
            ]
            stats = bench.statistics()
            queries = [(label, bench.query_p50(params)) for label, params in QUERIES]
            queries.append(("one trace (4 spans)", bench.trace_p50()))
            peak = _peak_rss(control.pid)
            load_average = os.getloadavg()[0]
        finally:
            control.stop()
    table = [
        "| load | spans per Export | offered spans/s | ingested spans/s | drops"
        " | Export p50 / p99 (ms) | send lag p99 (ms) | CP CPU (its core)"
        " | CP CPU per 1000 spans (ms) | spans per CP CPU-second | load CPU | CP RSS (MB) |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|",
        *(r.row() for r in runs),
    ]
    held = stats["bytes"] / 2**20
    contested = [r for r in runs if r.offered is None and r.cp_cpu / r.load.elapsed < 0.8]
    note = (
        [
            "",
            "**The control plane got less than its core in "
            + ", ".join(f"{r.name} ({100 * r.cp_cpu / r.load.elapsed:.0f}%)" for r in contested)
            + f": other work shared the core (load average {load_average:.1f} at the end) or"
            " the load left it idle between Exports. Its max on a core of its own is what it"
            " ingests per CPU-second.**",
        ]
        if contested
        else []
    )
    return Section(
        "tracestore",
        "\n".join(
            [
                f"Receiver: `trellis control` (TraceService/Export on its two gRPC ports),"
                f" trace store bound {stats['maxBytes'] // 2**20} MiB. Spans shaped as a"
                f" sidecar's: 14 attributes, {big.size // big.spans} bytes of protobuf each,"
                f" {4} per trace over 4 services' resources. Runs of {seconds:.0f} s"
                f" ({seconds / 2:.0f} s closed loop) after a 3 s warm-up; the load side sends"
                " Exports it made beforehand (grpc.aio, no serializer).",
                f"CPUs: {os.cpu_count()}; {cores.describe()}.",
                "",
                *table,
                *note,
                "",
                f"Store at the end: {stats['traces']:,} traces, {stats['spans']:,} spans,"
                f" {held:.1f} MiB charged of {stats['maxBytes'] / 2**20:.0f} MiB;"
                f" {stats['tracesEvicted']:,} traces ({stats['spansEvicted']:,} spans) evicted"
                f" on the way. Control plane RSS: {rss_idle / 2**20:.0f} MB idle,"
                f" {runs[-1].rss / 2**20:.0f} MB at the end, peak (VmHWM)"
                f" {peak / 2**20:.0f} MB.",
                "",
                "Searches over the full store, HTTP round trip from the load core (p50 of 20): "
                + "; ".join(f"{label} {p50 * 1e3:.1f} ms" for label, p50 in queries)
                + ".",
            ]
        ),
    )
