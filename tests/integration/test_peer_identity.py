"""A mesh identity is exactly one SPIFFE ID of the mesh's trust domain, through real
sidecars and real TLS: certificates signed by the running control plane's own CA (its
`ca/ca-key.pem`) that name no URI SAN, two, a foreign trust domain or something other
than a workload SPIFFE ID are refused by a STRICT inbound listener before anything
reaches the app, and a calling sidecar refuses a server whose certificate names two
SPIFFE IDs even when one of them is the one it expects."""

from __future__ import annotations

import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator

import pytest
from cryptography import x509

from tests.integration.dataplane import client_sidecar, run_service
from tests.integration.harness import Mesh, free_port, wait_for
from tests.proxy.identity.pki import Root, dns, tls_context, uris

pytestmark = pytest.mark.integration
TD = "trellis.local"


def spiffe(sa: str, ns: str = "default", td: str = TD) -> str:
    return f"spiffe://{td}/ns/{ns}/sa/{sa}"


def mesh_ca(mesh: Mesh) -> Root:
    """The control plane's signing CA itself (self-signed mode: the mesh root)."""
    ca = mesh.cp.data_dir / "ca"
    return Root.load((ca / "ca-cert.pem").read_bytes(), (ca / "ca-key.pem").read_bytes())


def raw_get(address: str, context: ssl.SSLContext, path: str) -> bytes:
    """What a raw mTLS client gets from a listener: the answer, or b"" when refused."""
    host, _, port = address.rpartition(":")
    try:
        plain = socket.create_connection((host, int(port)), timeout=5)
        with plain, context.wrap_socket(plain) as sock:
            request = f"GET {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
            sock.sendall(request.encode())
            out = b""
            while chunk := sock.recv(65536):
                out += chunk
            return out
    except (OSError, ssl.SSLError):
        return b""


REFUSED: dict[str, list[x509.GeneralName]] = {
    "no-san": [],
    "dns-san-only": dns("prober.default.svc"),
    "two-uri-sans": uris(spiffe("prober"), spiffe("shop")),
    "foreign-trust-domain": uris(spiffe("prober", td="evil.example")),
    "non-spiffe-uri": uris("https://prober.example/"),
    "spiffe-not-a-workload": uris(f"spiffe://{TD}/prober"),
}


def test_a_strict_inbound_listener_takes_exactly_one_spiffe_id_of_the_mesh(mesh: Mesh) -> None:
    shop = run_service(mesh, "shop", app_args=("--log-requests",))
    ca, bundle = mesh_ca(mesh), mesh.cp.bundle()
    inbound = shop.sidecar.inbound
    good = tls_context(*ca.leaf(uris(spiffe("prober"))), bundle)
    # The same CA, the same kind of certificate, one SPIFFE ID: served.
    assert b"200 OK" in raw_get(inbound, good, "/good")
    answers = {
        name: raw_get(inbound, tls_context(*ca.leaf(sans), bundle), f"/refused/{name}")
        for name, sans in REFUSED.items()
    }
    assert answers == dict.fromkeys(REFUSED, b""), answers
    assert b"200 OK" in raw_get(inbound, good, "/good-again")
    wait_for(lambda: "REQ GET /good-again" in shop.proc.all_lines, 10, "the app to log it")
    assert not [line for line in shop.proc.all_lines if "/refused/" in line]
    stats = shop.sidecar.admin_get("/stats").json()["inbound_acceptor"]
    assert stats["refused_identity"] == len(REFUSED), stats


class TlsServer:
    """A TLS server on a free port that stands for a peer sidecar: it records what each
    connection sent (b"" when the client left without a request) and answers a request
    with 200. Its certificate can be swapped between connections (`context`)."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.context = context
        self.received: list[bytes] = []
        owner = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                try:
                    conn = owner.context.wrap_socket(self.request, server_side=True)
                except (OSError, ssl.SSLError):
                    owner.received.append(b"")
                    return
                data = b""
                with conn:
                    conn.settimeout(5)
                    try:
                        while b"\r\n\r\n" not in data and (piece := conn.recv(65536)):
                            data += piece
                        if data:
                            conn.sendall(
                                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"
                                b"Connection: close\r\n\r\nok"
                            )
                    except (OSError, ssl.SSLError):
                        pass
                owner.received.append(data)

        socketserver.ThreadingTCPServer.daemon_threads = True
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def tls_server() -> Iterator[list[TlsServer]]:
    servers: list[TlsServer] = []
    try:
        yield servers
    finally:
        for s in servers:
            s.close()


SHOP = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: shop}}
spec:
  selector: {{app: shop}}
  ports: [{{name: http, port: 9080, targetPort: http, protocol: http}}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: shop-1, labels: {{app: shop}}}}
spec:
  address: 127.0.0.1
  serviceAccount: shop
  ports: [{{name: http, port: {app}, protocol: http}}]
  inbound: {{port: {inbound}}}
  mtls: true
"""


def test_a_server_certificate_with_two_spiffe_ids_is_refused(
    mesh: Mesh, tls_server: list[TlsServer]
) -> None:
    """The endpoint's certificate, from the mesh CA, names the expected `shop` first and
    another identity after it: the calling sidecar sends it nothing. The same endpoint
    with a certificate that names `shop` alone is served (the setup is sound)."""
    ca, bundle = mesh_ca(mesh), mesh.cp.bundle()
    two = ca.leaf(uris(spiffe("shop"), spiffe("admin")))
    server = TlsServer(tls_context(*two, bundle, server=True))
    tls_server.append(server)
    mesh.cp.apply(SHOP.format(app=free_port(), inbound=server.port))
    client = client_sidecar(mesh)
    with client.client() as c:
        r = c.get("http://shop:9080/secret")
        assert r.status_code == 503 and "UF" in r.headers["x-trellis-flags"], r.text
        assert "not allowed" in r.text
        # The server saw the handshake and then the connection end, no request.
        wait_for(lambda: server.received, 10, "the refused connection to end")
        assert not any(server.received), server.received
        server.context = tls_context(*ca.leaf(uris(spiffe("shop"))), bundle, server=True)
        r = c.get("http://shop:9080/with-one-id")
    assert r.status_code == 200 and r.text == "ok", r.text
    wait_for(lambda: any(b"/with-one-id" in d for d in server.received), 10, "the request")
    assert not [d for d in server.received if b"/secret" in d]
