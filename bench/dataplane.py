"""Data-plane cost: direct vs a HAProxy pair vs a Trellis sidecar pair, same load, same run.

Paths, all ending at the same backend (`bench.haproxy.backend_config`):
  (a) client → backend, direct;
  (b) client → HAProxy → HAProxy → backend, HTTP mode, keep-alive both sides;
  (b') the same with mutual TLS between the two HAProxies (the reference for
       sidecars that speak mTLS);
  (c) client → Trellis sidecar A → sidecar B → backend (`bench.sidecars`),
      skipped with the reason in the report while `trellis proxy` is missing;
  (c') the same pair speaking mesh mTLS;
and yardsticks, pairs of `bench.minimal_relay` in place of the sidecars:
  (r0) byte relays (no parsing: the floor of a proxy on uvloop);
  (r) minimal HTTP relays (uvloop + httptools, nothing a mesh does);
  (r') minimal HTTP relays with TLS between them (uvloop's TLS, as the sidecars).

The load side (this process, wrk, and the control plane of (c), idle while
measuring) runs on one core; the backend and the proxies on the other
(`bench.procs.Cores`). On each path the same two loads run: an open loop at
`RATE` requests/s (`bench.loadgen`, latency from each request's scheduled
send time) giving p50/p90/p99 and each proxy's CPU per 1000 requests, then
wrk in a closed loop (`bench.wrk`) giving the maximum throughput and whether
the load side or the measured core was the limit. Reported with each proxy's
RSS, the latency each pair adds over direct, and the Trellis/HAProxy ratios.

Must not know how the proxies work inside.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import platform
import socket
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import median

import uvloop

from bench import haproxy, sidecars, wrk
from bench.certs import write_tls_files
from bench.loadgen import OpenLoop, OpenLoopResult, request_bytes
from bench.procs import Child, Cores, cpu_seconds, free_port, pin_this_process, rss_bytes
from bench.report import Section
from bench.stats import percentile

RATE = 1000  # requests/s of the open loop
OPEN_CONNECTIONS = 32  # keep-alive pool of the open loop
WRK_CONNECTIONS = 64
HOST = sidecars.HOST  # the Host header of every request, on every path
# The pair the mTLS Trellis pair is compared with: HAProxy with TLS between its two.
REFERENCE = "haproxy-tls"
# Each Trellis pair and the HAProxy pair it is held against: plaintext with plaintext
# (issue 3), mesh mTLS with TLS (issue 4); then the yardsticks, against the same
# references: what a Python relay that does nothing else reaches in the same run.
COMPARISONS = (
    ("trellis-plain", "haproxy"),
    ("trellis", REFERENCE),
    ("relay-raw", "haproxy"),
    ("relay", "haproxy"),
    ("relay-tls", REFERENCE),
)
# The yardstick pairs: key -> (label, bench.minimal_relay options of the second
# relay, of the first; "{tls}" is the TLS files' directory).
RELAYS = {
    "relay-raw": ("(r0) byte relay pair (Python, uvloop)", ["--raw"], ["--raw"]),
    "relay": ("(r) minimal HTTP relay pair (Python, uvloop + httptools)", [], []),
    "relay-tls": (
        "(r') minimal HTTP relay pair, TLS",
        ["--tls-listen", "{tls}"],
        ["--tls-upstream", "{tls}"],
    ),
}
# Issue 3's performance target: added latency at most 1.5x the HAProxy pair's,
# at least 0.7x its maximum throughput.
TARGET_LATENCY_RATIO = 1.5
TARGET_RPS_RATIO = 0.7
# The open loop kept its rate when it sent at least this share of RATE, this punctually.
MIN_SEND_SHARE = 0.99
MAX_SEND_LAG_P99 = 0.0005  # seconds


@dataclass(frozen=True, slots=True)
class Durations:
    warmup: float  # open loop at RATE, discarded
    fixed: float  # open loop at RATE, measured, per segment
    segments: int  # latency percentiles are the median over the segments
    closed: int  # wrk, seconds


FULL = Durations(warmup=3, fixed=5, segments=3, closed=10)
QUICK = Durations(warmup=1, fixed=2, segments=3, closed=4)


@dataclass(frozen=True, slots=True)
class ProxyUsage:
    name: str
    cpu_per_1k: float  # CPU seconds per 1000 requests at RATE
    rss_mb: float


@dataclass(slots=True)
class PathResult:
    key: str
    label: str
    skipped: str | None = None  # why the path was not measured
    p50: float = 0.0  # seconds, at RATE
    p90: float = 0.0
    p99: float = 0.0
    ok: int = 0
    errors: int = 0
    send_rate: float = 0.0
    send_lag_p99: float = 0.0
    send_lag_max: float = 0.0
    rps: float = 0.0  # wrk, closed loop
    wrk_errors: int = 0
    wrk_cpu_share: float = 0.0  # wrk's CPU time / run time (1.0: its core saturated)
    measured_cpu_share: float = 0.0  # backend + proxies CPU time / run time (max 1.0)
    proxies: list[ProxyUsage] = field(default_factory=list)

    @property
    def measured(self) -> bool:
        return self.skipped is None


# ---- pure: summaries, ratios, the report -------------------------------------------------


def summarize(result: PathResult, runs: list[OpenLoopResult]) -> None:
    """Fill `result`'s latency and generator figures from consecutive open-loop segments.

    Each percentile is the median of the segments' percentiles, so one segment
    hit by unrelated work on the machine does not set the figure; counts add up.
    """
    if not runs or any(not run.latencies for run in runs):
        raise RuntimeError(f"{result.label}: a segment had no successful request at {RATE} rps")
    result.p50 = median(percentile(run.latencies, 50) for run in runs)
    result.p90 = median(percentile(run.latencies, 90) for run in runs)
    result.p99 = median(percentile(run.latencies, 99) for run in runs)
    result.ok = sum(run.ok for run in runs)
    result.errors = sum(run.errors for run in runs)
    result.send_rate = median(run.send_rate for run in runs)
    lagged = [run for run in runs if run.send_lag]
    if lagged:
        result.send_lag_p99 = median(percentile(run.send_lag, 99) for run in lagged)
        result.send_lag_max = max(max(run.send_lag) for run in lagged)


def added(path: PathResult, direct: PathResult) -> tuple[float, float]:
    """Latency the path adds over direct: (p50, p99) differences of the percentiles, seconds."""
    return path.p50 - direct.p50, path.p99 - direct.p99


def ratio(value: float, reference: float) -> float | None:
    """value / reference, or None when the reference is not positive (nothing to compare)."""
    return value / reference if reference > 0 else None


def cpu_per_1k(cpu_delta: float, requests: int) -> float:
    return cpu_delta / (requests / 1000) if requests else 0.0


def limited_by(wrk_cpu_share: float, measured_cpu_share: float) -> str:
    """Which side capped the closed-loop throughput, from the two CPU shares."""
    if wrk_cpu_share >= 0.95:
        return "load side (wrk's core saturated)"
    if measured_cpu_share >= 0.9:
        return "measured core"
    return "neither core saturated"


def generator_fell_behind(result: PathResult) -> bool:
    """Whether the open loop missed its schedule on this path (its latencies then overstate)."""
    return result.send_rate < MIN_SEND_SHARE * RATE or result.send_lag_p99 > MAX_SEND_LAG_P99


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.0f}"


def _x(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def render(results: list[PathResult], environment: list[str]) -> str:
    by_key = {r.key: r for r in results}
    direct = by_key["direct"]
    main = [
        "| path | max rps | p50 (µs) | p90 (µs) | p99 (µs) | added p50 (µs) | added p99 (µs)"
        " | errors (open / wrk) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    usage = ["| path | proxy | CPU s per 1000 req | RSS (MB) |", "|---|---|---:|---:|"]
    bound = ["| path | wrk CPU | measured core CPU | max rps limited by |", "|---|---:|---:|---|"]
    warnings: list[str] = []
    for r in results:
        if not r.measured:
            main.append(f"| {r.label} | skipped | | | | | | |")
            warnings.append(f"{r.label}: skipped: {r.skipped}")
            continue
        if r.key == "direct":
            add50 = add99 = "—"
        else:
            a50, a99 = added(r, direct)
            add50, add99 = f"{a50 * 1e6:+.0f}", f"{a99 * 1e6:+.0f}"
        if generator_fell_behind(r):
            warnings.append(
                f"{r.label}: the open loop fell behind (sent {r.send_rate:.0f} req/s,"
                f" send lag p99 {_us(r.send_lag_p99)} µs): its latencies overstate"
            )
        main.append(
            f"| {r.label} | {r.rps:,.0f} | {_us(r.p50)} | {_us(r.p90)} | {_us(r.p99)}"
            f" | {add50} | {add99} | {r.errors} / {r.wrk_errors} |"
        )
        for p in r.proxies:
            usage.append(f"| {r.label} | {p.name} | {p.cpu_per_1k:.3f} | {p.rss_mb:.0f} |")
        bound.append(
            f"| {r.label} | {r.wrk_cpu_share:.0%} | {r.measured_cpu_share:.0%}"
            f" | {limited_by(r.wrk_cpu_share, r.measured_cpu_share)} |"
        )
    ratios: list[str] = []
    for key, reference_key in COMPARISONS:
        trellis, reference = by_key.get(key), by_key.get(reference_key)
        if trellis is None or reference is None:
            continue
        if ratios:
            ratios.append("")
        heading = f"| {trellis.label} / {reference.label} | value | target |"
        if key in RELAYS:
            heading = f"| yardstick: {trellis.label} / {reference.label} | value | target |"
        ratios += [heading, "|---|---:|---:|"]
        if trellis.measured and reference.measured:
            t50, t99 = added(trellis, direct)
            h50, h99 = added(reference, direct)
            ratios += [
                f"| added p50 | {_x(ratio(t50, h50))} | ≤ {TARGET_LATENCY_RATIO}x |",
                f"| added p99 | {_x(ratio(t99, h99))} | ≤ {TARGET_LATENCY_RATIO}x |",
                f"| max rps | {_x(ratio(trellis.rps, reference.rps))} | ≥ {TARGET_RPS_RATIO}x |",
            ]
            rss = max((p.rss_mb for p in trellis.proxies), default=0.0)
            ratios.append(f"| largest proxy RSS | {rss:.0f} MB | ≤ 60 MB |")
        else:
            ratios.append("| (path not measured) | n/a | |")
    return "\n".join(
        [
            *environment,
            *(f"**{line}**" for line in warnings),
            "",
            *main,
            "",
            *ratios,
            "",
            *usage,
            "",
            *bound,
        ]
    )


# ---- processes and measurement -----------------------------------------------------------


def _wait_listening(child: Child, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            break
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{child.name} is not listening on :{port}:\n{child.stderr_tail()}")


def _check(port: int, timeout: float = 30) -> None:
    """One request through the path must come back 200 with the backend's body."""
    deadline = time.monotonic() + timeout
    seen = "no answer"
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/", headers={"Host": HOST})
            response = conn.getresponse()
            body = response.read().decode(errors="replace")
            if response.status == 200 and body == haproxy.BACKEND_BODY:
                return
            seen = f"{response.status} {body[:200]!r}"
        except OSError as exc:
            seen = repr(exc)
        finally:
            conn.close()
        time.sleep(0.2)
    raise RuntimeError(f"warm-up request to :{port} did not reach the backend: {seen}")


