"""A caller's identity in the destination's metrics comes from its certificate under mTLS:
a peer header that names another namespace than the caller's SPIFFE ID is not believed
(only the certificate's namespace and principal are kept), one that agrees is. The callers
are raw mTLS clients with certificates of the running control plane's own CA."""

from __future__ import annotations

import socket
import ssl

import pytest

from tests.integration.dataplane import Member, metric_total, run_service
from tests.integration.harness import Mesh, wait_for
from tests.integration.test_peer_identity import mesh_ca, spiffe
from tests.proxy.identity.pki import tls_context, uris

pytestmark = pytest.mark.integration


def get(member: Member, context: ssl.SSLContext, path: str, peer: str) -> bytes:
    host, _, port = member.sidecar.inbound.rpartition(":")
    request = (
        f"GET {path} HTTP/1.1\r\nHost: shop\r\nx-trellis-peer: {peer}\r\nConnection: close\r\n\r\n"
    )
    with (
        socket.create_connection((host, int(port)), timeout=5) as plain,
        context.wrap_socket(plain) as sock,
    ):
        sock.sendall(request.encode())
        out = b""
        while chunk := sock.recv(65536):
            out += chunk
    return out


def test_the_certificate_decides_the_callers_namespace_and_principal(mesh: Mesh) -> None:
    shop = run_service(mesh, "shop")
    ca, bundle = mesh_ca(mesh), mesh.cp.bundle()
    prober = spiffe("prober", ns="team-a")
    context = tls_context(*ca.leaf(uris(prober)), bundle)
    # A header that claims the default namespace and an admin workload: not believed.
    lie = "workload=admin;namespace=default;app=admin;service=shop.default.svc.mesh"
    assert b"200 OK" in get(shop, context, "/lie", lie)
    # A header that agrees with the certificate: its workload and app are kept.
    truth = "workload=prober-1;namespace=team-a;app=prober;version=v3"
    assert b"200 OK" in get(shop, context, "/truth", truth)

    def counted(**labels: str) -> float:
        return metric_total(
            shop.sidecar.metrics(), "trellis_requests_total", reporter="destination", **labels
        )

    wait_for(lambda: counted(source_principal=prober) == 2, 10, "both requests counted")
    assert counted(source_workload_namespace="team-a", source_principal=prober) == 2
    assert counted(source_workload_namespace="default") == 0
    assert counted(source_workload="admin") == 0 and counted(source_app="admin") == 0
    assert counted(source_workload="unknown", source_app="unknown") == 1
    assert counted(source_workload="prober-1", source_app="prober", source_version="v3") == 1
    assert counted(connection_security_policy="mutual_tls", destination_app="shop") == 2
