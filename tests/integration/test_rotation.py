"""Certificate rotation under load: with a 6 s certificate TTL, 30 s of continuous calls
fail zero times, through sidecars (HTTP) and between proxyless grpcio apps alike, while
every identity is renewed several times (renewal at half life, no restart)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.integration.dataplane import TRELLIS, client_sidecar, proxyless_greeter, run_service
from tests.integration.harness import TOKEN, Mesh, free_port

# Serial: its figures (rates, zero failures, "within 1 s") are about time, measured
# with the machine to itself (make test runs the rest concurrently first).
pytestmark = [pytest.mark.integration, pytest.mark.serial]

SECONDS = 30
SHORT_TTL = """
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec: {certificateTTL: 6s}
"""


def serials(mesh: Mesh, service_account: str) -> set[str]:
    """The serials of the current certificates of a service account's proxies/apps."""
    r = httpx.get(
        f"{mesh.cp.api}/api/v1/identities",
        params={"namespace": "default", "serviceAccount": service_account},
        timeout=5,
    )
    r.raise_for_status()
    return {item["serial"] for item in r.json()["items"]}


def test_rotation_under_load_fails_nothing_sidecar_and_proxyless(mesh: Mesh) -> None:
    mesh.cp.apply(SHORT_TTL)
    shop = run_service(mesh, "shop")
    client = client_sidecar(mesh)
    grpc_port = free_port()
    proxyless_greeter(mesh, grpc_port)

    # Proxyless: a grpcio client under `trellis run --proxyless`, calling for SECONDS.
    caller = subprocess.Popen(
        [TRELLIS, "run", "--server", mesh.cp.api, "--service", "caller", "--proxyless", "--",
         sys.executable, "-m", "trellis.demo.xds_client", "--target",
         f"xds:///greeter:{grpc_port}", "--duration", str(SECONDS), "--interval", "0.01",
         "--wait-ready", "15", "--xds-creds"],
        env={"TRELLIS_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip

    # Sidecars: four threads calling through the client sidecar for SECONDS.
    outcomes: list[int | str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + SECONDS
    url = f"http://shop:{shop.port}/"

    def load() -> None:
        with client.client(timeout=10) as c:
            while time.monotonic() < deadline:
                try:
                    status: int | str = c.get(url).status_code
                except httpx.HTTPError as e:
                    status = repr(e)
                with lock:
                    outcomes.append(status)
                time.sleep(0.005)

    seen: dict[str, set[str]] = {"greeter": set(), "caller": set()}

    def watch() -> None:  # the proxyless apps' certificates, as the CA sees them rotate
        while time.monotonic() < deadline:
            for sa, known in seen.items():
                known.update(serials(mesh, sa))
            time.sleep(1)

    threads = [threading.Thread(target=load) for _ in range(4)]
    threads.append(threading.Thread(target=watch))
    for t in threads:
        t.start()
    for t in threads:
        t.join(SECONDS + 30)
    out, err = caller.communicate(timeout=SECONDS + 60)

    failures = [o for o in outcomes if o != 200]
    assert len(outcomes) > 1000 and not failures, (len(outcomes), failures[:5])
    assert caller.returncode == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])["summary"]
    assert summary["calls"] > 1000 and not summary["errors"], summary

    # Everyone renewed, several times, without a restart.
    for sidecar in (shop.sidecar, client):
        identity = sidecar.admin_get("/stats").json()["identity"]
        log = "\n".join(sidecar.proc.stderr_lines[-20:])
        assert identity["renewals"] >= 5, f"{identity}\n{log}"
    assert len(seen["greeter"]) >= 5 and len(seen["caller"]) >= 5, seen
