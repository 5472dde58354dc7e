"""`trellis apply` of a large manifest: the CLI's wall time and memory against the API alone.

For each size, a manifest of that many documents (a mix of Services,
Workloads, HTTPRoutes and DestinationPolicies, a quarter each, every route and
policy naming its service) is applied twice, each time into a fresh `trellis
control` (empty store, no nodes): once by the real CLI (`trellis apply -f
FILE`, as a user runs it: read, validate locally, one request, print one line
per document), once as the same documents POSTed to `/api/v1/apply` in one
request (the reference: what the control plane itself costs). Reported: the
CLI's wall time, peak RSS and CPU (from `wait4`, the figures `/usr/bin/time -v`
prints), the API's wall time, and the size of the request.

Must not know how the CLI or the control plane work inside.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import yaml

from bench.procs import Child
from bench.report import Section
from trellis.model.documents import parse_document

TOKEN = "bench-admin-token"
TRELLIS = str(Path(sys.executable).with_name("trellis"))


def manifest(count: int, namespace: str = "bench") -> str:
    """`count` documents (rounded down to a multiple of 4) as one YAML stream."""
    docs: list[str] = []
    for i in range(count // 4):
        docs.append(f"""\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata:
  name: svc-{i}
  namespace: {namespace}
  labels: {{app: svc-{i}, tier: backend}}
spec:
  selector: {{app: svc-{i}}}
  ports:
  - {{name: http, port: 8080, protocol: http}}
""")
        docs.append(f"""\
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata:
  name: wl-{i}
  namespace: {namespace}
  labels: {{app: svc-{i}}}
spec:
  address: 10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}
  ports: [{{name: http, port: 8080}}]
  proxyless: true
""")
        docs.append(f"""\
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {{name: route-{i}, namespace: {namespace}}}
spec:
  parentRefs: [{{name: svc-{i}, port: 8080}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
    backendRefs: [{{name: svc-{i}, port: 8080, weight: 90}}]
    timeouts: {{request: 10s}}
  - backendRefs: [{{name: svc-{i}, weight: 1}}]
""")
        docs.append(f"""\
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {{name: dp-{i}, namespace: {namespace}}}
spec:
  service: svc-{i}
  loadBalancer: {{type: ROUND_ROBIN}}
""")
    return "---\n".join(docs)


@dataclass(frozen=True, slots=True)
class Plane:
    api: str
    env: dict[str, str]  # for CLI runs: its config file names the API and the token


@contextmanager
def control_plane(workdir: Path) -> Iterator[Plane]:
    """A fresh `trellis control` on free ports in `workdir`, stopped (by PID) on exit."""
    env = {"TRELLIS_TOKEN": TOKEN, "TRELLIS_CONFIG": str(workdir / "cli.json")}
    child = Child(
        [
            TRELLIS,
            "control",
            "--data-dir",
            str(workdir / "data"),
            "--listen",
            "127.0.0.1:0",
            "--xds-listen",
            "127.0.0.1:0",
            "--secure-listen",
            "127.0.0.1:0",
            "--log-level",
            "warning",
        ],
        workdir,
        "control",
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while "secure listening on" not in child.output():  # the banner's last line
            if not child.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"trellis control did not start:\n{child.stderr_tail()}")
            time.sleep(0.05)
        config = workdir / "cli.json"
        api = json.loads(config.read_text())["server"]
        cli_env = {**os.environ, "TRELLIS_CONFIG": str(config)}
        cli_env.pop("TRELLIS_SERVER", None)
        cli_env.pop("TRELLIS_TOKEN", None)
        yield Plane(api, cli_env)
    finally:
        child.stop()


@dataclass(frozen=True, slots=True)
class CliRun:
    wall: float
    max_rss: int  # bytes
    cpu: float  # user + system seconds
    lines: int  # lines printed (one per document)


def run_cli(plane: Plane, path: Path) -> CliRun:
    """`trellis apply -f PATH` to completion, with its rusage (as /usr/bin/time -v reads it)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [TRELLIS, "apply", "-f", str(path)], env=plane.env, stdout=out, stderr=err
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"trellis apply failed: {err.read().decode()[-2000:]}")
        lines = out.read().count(b"\n")
    return CliRun(wall, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, lines)


def run_api(plane: Plane, body: bytes) -> float:
    """Seconds for one POST /api/v1/apply of `body` (already encoded JSON)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    start = time.perf_counter()
    response = httpx.post(f"{plane.api}/api/v1/apply", content=body, headers=headers, timeout=600)
    response.raise_for_status()
    return time.perf_counter() - start


def request_body(text: str) -> bytes:
    """The apply request the CLI sends for `text`: validated documents, compact JSON."""
    raw = [d for d in yaml.load_all(text, Loader=yaml.CSafeLoader) if d]
    docs = [parse_document(d).to_dict() for d in raw]
    return json.dumps({"documents": docs}, separators=(",", ":")).encode()


def run(quick: bool) -> Section:
    sizes = [1000] if quick else [1000, 10000]
    rows: list[str] = []
    with tempfile.TemporaryDirectory(prefix="trellis-bench-apply-") as tmp:
        root = Path(tmp)
        for n in sizes:
            path = root / f"mesh-{n}.yaml"
            text = manifest(n)
            path.write_text(text)
            (root / f"cli-{n}").mkdir()
            with control_plane(root / f"cli-{n}") as plane:
                cli = run_cli(plane, path)
            if cli.lines != n:
                raise RuntimeError(f"trellis apply printed {cli.lines} lines for {n} documents")
            (root / f"api-{n}").mkdir()
            body = request_body(text)
            with control_plane(root / f"api-{n}") as plane:
                api = run_api(plane, body)
            rows.append(
                f"| {n} | {len(text) / 1e6:.1f} | {cli.wall:.2f} | {cli.max_rss / 2**20:.0f}"
                f" | {cli.cpu:.2f} | {api:.2f} | {cli.wall / api:.1f}x | {len(body) / 1e6:.1f} |"
            )
            print(f"  {n} documents: CLI {cli.wall:.2f} s, API {api:.2f} s", flush=True)
    return Section(
        "apply",
        "\n".join(
            [
                "Documents: a quarter each of Services, Workloads, HTTPRoutes (two rules) and"
                " DestinationPolicies; each run into a fresh control plane (empty store).",
                "CLI: `trellis apply -f FILE` as a subprocess, rusage from `wait4` (as"
                " `/usr/bin/time -v` reports it). API: the same documents in one"
                " `POST /api/v1/apply` (the request the CLI sends: its size is the last column).",
                f"CPUs: {os.cpu_count()}; not pinned.",
                "",
                "| documents | YAML (MB) | CLI wall (s) | CLI max RSS (MB) | CLI CPU (s)"
                " | API alone (s) | CLI / API | request (MB) |",
                "|---:|---:|---:|---:|---:|---:|---:|---:|",
                *rows,
            ]
        ),
    )
