"""Real sidecars for integration tests: `trellis run` around the demo web app, standalone
`trellis proxy` clients, and what their admin ports say.

Everything runs as real processes on 127.0.0.1 with free ports and is stopped
by PID when the test's `Mesh` closes (the Procs are registered with it).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from typing import Any

import httpx

from tests.integration.harness import TOKEN, VENV_BIN, Mesh, Proc, free_port, wait_for

TRELLIS = str(VENV_BIN / "trellis")
_READY = re.compile(r"sidecar ready: outbound (\S+) inbound (\S+) admin (\S+)")


@dataclass
class Sidecar:
    proc: Proc
    outbound: str  # HOST:PORT
    inbound: str
    admin: str

    @property
    def proxy_url(self) -> str:
        return f"http://{self.outbound}"

    def client(self, **kw: Any) -> httpx.Client:
        """An httpx client that sends everything through this sidecar (as HTTP_PROXY would)."""
        return httpx.Client(
            proxy=self.proxy_url, trust_env=False, timeout=kw.pop("timeout", 10), **kw
        )

    def admin_get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://{self.admin}{path}", timeout=5, trust_env=False)

    def metrics(self) -> str:
        return self.admin_get("/metrics").text

    def clusters(self) -> list[dict[str, Any]]:
        return list(self.admin_get("/clusters").json())

    def config_dump(self) -> dict[str, Any]:
        return dict(self.admin_get("/config_dump").json())

    def ready(self) -> bool:
        return self.admin_get("/ready").status_code == 200


@dataclass
class Member:
    """An app under `trellis run`: its process, its sidecar, its port."""

    proc: Proc
    sidecar: Sidecar
    port: int
    workload: str


def web_app_argv(name: str, port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "trellis.demo.web_app",
        "--name",
        name,
        "--port",
        str(port),
        *extra,
    ]


def run_service(
    mesh: Mesh,
    service: str,
    *,
    workload: str = "",
    labels: dict[str, str] | None = None,
    namespace: str = "default",
    app: list[str] | None = None,
    port: int | None = None,
    run_args: tuple[str, ...] = (),
    app_args: tuple[str, ...] = (),
    wait_endpoint: bool = True,
    ttl: float = 10.0,
) -> Member:
    """`trellis run --service SERVICE` around the demo web app (or `app`), on free ports.
    `ttl`: the lease; short only where a test waits for one to expire (a stalled control
    plane on a slow machine must not expire the others)."""
    port = port or free_port()
    workload = workload or f"{service}-{port}"
    argv = [
        TRELLIS,
        "run",
        "--server",
        mesh.cp.api,
        "--service",
        service,
        "--namespace",
        namespace,
        "--workload",
        workload,
        "--port",
        str(port),
        "--outbound-port",
        "0",
        "--inbound-port",
        "0",
        "--admin-port",
        "0",
        "--ttl",
        str(ttl),
        *run_args,
    ]
    for k, v in (labels or {}).items():
        argv += ["--label", f"{k}={v}"]
    argv += ["--", *(app or web_app_argv(workload, port, *app_args))]
    proc = Proc(argv, env={"TRELLIS_TOKEN": TOKEN}, name=f"trellis run {workload}")
    mesh.procs.append(proc)
    sidecar = _wait_sidecar(proc)
    member = Member(proc, sidecar, port, workload)
    if wait_endpoint:
        wait_for(
            lambda: any(
                e["workload"].startswith(workload) for e in mesh.cp.endpoints(service, namespace)
            ),
            20,
            f"{workload} among the endpoints of {service}",
        )
    return member


def proxyless_greeter(mesh: Mesh, port: int) -> Proc:
    """`trellis run --proxyless` around the demo's grpcio echo server as an xDS server
    (A36: its mTLS and authorization come from the control plane), as workload
    `greeter-1` of service `greeter`; returns once it is an endpoint."""
    argv = [TRELLIS, "run", "--server", mesh.cp.api, "--service", "greeter", "--workload",
            "greeter-1", "--port", str(port), "--protocol", "grpc", "--proxyless", "--",
            sys.executable, "-m", "trellis.demo.echo_server", "--name", "greeter-1",
            "--port", str(port), "--xds"]  # fmt: skip
    server = Proc(argv, env={"TRELLIS_TOKEN": TOKEN}, name="greeter")
    mesh.procs.append(server)
    wait_for(lambda: mesh.cp.endpoints("greeter"), 30, "the proxyless server's endpoint")
    return server


def _wait_sidecar(proc: Proc, timeout: float = 30) -> Sidecar:
    def ready_line() -> re.Match[str] | None:
        for line in list(proc.stderr_lines):
            m = _READY.search(line)
            if m:
                return m
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited:\n" + "\n".join(proc.stderr_lines[-30:]))
        return None

    m = wait_for(ready_line, timeout, f"{proc.name}'s sidecar")
    return Sidecar(proc, m.group(1), m.group(2), m.group(3))


def client_sidecar(
    mesh: Mesh,
    workload: str = "client",
    *,
    namespace: str = "default",
    labels: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    identity: bool = True,
) -> Sidecar:
    """A standalone `trellis proxy` for a client that is the test itself; with a mesh
    identity (a join token for its `app` label's service account) unless told not to."""
    outbound, inbound, admin = free_port(), free_port(), free_port()
    labels = labels or {"app": workload}
    control = mesh.cp.xds
    secret: list[str] = []
    if identity:
        bundle = mesh.tmp / f"bundle-{workload}.pem"
        bundle.write_bytes(mesh.cp.bundle())
        token = mesh.cp.join_token(labels.get("app", workload), namespace)
        control = mesh.cp.secure
        secret = ["--join-token", token, "--ca-file", str(bundle)]
    argv = [
        TRELLIS,
        "proxy",
        *secret,
        "--control",
        control,
        "--workload",
        workload,
        "--namespace",
        namespace,
        "--outbound",
        f"127.0.0.1:{outbound}",
        "--inbound",
        f"127.0.0.1:{inbound}",
        "--admin",
        f"127.0.0.1:{admin}",
        *extra,
    ]
    for k, v in labels.items():
        argv += ["--label", f"{k}={v}"]
    proc = Proc(argv, name=f"trellis proxy {workload}")
    mesh.procs.append(proc)
    sidecar = Sidecar(proc, f"127.0.0.1:{outbound}", f"127.0.0.1:{inbound}", f"127.0.0.1:{admin}")

    def ready() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited:\n" + "\n".join(proc.stderr_lines[-30:]))
        return sidecar.ready()

    wait_for(ready, 30, f"{proc.name} /ready")
    return sidecar


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of `name` samples whose labels include `labels`."""
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{"):
            continue
        head, _, value = line.rpartition(" ")
        if all(f'{k}="{v}"' in head for k, v in labels.items()):
            total += float(value)
    return total