def _cpu(children: list[Child]) -> float:
    return sum(cpu_seconds(c.pid) for c in children)


async def _open_loop(
    port: int, durations: Durations, proxies: dict[str, Child]
) -> tuple[list[OpenLoopResult], dict[str, float]]:
    gen = OpenLoop("127.0.0.1", port, request_bytes(HOST), OPEN_CONNECTIONS)
    await gen.start()
    try:
        await gen.run(RATE, durations.warmup)
        before = {name: cpu_seconds(c.pid) for name, c in proxies.items()}
        runs = [await gen.run(RATE, durations.fixed) for _ in range(durations.segments)]
        cpu = {name: cpu_seconds(c.pid) - before[name] for name, c in proxies.items()}
    finally:
        await gen.aclose()
    return runs, cpu


@dataclass(frozen=True, slots=True)
class Bench:
    """What every path of one run shares: the backend, the cores, the loads, the logs."""

    backend: Child
    backend_port: int
    durations: Durations
    cores: Cores
    load_prefix: list[str]  # pins a load-side command to the load core
    logs: Path


def _measure(result: PathResult, port: int, proxies: dict[str, Child], bench: Bench) -> PathResult:
    durations = bench.durations
    print(f"  {result.label}: warm-up check", flush=True)
    _check(port)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runs, cpu = runner.run(_open_loop(port, durations, proxies))
    summarize(result, runs)
    print(
        f"  {result.label}: {RATE} rps: p50 {_us(result.p50)} µs, p99 {_us(result.p99)} µs,"
        f" {result.errors} errors, sent at {result.send_rate:.0f}/s",
        flush=True,
    )
    measured = [bench.backend, *proxies.values()]
    before = _cpu(measured)
    command = wrk.argv(f"http://127.0.0.1:{port}/", WRK_CONNECTIONS, durations.closed, host=HOST)
    closed = wrk.run(
        [*bench.load_prefix, *command], bench.logs, f"wrk-{result.key}", durations.closed + 30
    )
    result.measured_cpu_share = (_cpu(measured) - before) / closed.seconds
    result.rps, result.wrk_errors, result.wrk_cpu_share = (
        closed.rps,
        closed.errors,
        closed.cpu_share,
    )
    print(f"  {result.label}: max {result.rps:,.0f} rps", flush=True)
    result.proxies = [
        ProxyUsage(name, cpu_per_1k(cpu[name], result.ok), rss_bytes(c.pid) / 2**20)
        for name, c in proxies.items()
    ]
    return result


