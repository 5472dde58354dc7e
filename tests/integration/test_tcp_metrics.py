"""TCP metrics for a CONNECT tunnel through two sidecars (client `trellis proxy` → `pipe`'s
sidecar over mTLS → its app): both sides count the connection opened while it is open,
closed once it ends, and the bytes each way, under Istio's TCP labels
(`request_protocol="tcp"`, principals from the certificates); the tunnel is not a request.
"""

from __future__ import annotations

import socket

import pytest

from tests.integration.dataplane import Sidecar, client_sidecar, metric_total, run_service
from tests.integration.harness import Mesh, wait_for

pytestmark = pytest.mark.integration

CLIENT_ID = "spiffe://trellis.local/ns/default/sa/client"
PIPE_ID = "spiffe://trellis.local/ns/default/sa/pipe"


def tcp(sidecar: Sidecar, name: str, **labels: str) -> float:
    return metric_total(sidecar.metrics(), f"trellis_tcp_{name}", **labels)


def test_a_connect_tunnel_counts_in_the_tcp_metrics_on_both_sides(mesh: Mesh) -> None:
    pipe = run_service(mesh, "pipe", run_args=("--protocol", "tcp"))
    client = client_sidecar(mesh)
    host, _, port = client.outbound.rpartition(":")
    inner = b"GET /through-the-tunnel HTTP/1.1\r\nHost: pipe\r\nConnection: close\r\n\r\n"
    source = {"reporter": "source", "destination_service_name": "pipe"}
    destination = {"reporter": "destination", "source_workload": "client"}
    with socket.create_connection((host, int(port)), timeout=10) as s:
        target = f"pipe:{pipe.port}"
        s.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = s.recv(65536)
            assert piece, answer
            answer += piece
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head
        # Open: counted as opened on both sides, not yet closed.
        wait_for(
            lambda: (
                tcp(client, "connections_opened_total", **source) == 1
                and tcp(pipe.sidecar, "connections_opened_total", **destination) == 1
            ),
            10,
            "the tunnel counted as opened on both sides",
        )
        assert tcp(client, "connections_closed_total", **source) == 0
        s.sendall(inner)
        response = rest
        while True:
            piece = s.recv(65536)
            if not piece:
                break
            response += piece
    assert response.startswith(b"HTTP/1.1 200"), response[:100]

    def closed() -> bool:
        return (
            tcp(client, "connections_closed_total", **source) == 1
            and tcp(pipe.sidecar, "connections_closed_total", **destination) == 1
        )

    wait_for(closed, 10, "the tunnel counted as closed on both sides")
    for sidecar, labels in ((client, source), (pipe.sidecar, destination)):
        assert tcp(sidecar, "received_bytes_total", **labels) == len(inner)
        assert tcp(sidecar, "sent_bytes_total", **labels) == len(response)
        assert tcp(sidecar, "connections_opened_total", **labels) == 1
    text = client.metrics()
    line = next(x for x in text.splitlines() if x.startswith("trellis_tcp_sent_bytes_total{"))
    for expected in (
        'request_protocol="tcp"',
        'connection_security_policy="mutual_tls"',
        f'source_principal="{CLIENT_ID}"',
        'destination_service_namespace="default"',
    ):
        assert expected in line, line
    assert "response_code" not in line  # Istio's TCP metrics have none
    pipe_text = pipe.sidecar.metrics()
    line = next(
        x for x in pipe_text.splitlines() if x.startswith("trellis_tcp_received_bytes_total{")
    )
    for expected in (
        f'source_principal="{CLIENT_ID}"',
        f'destination_principal="{PIPE_ID}"',
        'destination_app="pipe"',
        'connection_security_policy="mutual_tls"',
    ):
        assert expected in line, line
    # The tunnel is a TCP connection, not an HTTP request.
    assert metric_total(text, "trellis_requests_total", destination_service_name="pipe") == 0
    assert metric_total(pipe_text, "trellis_requests_total", source_workload="client") == 0
