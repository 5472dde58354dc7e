"""Real processes for integration tests: the control plane, grpcio backends and clients.

Every process is started on 127.0.0.1 with free ports, waited for by polling
its output or its health endpoint (never a fixed sleep), and killed by PID
when the test ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from trellis.ports import free_port
from trellis.run.bootstrap import bootstrap_json

VENV_BIN = Path(sys.executable).parent
TOKEN = "integration-test-admin-token"


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.05
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as e:
            last_error = e
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout}s waiting for {what} (last error: {last_error})"
    )


class Proc:
    """A child process whose stdout lines are collected by a thread."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None, name: str = "") -> None:
        self.name = name or Path(argv[1] if len(argv) > 1 else argv[0]).name
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.all_lines: list[str] = []
        self.stderr_lines: list[str] = []
        self._pumps = [
            threading.Thread(target=self._pump, daemon=True),
            threading.Thread(target=self._pump_err, daemon=True),
        ]
        for t in self._pumps:
            t.start()

    # Each pump closes its pipe at EOF: a pipe still open when the Proc is dropped (its
    # reader slow to finish on a loaded machine) would be a ResourceWarning, an error here.
    def _pump(self) -> None:
        assert self.popen.stdout is not None
        with self.popen.stdout:
            for line in self.popen.stdout:
                self.all_lines.append(line.rstrip("\n"))
                self.lines.put(line.rstrip("\n"))

    def _pump_err(self) -> None:
        assert self.popen.stderr is not None
        with self.popen.stderr:
            for line in self.popen.stderr:
                self.stderr_lines.append(line.rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.popen.pid

    def wait_line(self, predicate: Callable[[str], bool], timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                line = self.lines.get(timeout=min(remaining, 0.1))
            except queue.Empty:
                if self.popen.poll() is not None:
                    # Ended: let the pump queue what it printed last before giving up.
                    self._pumps[0].join(timeout=5)
                    if self.lines.empty():
                        break
                continue
            if predicate(line):
                return line
        raise AssertionError(
            f"{self.name} (pid {self.pid}, exit {self.popen.poll()}) printed no expected line in "
            f"{timeout}s; stderr tail:\n" + "\n".join(self.stderr_lines[-30:])
        )

    def signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def _reap(self) -> None:
        """After exit: let the pumps read to EOF, then close the pipes. A pipe a grandchild
        still holds (an orphaned app) never ends: its pump is left alone (closing the pipe
        under a reading thread would block on the reader's lock)."""
        for pump, pipe in zip(self._pumps, (self.popen.stdout, self.popen.stderr), strict=True):
            pump.join(timeout=5)
            if pipe is not None and not pump.is_alive():
                pipe.close()

    def stop(self, timeout: float = 5.0) -> int | None:
        if self.popen.poll() is None:
            self.signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.signal(signal.SIGKILL)
                self.popen.wait(5)
        self._reap()
        return self.popen.returncode

    def kill(self) -> None:
        self.signal(signal.SIGKILL)
        self.popen.wait(5)
        self._reap()

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        self._reap()
        return code


@dataclass
class ControlPlane:
    data_dir: Path
    api_port: int = field(default_factory=free_port)
    xds_port: int = field(default_factory=free_port)
    secure_port: int = field(default_factory=free_port)
    proc: Proc | None = None

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def xds(self) -> str:
        return f"127.0.0.1:{self.xds_port}"

    @property
    def secure(self) -> str:
        """The secure port: TLS from the first byte, the CA service and mTLS ADS."""
        return f"127.0.0.1:{self.secure_port}"

    def join_token(self, service_account: str, namespace: str = "default") -> str:
        with self.client() as c:
            r = c.post(
                "/api/v1/tokens",
                json={"serviceAccount": service_account, "namespace": namespace},
            )
        assert r.status_code in (200, 201), r.text
        return str(r.json()["token"])

    def bundle(self) -> bytes:
        r = httpx.get(f"{self.api}/api/v1/ca/bundle", timeout=5)
        r.raise_for_status()
        return r.content

    def start(self) -> None:
        argv = [
            str(VENV_BIN / "trellis"),
            "control",
            "--data-dir",
            str(self.data_dir),
            "--listen",
            f"127.0.0.1:{self.api_port}",
            "--xds-listen",
            self.xds,
            "--secure-listen",
            self.secure,
        ]
        env = {"TRELLIS_TOKEN": TOKEN, "TRELLIS_CONFIG": str(self.data_dir / "cli.json")}
        self.proc = Proc(argv, env=env, name="trellis control")
        wait_for(self.healthy, 20, "the control plane's /healthz")

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.popen.poll() is not None:
            raise AssertionError(
                "control plane exited:\n" + "\n".join(self.proc.stderr_lines[-30:])
            )
        return httpx.get(f"{self.api}/healthz", timeout=1).status_code == 200

    def client(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.api, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def apply(self, text: str) -> dict[str, Any]:
        docs = [d for d in yaml.safe_load_all(text) if d]
        with self.client() as c:
            r = c.post("/api/v1/apply", json={"documents": docs})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def delete(self, text: str) -> dict[str, Any]:
        docs = [d for d in yaml.safe_load_all(text) if d]
        with self.client() as c:
            r = c.post("/api/v1/delete", json={"documents": docs})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def endpoints(self, service: str, namespace: str = "default") -> list[dict[str, Any]]:
        r = httpx.get(
            f"{self.api}/api/v1/describe/services/{service}", params={"namespace": namespace}
        )
        r.raise_for_status()
        return list(r.json()["endpoints"])

    def status(self) -> dict[str, Any]:
        r = httpx.get(f"{self.api}/api/v1/status", timeout=5)
        r.raise_for_status()
        return dict(r.json())

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()


class Mesh:
    """A control plane plus the backends and clients a test starts; all stopped at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.cp = ControlPlane(tmp / "cp")
        self.procs: list[Proc] = []

    def backend(
        self,
        name: str,
        labels: dict[str, str],
        *,
        ttl: float = 10.0,
        fail_first: bool = False,
        namespace: str = "default",
    ) -> Proc:
        argv = [
            sys.executable,
            "-m",
            "trellis.demo.echo_server",
            "--name",
            name,
            "--namespace",
            namespace,
            "--api",
            self.cp.api,
            "--token",
            TOKEN,
            "--ttl",
            str(ttl),
        ]
        for k, v in labels.items():
            argv += ["--label", f"{k}={v}"]
        if fail_first:
            argv.append("--fail-first")
        proc = Proc(argv, name=f"backend {name}")
        self.procs.append(proc)
        proc.wait_line(lambda line: line.startswith("READY"), 20)
        return proc

    def bootstrap(self, workload: str = "client", namespace: str = "default") -> Path:
        path = self.tmp / f"bootstrap-{workload}.{namespace}.json"
        path.write_text(
            bootstrap_json(
                control_planes=[self.cp.xds],
                workload=workload,
                namespace=namespace,
                labels={"app": workload},
            )
        )
        return path

    def client_env(self, bootstrap: Path, fast_not_found: bool = False) -> dict[str, str]:
        env = {"GRPC_XDS_BOOTSTRAP": str(bootstrap), "grpc_proxy": "", "GRPC_VERBOSITY": "ERROR"}
        if fast_not_found:
            env["GRPC_EXPERIMENTAL_XDS_DATA_ERROR_HANDLING"] = "true"
        return env

    def client(
        self,
        target: str,
        *args: str,
        namespace: str = "default",
        workload: str = "client",
        fast_not_found: bool = False,
    ) -> Proc:
        env = self.client_env(self.bootstrap(workload, namespace), fast_not_found)
        argv = [sys.executable, "-m", "trellis.demo.xds_client", "--target", target, *args]
        proc = Proc(argv, env=env, name=f"client {target}")
        self.procs.append(proc)
        return proc

    def run_client(self, target: str, *args: str, timeout: float = 60, **kw: Any) -> dict[str, Any]:
        proc = self.client(target, *args, **kw)
        line = proc.wait_line(lambda line: line.startswith('{"summary"'), timeout)
        return dict(json.loads(line)["summary"])

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop(timeout=3)
        self.cp.stop()


def calls_of(proc: Proc) -> Iterator[dict[str, Any]]:
    for line in list(proc.all_lines):
        if line.startswith('{"t"'):
            yield json.loads(line)