def _haproxy_pair(tls: bool, bench: Bench) -> PathResult:
    key, label = (
        ("haproxy-tls", "(b') HAProxy pair, mTLS") if tls else ("haproxy", "(b) HAProxy pair")
    )
    logs, pin = bench.logs, bench.cores.prefix()
    files = write_tls_files(logs / "tls") if tls else None
    second_port, first_port = free_port(), free_port()
    children: list[Child] = []
    try:
        second = haproxy.start(
            haproxy.hop_config(second_port, bench.backend_port, listen_tls=files),
            logs,
            f"{key}-2",
            pin,
        )
        children.append(second)
        first = haproxy.start(
            haproxy.hop_config(first_port, second_port, upstream_tls=files), logs, f"{key}-1", pin
        )
        children.append(first)
        _wait_listening(second, second_port, 15)
        _wait_listening(first, first_port, 15)
        proxies = {"HAProxy 1": first, "HAProxy 2": second}
        return _measure(PathResult(key, label), first_port, proxies, bench)
    finally:
        for child in reversed(children):
            child.stop()


def _failed(result: PathResult, exc: Exception) -> PathResult:
    """`result` reported as skipped, with the first line of why the path failed."""
    first = str(exc).strip().splitlines()
    result.skipped = f"failed: {first[0].rstrip(':') if first else type(exc).__name__}"
    print(f"  {result.label}: FAILED: {exc}", file=sys.stderr, flush=True)
    return result


