"""`trellis run`: apps join the mesh with no code change, jobs keep their exit code, and
SIGTERM lets requests in flight finish."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from tests.integration.dataplane import TRELLIS, client_sidecar, run_service
from tests.integration.harness import TOKEN, Mesh, Proc, free_port, wait_for

pytestmark = pytest.mark.integration


def trellis_run(
    mesh: Mesh, service: str, *command: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    argv = [
        TRELLIS,
        "run",
        "--server",
        mesh.cp.api,
        "--service",
        service,
        "--outbound-port",
        "0",
        "--inbound-port",
        "0",
        "--admin-port",
        "0",
        "--",
        *command,
    ]
    env = {"TRELLIS_TOKEN": TOKEN, "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)


HTTPX_CLIENT = """
import json, sys, httpx
out = {}
for url in sys.argv[1:]:
    r = httpx.get(url, timeout=10)  # HTTP_PROXY from the environment: the sidecar
    out[url] = [r.status_code, r.json()["name"]]
print(json.dumps(out))
"""


def test_httpx_and_curl_under_trellis_run_call_services_by_name(mesh: Mesh) -> None:
    ratings = run_service(mesh, "ratings")
    details = run_service(mesh, "details")
    urls = [f"http://ratings:{ratings.port}/r", f"http://details:{details.port}/d"]

    done = trellis_run(mesh, "web", sys.executable, "-c", HTTPX_CLIENT, *urls)
    assert done.returncode == 0, done.stderr
    answers = json.loads(done.stdout.strip().splitlines()[-1])
    assert answers == {urls[0]: [200, ratings.workload], urls[1]: [200, details.workload]}

    for url, member in zip(urls, (ratings, details), strict=True):
        done = trellis_run(mesh, "shell", "curl", "-sS", "--fail", "--max-time", "10", url)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["name"] == member.workload


def test_a_jobs_exit_code_comes_back(mesh: Mesh) -> None:
    done = trellis_run(mesh, "job", sys.executable, "-c", "import sys; sys.exit(7)")
    assert done.returncode == 7, done.stderr
    done = trellis_run(mesh, "job", sys.executable, "-c", "print('fine')")
    assert done.returncode == 0 and done.stdout.strip() == "fine"


def test_sigterm_drains_requests_in_flight_then_stops(mesh: Mesh) -> None:
    slow = run_service(mesh, "slow")
    client = client_sidecar(mesh)
    results: list[httpx.Response | BaseException] = []

    def call() -> None:
        try:
            with client.client(timeout=20) as c:
                results.append(c.get(f"http://slow:{slow.port}/?delay=2"))
        except BaseException as e:
            results.append(e)

    worker = threading.Thread(target=call)
    worker.start()
    # The request has reached the app before the stop signal goes out.
    wait_for(lambda: _in_flight(slow.sidecar.admin) > 0, 10, "the request in flight at the app")
    slow.proc.signal(signal.SIGTERM)
    worker.join(20)
    assert len(results) == 1
    response = results[0]
    assert isinstance(response, httpx.Response), (
        response,
        slow.proc.stderr_lines[-20:],
        client.proc.stderr_lines[-20:],
    )
    assert response.status_code == 200 and response.json()["name"] == slow.workload
    # trellis run then leaves: deregistered, app stopped, exit status of the app.
    assert slow.proc.wait(20) == 0
    assert not any(e["workload"].startswith(slow.workload) for e in mesh.cp.endpoints("slow"))


def _in_flight(admin: str) -> int:
    stats = httpx.get(f"http://{admin}/stats", timeout=5, trust_env=False).json()
    return int(stats["in_flight"])


def test_proxyless_grpc_app_under_trellis_run(mesh: Mesh) -> None:
    """`--proxyless`: no sidecar; the grpcio app is the endpoint and gets routes over xDS."""
    port = free_port()
    argv = [
        TRELLIS,
        "run",
        "--server",
        mesh.cp.api,
        "--service",
        "greeter",
        "--workload",
        "greeter-1",
        "--port",
        str(port),
        "--protocol",
        "grpc",
        "--proxyless",
        "--",
        sys.executable,
        "-m",
        "trellis.demo.echo_server",
        "--name",
        "greeter-1",
        "--port",
        str(port),
    ]
    proc = Proc(argv, env={"TRELLIS_TOKEN": TOKEN}, name="trellis run --proxyless")
    mesh.procs.append(proc)
    wait_for(lambda: mesh.cp.endpoints("greeter"), 30, "greeter's proxyless endpoint")
    (endpoint,) = mesh.cp.endpoints("greeter")
    assert endpoint["port"] == port
    summary = mesh.run_client(f"xds:///greeter:{port}", "--calls", "20", "--wait-ready", "10")
    assert summary["peers"] == {"greeter-1": 20} and not summary["errors"], summary
    proc.signal(signal.SIGTERM)
    assert proc.wait(20) == 0
    assert mesh.cp.endpoints("greeter") == []


def test_health_path_takes_a_sick_app_out_of_the_endpoints_and_back(
    mesh: Mesh, tmp_path: Path
) -> None:
    sick = tmp_path / "sick"
    member = run_service(
        mesh,
        "checked",
        run_args=("--health-path", "/healthz"),
        app_args=("--unhealthy-file", str(sick)),
    )
    client = client_sidecar(mesh)
    url = f"http://checked:{member.port}/"

    def healthy() -> list[bool]:
        return [e["healthy"] for e in mesh.cp.endpoints("checked")]

    assert healthy() == [True]
    with client.client() as c:
        assert c.get(url).status_code == 200
        sick.touch()  # /healthz now answers 503
        wait_for(lambda: healthy() == [False], 25, "the sick app to be marked unhealthy")
        wait_for(lambda: c.get(url).status_code == 503, 10, "the sidecar to stop routing to it")
        assert "UH" in c.get(url).headers["x-trellis-flags"]
        sick.unlink()
        wait_for(lambda: healthy() == [True], 15, "the app to be healthy again")
        wait_for(lambda: c.get(url).status_code == 200, 10, "traffic to come back")
