"""A Trellis sidecar pair in front of a backend: `trellis control` plus two `trellis proxy`.

The control plane gets a Service `backend` (port 8080, HTTP) and a Workload
`backend-0` whose inbound port is sidecar B's; sidecar B forwards to the
backend's real port, sidecar A (the client's) routes origin-form requests by
their Host header (`backend:8080`) to B. The benchmark then talks to A's
outbound listener. Startup waits for both admin `/ready` answers.

Coded against the `trellis proxy` CLI in docs/design/data-plane.md; when
that command is missing, `unavailable` says why and the caller skips the path.

The pair speaks mesh mTLS, as `trellis run` sidecars do: each sidecar gets a
join token for its service account and the CA bundle, and talks to the
control plane's secure port (`mtls=False` measures the plaintext pair).

`mesh_documents` and the argv builders are pure. Must not know what is
measured through the pair.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.procs import Child, free_port

TOKEN = "token"
API_VERSION = "trellis.dev/v1alpha1"
SERVICE = "backend"
SERVICE_PORT = 8080
HOST = f"{SERVICE}:{SERVICE_PORT}"  # what the client sends as Host to sidecar A
_API, _XDS, _SECURE = "API listening on ", "xDS listening on ", "secure listening on "


def trellis_binary() -> str:
    return str(Path(sys.executable).with_name("trellis"))


def unavailable(trellis: str | None = None) -> str | None:
    """None when `trellis proxy` exists, else why not (for the report)."""
    try:
        out = subprocess.run(
            [trellis or trellis_binary(), "proxy", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`trellis proxy --help` could not run ({exc})"
    if out.returncode != 0:
        return f"`trellis proxy --help` exited {out.returncode}: `trellis proxy` is not built yet"
    return None


def mesh_documents(backend_port: int, inbound_port: int, mtls: bool = True) -> list[dict[str, Any]]:
    """The Service and the Workload (behind sidecar B) the pair routes through."""
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "Service",
            "metadata": {"name": SERVICE},
            "spec": {
                "selector": {"app": SERVICE},
                "ports": [
                    {
                        "name": "http",
                        "port": SERVICE_PORT,
                        "targetPort": "http",
                        "protocol": "http",
                    }
                ],
            },
        },
        {
            "apiVersion": API_VERSION,
            "kind": "Workload",
            "metadata": {"name": f"{SERVICE}-0", "labels": {"app": SERVICE}},
            "spec": {
                "address": "127.0.0.1",
                "ports": [{"name": "http", "port": backend_port, "protocol": "http"}],
                "inbound": {"port": inbound_port},
                "mtls": mtls,
            },
        },
    ]


def mesh_config_tracing(tracing: dict[str, Any]) -> dict[str, Any]:
    """The MeshConfig with `tracing` set (e.g. `{"enabled": False}`, `{"sampling": 100}`)."""
    return {
        "apiVersion": API_VERSION,
        "kind": "MeshConfig",
        "metadata": {"name": "mesh"},
        "spec": {"tracing": tracing},
    }


def control_argv(trellis: str, data_dir: Path) -> list[str]:
    return [
        trellis,
        "control",
        "--data-dir",
        str(data_dir),
        "--listen",
        "127.0.0.1:0",
        "--xds-listen",
        "127.0.0.1:0",
        "--secure-listen",
        "127.0.0.1:0",
        "--log-level",
        "warning",
    ]


def server_sidecar_argv(
    trellis: str,
    xds: str,
    backend_port: int,
    inbound_port: int,
    admin_port: int,
    identity: list[str] | None = None,
) -> list[str]:
    return [
        trellis,
        "proxy",
        *(identity or []),
        "--control",
        xds,
        "--workload",
        f"{SERVICE}-0",
        "--label",
        f"app={SERVICE}",
        "--app-port",
        str(backend_port),
        "--inbound",
        f"127.0.0.1:{inbound_port}",
        "--outbound",
        "127.0.0.1:0",
        "--admin",
        f"127.0.0.1:{admin_port}",
    ]


def client_sidecar_argv(
    trellis: str, xds: str, outbound_port: int, admin_port: int, identity: list[str] | None = None
) -> list[str]:
    return [
        trellis,
        "proxy",
        *(identity or []),
        "--control",
        xds,
        "--workload",
        "client-0",
        "--label",
        "app=client",
        "--outbound",
        f"127.0.0.1:{outbound_port}",
        "--inbound",
        "127.0.0.1:0",
        "--admin",
        f"127.0.0.1:{admin_port}",
    ]


def _wait_banner(child: Child, timeout: float) -> tuple[str, str, str]:
    """(API URL, plaintext xDS address, secure address) from the control plane's banner."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = child.output().splitlines()
        api = [ln.removeprefix(_API) for ln in lines if ln.startswith(_API)]
        xds = [ln.removeprefix(_XDS) for ln in lines if ln.startswith(_XDS)]
        secure = [ln.removeprefix(_SECURE) for ln in lines if ln.startswith(_SECURE)]
        if api and xds and secure:
            return api[0].strip(), xds[0].strip(), secure[0].strip()
        if not child.alive():
            break
        time.sleep(0.05)
    raise RuntimeError(f"trellis control did not start:\n{child.stderr_tail()}")


