"""`make demo`: a control plane and a meshed sample app, running in a minute.

Steps: start `trellis control` (state in .trellis/demo, fresh each run), apply
mesh.yaml, start the services — each app under `trellis run`, which gives it a
sidecar, registers it and lets it call the others by name — then drive load
through `productpage` (itself a meshed client), print the reviews split every
second, and tell where to look: the dashboard (`/ui/` on the API port; log in with
the admin token), `trellis top`, `trellis tap` and `trellis traces`. Ctrl-C (or
--seconds) stops every process it started, by PID: each `trellis run` deregisters,
drains and stops its app.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx
import yaml

from trellis.ports import bindable, free_port

HERE = Path(__file__).parent
APP = [sys.executable, "-m", "trellis.demo.web_app"]
# workload, service, extra labels, URLs the app calls per request
SERVICES: list[tuple[str, str, dict[str, str], list[str]]] = [
    ("ratings-1", "ratings", {}, []),
    ("details-1", "details", {}, []),
    ("reviews-v1", "reviews", {"version": "v1"}, ["http://ratings:9080/"]),
    ("reviews-v2", "reviews", {"version": "v2"}, ["http://ratings:9080/"]),
    ("productpage-1", "productpage", {}, ["http://reviews:9080/", "http://details:9080/"]),
]
_READY = re.compile(r"sidecar ready: outbound (\S+) inbound (\S+) admin (\S+)")


def _port(preferred: int) -> int:
    """`preferred` when it is free, else a port no other bind to port 0 can take."""
    return preferred if bindable(preferred) else free_port()


class Demo:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.children: list[subprocess.Popen[str]] = []
        self.token = secrets.token_urlsafe(24)
        self.api_port = _port(7070)
        self.xds_port = _port(15010)
        self.secure_port = _port(15012)
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.trellis = str(Path(sys.executable).parent / "trellis")
        self.env = {
            "TRELLIS_TOKEN": self.token,
            "TRELLIS_CONFIG": str(self.data / "cli.json"),
            "TRELLIS_SERVER": self.api,
        }

    def spawn(self, argv: list[str], log: str) -> subprocess.Popen[str]:
        out: IO[str] = open(self.data / log, "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **self.env},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # Ctrl-C reaches the demo only; it stops them in order
        )
        self.children.append(proc)
        return proc

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 45) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if check():
                    return
            except httpx.HTTPError:
                pass
            for p in self.children:
                if p.poll() is not None:
                    raise SystemExit(f"demo: a process exited early ({p.args!r}); see {self.data}")
            time.sleep(0.1)
        raise SystemExit(f"demo: timed out waiting for {what}; logs in {self.data}")

    def start_control_plane(self) -> None:
        argv = [
            self.trellis, "control", "--data-dir", str(self.data / "state"),
            "--listen", f"127.0.0.1:{self.api_port}", "--xds-listen", f"127.0.0.1:{self.xds_port}",
            "--secure-listen", f"127.0.0.1:{self.secure_port}",
        ]  # fmt: skip
        self.spawn(argv, "control.log")
        self.wait("the control plane", lambda: httpx.get(f"{self.api}/healthz").status_code == 200)

    def apply(self, path: Path) -> None:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
        r = httpx.post(
            f"{self.api}/api/v1/apply",
            json={"documents": docs, "source": path.name},
            headers={"Authorization": f"Bearer {self.token}"},
        )
        if r.status_code != 200:
            raise SystemExit(f"demo: apply failed: {r.text}")

    def run_argv(self, workload: str, service: str, labels: dict[str, str]) -> list[str]:
        argv = [self.trellis, "run", "--service", service, "--workload", workload,
                "--outbound-port", "0", "--inbound-port", "0", "--admin-port", "0"]  # fmt: skip
        for k, v in labels.items():
            argv += ["--label", f"{k}={v}"]
        return argv

    def start_services(self) -> None:
        for workload, service, labels, calls in SERVICES:
            port = free_port()
            argv = [*self.run_argv(workload, service, labels), "--port", str(port), "--", *APP,
                    "--name", workload, "--port", str(port)]  # fmt: skip
            for url in calls:
                argv += ["--call", url]
            self.spawn(argv, f"{workload}.log")

        def registered() -> bool:
            items = httpx.get(f"{self.api}/api/v1/workloads").json()["items"]
            return len(items) == len(SERVICES)

        self.wait("the services to register", registered)

    def admin_of(self, workload: str) -> str:
        match = _READY.search((self.data / f"{workload}.log").read_text())
        return match.group(3) if match else "?"

    def load(self, seconds: float) -> int:
        """Drive load through productpage and print the reviews split every second."""
        argv = [*self.run_argv("loadgen", "loadgen", {}), "--", sys.executable, "-m",
                "trellis.demo.load", "--url", "http://productpage:9080/",
                "--seconds", str(seconds)]  # fmt: skip
        proc = subprocess.Popen(
            argv,
            env={**os.environ, **self.env},
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.children.append(proc)
        assert proc.stdout is not None
        failed = 0
        for line in proc.stdout:
            record = json.loads(line)
            if "summary" in record:
                failed = int(record["summary"]["failed"])
                break
            total = record["calls"] or 1
            split = "  ".join(
                f"{k} {100 * v / total:5.1f}%" for k, v in sorted(record["split"].items())
            )
            print(f"  {record['calls']:3d} calls/s to productpage → reviews: {split}", flush=True)
        proc.wait()
        return failed

    def stop(self) -> None:
        for proc in reversed(self.children):
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGTERM)
        for proc in reversed(self.children):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _short(path: Path) -> Path:
    """`path` relative to the working directory when it lies below it."""
    here = Path.cwd()
    return path.relative_to(here) if path.is_relative_to(here) else path


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt


def main() -> None:
    p = argparse.ArgumentParser(description="Run the Trellis demo mesh.")
    p.add_argument("--seconds", type=float, default=float(os.environ.get("DEMO_SECONDS", 0)),
                   help="stop after this many seconds (default: run until Ctrl-C)")  # fmt: skip
    p.add_argument("--data-dir", type=Path, default=Path(".trellis/demo"))
    args = p.parse_args()
    shutil.rmtree(args.data_dir, ignore_errors=True)
    args.data_dir.mkdir(parents=True)
    demo = Demo(args.data_dir.resolve())
    signal.signal(signal.SIGTERM, _interrupt)
    failed = 0
    try:
        print(f"Trellis demo: control plane API {demo.api}, xDS 127.0.0.1:{demo.xds_port}")
        demo.start_control_plane()
        demo.apply(HERE / "mesh.yaml")
        print(
            "applied mesh.yaml: productpage → reviews (v1 90%, v2 10%), details; reviews → ratings"
        )
        demo.start_services()
        cli = _short(Path(demo.trellis))
        print("every app runs under `trellis run` beside its sidecar. In another shell:")
        print(f"  export TRELLIS_CONFIG={_short(demo.data / 'cli.json')}")
        print(f"  {cli} status                    # every sidecar: config versions, ACKED?")
        print(f"  {cli} describe service reviews  # routes, endpoints, subscribers")
        admin = demo.admin_of("productpage-1")
        print(f"  curl -s http://{admin}/metrics | grep trellis_requests_total  # its sidecar")
        print(f"  curl -s http://{admin}/clusters   # endpoints, health, active requests")
        print(f"  {cli} top                       # live table of the busiest edges")
        print(f"  {cli} tap reviews               # live stream of requests to reviews")
        print(f"  {cli} traces --service productpage   # recent traces; then: {cli} trace ID")
        print("(TRELLIS_CONFIG holds the control plane's address and the admin token: traffic")
        print(" data needs the token, and the CLI sends it from there.)")
        print(f"dashboard: {demo.api}/ui/  (log in with this demo's admin token: {demo.token} ;")
        print("  it opens a read-only session cookie; the token is fresh each run)")
        print(f"logs: {_short(demo.data)}/*.log.  Ctrl-C stops everything.", flush=True)
        if args.seconds:
            failed = demo.load(args.seconds)
        else:
            while True:
                failed += demo.load(3600)
    except KeyboardInterrupt:
        pass
    finally:
        demo.stop()
        print(f"demo stopped; {failed} failed calls", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