def _relay_pair(key: str, tls: Path, bench: Bench) -> PathResult:
    """A pair of `bench.minimal_relay`s (RELAYS[key]); `tls` holds the TLS files."""
    label, second_options, first_options = RELAYS[key]
    second_port, first_port = free_port(), free_port()
    relay = [*bench.cores.prefix(), sys.executable, "-m", "bench.minimal_relay"]
    children: list[Child] = []
    try:
        for listen, upstream, name, options in (
            (second_port, bench.backend_port, "relay 2", second_options),
            (first_port, second_port, "relay 1", first_options),
        ):
            argv = [*relay, str(listen), str(upstream), *(o.format(tls=tls) for o in options)]
            child = Child(argv, bench.logs, f"{key}-{name[-1]}")
            children.append(child)
            _wait_listening(child, listen, 15)
        proxies = {"relay 1": children[1], "relay 2": children[0]}
        return _measure(PathResult(key, label), first_port, proxies, bench)
    except Exception as exc:  # a yardstick that fails must not hide the other figures
        return _failed(PathResult(key, label), exc)
    finally:
        for child in reversed(children):
            child.stop()


def _trellis_pair(mtls: bool, bench: Bench) -> PathResult:
    result = (
        PathResult("trellis", "(c') Trellis sidecar pair, mTLS")
        if mtls
        else PathResult("trellis-plain", "(c) Trellis sidecar pair")
    )
    reason = sidecars.unavailable()
    if reason is not None:
        result.skipped = reason
        print(f"  {result.label}: skipped: {reason}", flush=True)
        return result
    pair = sidecars.SidecarPair(
        bench.logs, bench.backend_port, bench.load_prefix, bench.cores.prefix(), mtls=mtls
    )
    try:
        pair.start()
        return _measure(result, pair.outbound_port, pair.proxies, bench)
    except Exception as exc:  # a broken sidecar must not hide the reference figures
        return _failed(result, exc)
    finally:
        pair.stop()


