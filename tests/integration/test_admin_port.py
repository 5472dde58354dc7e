"""The admin port of a real sidecar answers only for its own names: a request whose Host
(or absolute-form target) names another host, as a DNS-rebinding page's does, gets 421
and nothing of the proxy's state, on every path; localhost, 127.0.0.1 and [::1], with or
without the port, are served, and so is the address an admin port bound to a wildcard
was reached on."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import httpx
import pytest

from tests.integration.dataplane import TRELLIS, client_sidecar
from tests.integration.harness import Mesh, Proc, free_port, wait_for

pytestmark = pytest.mark.integration

PATHS = ["/ready", "/config_dump", "/clusters", "/metrics", "/stats", "/no-such-page"]


@dataclass
class Answer:
    status: int
    head: bytes
    body: bytes


def ask(address: tuple[str, int], request: bytes) -> Answer:
    """One raw request, `Connection: close`: the status, head and body of its answer."""
    with socket.create_connection(address, timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return Answer(int(head.split()[1]), head, body)


def get(address: tuple[str, int], path: str, host: str, method: str = "GET") -> Answer:
    request = f"{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    return ask(address, request.encode())


def test_a_foreign_host_is_misdirected_on_every_path(mesh: Mesh) -> None:
    sidecar = client_sidecar(mesh)
    host, _, port_text = sidecar.admin.rpartition(":")
    address, port = (host, int(port_text)), int(port_text)
    for path in PATHS:
        for foreign in (
            "evil.example",
            f"evil.example:{port}",
            f"localhost.evil.example:{port}",
            f"127.0.0.1.evil.example:{port}",
            f"10.1.2.3:{port}",
        ):
            for method in ("GET", "HEAD", "POST"):
                answer = get(address, path, foreign, method)
                assert answer.status == 421, (path, foreign, method, answer.head)
                assert b"connection: close" in answer.head.lower()
                assert b"misdirected" in answer.body or method == "HEAD", answer.body
        # An absolute-form target names the host, whatever Host says.
        line = f"GET http://evil.example{path} HTTP/1.1"
        answer = ask(address, f"{line}\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        assert answer.status == 421, (path, answer.head)
    # Its own names are served, with or without the port.
    for own in (
        "localhost",
        f"localhost:{port}",
        "127.0.0.1",
        f"127.0.0.1:{port}",
        f"[::1]:{port}",
    ):
        assert get(address, "/ready", own).status == 200, own
        dump = get(address, "/config_dump", own)
        assert dump.status == 200 and b"trellis/inbound" in dump.body, own
    # What the tests and tools use (httpx, as Prometheus would scrape) still gets through.
    assert sidecar.ready() and "trellis_" in sidecar.metrics()
    assert httpx.get(f"http://localhost:{port}/stats", trust_env=False).status_code == 200


def _outside_address() -> str:
    """An address of this machine that is not loopback (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return ""
        address = str(probe.getsockname()[0])
    return "" if address.startswith("127.") else address


def test_an_admin_port_on_a_wildcard_answers_for_the_address_it_was_reached_on(
    mesh: Mesh,
) -> None:
    outside = _outside_address()
    if not outside:
        pytest.skip("this machine has no address other than loopback")
    admin = free_port()
    argv = [TRELLIS, "proxy", "--control", mesh.cp.xds, "--workload", "wild",
            "--outbound", f"127.0.0.1:{free_port()}", "--inbound", f"127.0.0.1:{free_port()}",
            "--admin", f"0.0.0.0:{admin}"]  # fmt: skip
    proc = Proc(argv, name="trellis proxy wild")
    mesh.procs.append(proc)
    url = f"http://127.0.0.1:{admin}/ready"
    wait_for(lambda: httpx.get(url, trust_env=False).status_code == 200, 30, "its /ready")
    there = (outside, admin)
    assert get(there, "/ready", f"{outside}:{admin}").status == 200
    assert get(there, "/ready", outside).status == 200
    assert get(there, "/ready", f"localhost:{admin}").status == 200
    assert get(there, "/config_dump", f"evil.example:{admin}").status == 421
    assert get(there, "/config_dump", "192.0.2.254").status == 421  # not its address
