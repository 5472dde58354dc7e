"""`make demo`: a control plane and a meshed sample app, running in a minute.

Steps: start `trellis control` (state in .trellis/demo, fresh each run), apply
mesh.yaml, start the services (each a separate process that registers itself
and gets its routes over xDS), drive load through `frontend`, print the
traffic split every second, and tell where to look. Ctrl-C (or --seconds)
stops every process it started, by PID.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import IO

import httpx
import yaml

from trellis.run.bootstrap import bootstrap_json

HERE = Path(__file__).parent
SERVICES = [
    # name, labels, downstream targets
    ("ratings-1", {"app": "ratings"}, []),
    ("greeter-v1", {"app": "greeter", "version": "v1"}, []),
    ("greeter-v2", {"app": "greeter", "version": "v2"}, []),
    ("frontend-1", {"app": "frontend"}, ["xds:///greeter:50051", "xds:///ratings:50051"]),
]


def _port(preferred: int) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Demo:
    def __init__(self, data: Path) -> None:
        self.data = data
        self.children: list[subprocess.Popen[str]] = []
        self.token = secrets.token_urlsafe(24)
        self.api_port = _port(7070)
        self.xds_port = _port(15010)
        self.api = f"http://127.0.0.1:{self.api_port}"
        self.trellis = str(Path(sys.executable).parent / "trellis")

    def spawn(self, argv: list[str], env: dict[str, str], log: str) -> subprocess.Popen[str]:
        out: IO[str] = open(self.data / log, "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            argv, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT, text=True
        )
        self.children.append(proc)
        return proc

    def wait(self, what: str, check: Callable[[], bool], timeout: float = 30) -> None:
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
        env = {"TRELLIS_TOKEN": self.token, "TRELLIS_CONFIG": str(self.data / "cli.json")}
        argv = [
            self.trellis, "control", "--data-dir", str(self.data / "state"),
            "--listen", f"127.0.0.1:{self.api_port}", "--xds-listen", f"127.0.0.1:{self.xds_port}",
        ]  # fmt: skip
        self.spawn(argv, env, "control.log")
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

    def grpc_env(self, workload: str, labels: dict[str, str]) -> dict[str, str]:
        path = self.data / f"bootstrap-{workload}.json"
        path.write_text(
            bootstrap_json(
                control_planes=[f"127.0.0.1:{self.xds_port}"], workload=workload, labels=labels
            )
        )
        return {
            "GRPC_XDS_BOOTSTRAP": str(path),
            "GRPC_EXPERIMENTAL_XDS_DATA_ERROR_HANDLING": "true",
            "grpc_proxy": "",
        }

    def start_services(self) -> None:
        for name, labels, calls in SERVICES:
            argv = [sys.executable, "-m", "trellis.demo.echo_server", "--name", name,
                    "--api", self.api, "--token", self.token, "--ttl", "5"]  # fmt: skip
            for k, v in labels.items():
                argv += ["--label", f"{k}={v}"]
            for target in calls:
                argv += ["--call", target]
            self.spawn(argv, self.grpc_env(name, labels), f"{name}.log")

        def registered() -> bool:
            items = httpx.get(f"{self.api}/api/v1/workloads").json()["items"]
            return len(items) == len(SERVICES)

        self.wait("the services to register", registered)

    def load(self, seconds: float) -> int:
        """Drive load through frontend and print the split every second; returns failed calls."""
        env = self.grpc_env("loadgen", {"app": "loadgen"})
        argv = [sys.executable, "-m", "trellis.demo.xds_client", "--target",
                "xds:///frontend:50051", "--duration", str(seconds), "--interval", "0.005",
                "--stream", "--wait-ready", "15"]  # fmt: skip
        proc = subprocess.Popen(argv, env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
        self.children.append(proc)
        assert proc.stdout is not None
        window: Counter[str] = Counter()
        failed = 0
        last = time.monotonic()
        for line in proc.stdout:
            record = json.loads(line)
            if "summary" in record:
                break
            if record["ok"]:
                greeter = next(p for p in record["peer"].split(" > ") if "greeter" in p)
                window[greeter] += 1
            else:
                failed += 1
                window["error:" + record["code"]] += 1
            if time.monotonic() - last >= 1.0:
                total = sum(window.values())
                split = "  ".join(f"{k} {100 * v / total:5.1f}%" for k, v in sorted(window.items()))
                print(f"  {total:4d} calls/s through frontend → greeter: {split}", flush=True)
                window.clear()
                last = time.monotonic()
        proc.wait()
        return failed

    def stop(self) -> None:
        for proc in reversed(self.children):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.children):
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


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
        print("applied mesh.yaml: frontend, greeter (v1 + v2), ratings; canary 90/10 on greeter")
        demo.start_services()
        config = demo.data / "cli.json"
        trellis = Path(demo.trellis)
        print("every service is a proxyless gRPC process configured over xDS. In another shell:")
        print(f"  export TRELLIS_CONFIG={_short(config)}")
        cli = _short(trellis)
        print(f"  {cli} status                    # each node: config versions, ACKED?")
        print(f"  {cli} describe service greeter  # routes, endpoints, subscribers")
        print(f"  {cli} get grpcroutes -o yaml")
        print(f"logs: {demo.data}/*.log.  Ctrl-C stops everything.", flush=True)
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
