"""Control-plane push latency: how long a route change takes to reach N connected nodes.

One `trellis control` (pinned to the measured core) serves a mesh of
`SERVICES` services; simulated proxyless nodes (`bench.adsload`, on the load
core) subscribe to `greeter:50051` as grpcio does. For each fleet size the
benchmark changes the greeter split a few times through the REST API and
times, per node, from the API's answer to the node's ACK of the new
RouteConfiguration. The reference measured in the same run is the transport
floor: one grpc.aio unary round trip to an echo server on the same core
(`bench.echo`). Reported: push latency p50/p99/max, its ratio to the floor,
the control plane's CPU per push and its RSS.

Must not know how the control plane generates resources.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import echo, mesh
from bench.adsload import Fleet
from bench.procs import Child, Cores, cpu_seconds, free_port, pin_this_process, rss_bytes
from bench.report import Section
from bench.stats import Summary

TOKEN = "bench-admin-token"
SERVICES = 20
ROUNDS = 5


def _wait_banner(child: Child, timeout: float) -> tuple[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = child.output().splitlines()
        api = [ln for ln in lines if ln.startswith("API listening on ")]
        xds = [ln for ln in lines if ln.startswith("xDS listening on ")]
        if api and xds:
            return api[0].removeprefix("API listening on "), xds[0].removeprefix(
                "xDS listening on "
            )
        if not child.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"trellis control did not start:\n{child.stderr_tail()}")


def _wait_echo(child: Child, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if "READY" in child.output():
            return
        if not child.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"echo server did not start:\n{child.stderr_tail()}")


async def _apply(http: httpx.AsyncClient, docs: list[mesh.Doc]) -> None:
    response = await http.post("/api/v1/apply", json={"documents": docs, "source": "bench"})
    response.raise_for_status()


async def _measure(api: str, xds: str, cp_pid: int, sizes: list[int]) -> list[list[str]]:
    rows: list[list[str]] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with httpx.AsyncClient(base_url=api, headers=headers, timeout=60) as http:
        await _apply(http, mesh.mesh(SERVICES))
        fleet = Fleet(xds, mesh.LISTENER)
        weight = 10
        try:
            for n in sizes:
                await fleet.grow(n, timeout=120)
                latencies: list[float] = []
                cpu_before = cpu_seconds(cp_pid)
                for _ in range(ROUNDS):
                    weight = 10 if weight != 10 else 20
                    round_ = fleet.begin_round()
                    await _apply(http, [mesh.split_route(mesh.TARGET_SERVICE, weight)])
                    sent = time.perf_counter()
                    await asyncio.wait_for(round_.done.wait(), 60)
                    fleet.check()
                    latencies.extend(at - sent for at in round_.acked_at.values())
                cpu_per_push = (cpu_seconds(cp_pid) - cpu_before) / ROUNDS
                s = Summary.of(latencies)
                rows.append(
                    [
                        str(n),
                        f"{s.p50 * 1e3:.1f}",
                        f"{s.p99 * 1e3:.1f}",
                        f"{s.max * 1e3:.1f}",
                        f"{cpu_per_push * 1e3:.0f}",
                        f"{rss_bytes(cp_pid) / 2**20:.0f}",
                    ]
                )
                print(f"  {n} nodes: p50 {rows[-1][1]} ms, p99 {rows[-1][2]} ms", flush=True)
        finally:
            await fleet.aclose()
    return rows


def run(quick: bool) -> Section:
    sizes = [10, 50] if quick else [10, 50, 100, 300, 600, 1000]
    cores = Cores.choose()
    pin_this_process(cores.load)
    with tempfile.TemporaryDirectory(prefix="trellis-bench-") as tmp:
        logs = Path(tmp)
        echo_port = free_port()
        echo_child = Child(
            [*cores.prefix(), sys.executable, "-m", "bench.echo", "--port", str(echo_port)],
            logs,
            "echo",
        )
        try:
            _wait_echo(echo_child, 30)
            floor = Summary.of(
                asyncio.run(echo.round_trips(f"127.0.0.1:{echo_port}", 2000, 200, 200))
            )
        finally:
            echo_child.stop()
        control = Child(
            [
                *cores.prefix(),
                str(Path(sys.executable).with_name("trellis")),
                "control",
                "--data-dir",
                str(logs / "data"),
                "--listen",
                "127.0.0.1:0",
                "--xds-listen",
                "127.0.0.1:0",
                "--secure-listen",
                "127.0.0.1:0",
                "--log-level",
                "warning",
            ],
            logs,
            "control",
            env={"TRELLIS_TOKEN": TOKEN, "TRELLIS_CONFIG": str(logs / "cli.json")},
        )
        try:
            api, xds = _wait_banner(control, 30)
            rows = asyncio.run(_measure(api, xds, control.pid, sizes))
        finally:
            control.stop()
    table = [
        "| nodes | push p50 (ms) | push p99 (ms) | push max (ms) | p50 / floor"
        " | CP CPU per push (ms) | CP RSS (MB) |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        ratio = float(row[1]) / (floor.p50 * 1e3)
        table.append(f"| {' | '.join(row[:4])} | {ratio:.0f}x | {row[4]} | {row[5]} |")
    return Section(
        "controlplane",
        "\n".join(
            [
                f"Mesh: {SERVICES} services, each with two versions and a weighted GRPCRoute;"
                f" {ROUNDS} route changes per fleet size; latency from the REST answer to each"
                " node's RDS ACK.",
                f"Transport floor (grpc.aio unary echo round trip, same core): p50"
                f" {floor.p50 * 1e6:.0f} µs, p99 {floor.p99 * 1e6:.0f} µs.",
                f"CPUs: {os.cpu_count()}; {cores.describe()}.",
                "",
                *table,
            ]
        ),
    )