def _call(api: str, method: str, path: str, body: Any = None) -> bytes:
    address = api.removeprefix("http://").rstrip("/")
    host, _, port = address.rpartition(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request(
            method,
            path,
            body=None if body is None else json.dumps(body),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"},
        )
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status >= 300:
        raise RuntimeError(f"{method} {path} failed: {response.status} {data!r}")
    return data


def _apply(api: str, documents: list[dict[str, Any]]) -> None:
    _call(api, "POST", "/api/v1/apply", {"documents": documents, "source": "bench"})


def _identity(api: str, service_account: str, bundle: Path) -> list[str]:
    """`trellis proxy` flags for a mesh identity: a join token and the pinned CA bundle."""
    body = {"serviceAccount": service_account, "namespace": "default"}
    token = json.loads(_call(api, "POST", "/api/v1/tokens", body))["token"]
    return ["--join-token", token, "--ca-file", str(bundle)]


def _wait_ready(child: Child, admin_port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            break
        try:
            conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=2)
            try:
                conn.request("GET", "/ready")
                if conn.getresponse().status == 200:
                    return
            finally:
                conn.close()
        except OSError:
            pass
        time.sleep(0.1)
    state = "exited" if not child.alive() else "not ready"
    raise RuntimeError(
        f"{child.name} {state} after {timeout:.0f} s (admin :{admin_port}):\n{child.stderr_tail()}"
    )


class SidecarPair:
    """Control plane on the load side, two sidecars on the measured side; stop() ends all."""

    def __init__(
        self,
        logs: Path,
        backend_port: int,
        load_prefix: list[str],
        measured_prefix: list[str],
        mtls: bool = True,
        tracing: dict[str, Any] | None = None,
    ) -> None:
        self.logs, self.backend_port = logs, backend_port
        self.mtls = mtls
        # MeshConfig `tracing` for the pair (None: the mesh default, 1% sampling).
        self.tracing = tracing
        self.load_prefix, self.measured_prefix = load_prefix, measured_prefix
        self.outbound_port = free_port()
        self.children: list[Child] = []
        self.proxies: dict[str, Child] = {}
        self.admin_ports: dict[str, int] = {}

    def start(self, timeout: float = 60) -> None:
        trellis = trellis_binary()
        control = Child(
            [*self.load_prefix, *control_argv(trellis, self.logs / "control-data")],
            self.logs,
            "trellis-control",
            env={"TRELLIS_TOKEN": TOKEN, "TRELLIS_CONFIG": str(self.logs / "cli.json")},
        )
        self.children.append(control)
        api, xds, secure = _wait_banner(control, timeout)
        inbound_port, admin_b, admin_a = free_port(), free_port(), free_port()
        documents = mesh_documents(self.backend_port, inbound_port, self.mtls)
        if self.tracing is not None:
            documents.append(mesh_config_tracing(self.tracing))
        _apply(api, documents)
        id_b: list[str] = []
        id_a: list[str] = []
        if self.mtls:
            bundle = self.logs / "bundle.pem"
            bundle.write_bytes(_call(api, "GET", "/api/v1/ca/bundle"))
            id_b, id_a = _identity(api, SERVICE, bundle), _identity(api, "client", bundle)
            xds = secure
        server = Child(
            [
                *self.measured_prefix,
                *server_sidecar_argv(trellis, xds, self.backend_port, inbound_port, admin_b, id_b),
            ],
            self.logs,
            "sidecar-B",
        )
        self.children.append(server)
        client = Child(
            [
                *self.measured_prefix,
                *client_sidecar_argv(trellis, xds, self.outbound_port, admin_a, id_a),
            ],
            self.logs,
            "sidecar-A",
        )
        self.children.append(client)
        self.proxies = {"sidecar A": client, "sidecar B": server}
        self.admin_ports = {"sidecar A": admin_a, "sidecar B": admin_b}
        _wait_ready(server, admin_b, timeout)
        _wait_ready(client, admin_a, timeout)

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