def _environment(cores: Cores, durations: Durations, direct: PathResult) -> list[str]:
    return [
        f"Open loop: {RATE} rps, {durations.segments} segments of {durations.fixed:g} s after"
        f" {durations.warmup:g} s of warm-up (percentiles: median over the segments),"
        f" {OPEN_CONNECTIONS} keep-alive connections (`bench.loadgen`: Python, uvloop"
        " + httptools, latency from each request's scheduled send time). Max throughput: wrk,"
        f" 1 thread, {WRK_CONNECTIONS} connections, {durations.closed} s.",
        f"Generator check on the direct path: sent at {direct.send_rate:.0f} req/s,"
        f" send lag p99 {_us(direct.send_lag_p99)} µs, max {_us(direct.send_lag_max)} µs.",
        f"Backend: HAProxy `http-request return` (1 thread), {len(haproxy.BACKEND_BODY)}-byte"
        f" body. HAProxy {haproxy.version()} (1 thread each), {wrk.version()},"
        f" Python {platform.python_version()}, uvloop {uvloop.__version__},"
        f" Linux {platform.release()}.",
        f"CPUs: {os.cpu_count()}; {cores.describe()} (backend and all proxies share the"
        " measured core; the control plane of (c) and (c') sits idle on the load core).",
        "Ratios compare each Trellis pair with the HAProxy pair of its kind, (c) with (b) and"
        " (c') with (b') (added latency over direct, and max rps), and the yardsticks the same"
        " way ((r0) and (r) with (b), (r') with (b')): relays in Python that do nothing but"
        " relay (`bench.minimal_relay`). CPU is per proxy process at the open-loop rate, RSS"
        " after the wrk run.",
    ]


def run(quick: bool) -> Section:
    durations = QUICK if quick else FULL
    cores = Cores.choose()
    pin_this_process(cores.load)
    load_prefix = [] if cores.load is None else ["taskset", "-c", str(cores.load)]
    results: list[PathResult] = []
    with tempfile.TemporaryDirectory(prefix="trellis-bench-dp-") as tmp:
        logs = Path(tmp)
        backend_port = free_port()
        backend = haproxy.start(
            haproxy.backend_config(backend_port), logs, "backend", cores.prefix()
        )
        try:
            _wait_listening(backend, backend_port, 15)
            bench = Bench(backend, backend_port, durations, cores, load_prefix, logs)
            results.append(_measure(PathResult("direct", "(a) direct"), backend_port, {}, bench))
            results += [_haproxy_pair(tls, bench) for tls in (False, True)]
            relay_tls = write_tls_files(logs / "tls-relay").ca.parent
            results += [_relay_pair(key, relay_tls, bench) for key in RELAYS]
            results += [_trellis_pair(mtls, bench) for mtls in (False, True)]
        finally:
            backend.stop()
    return Section("dataplane", render(results, _environment(cores, durations, results[0])))
