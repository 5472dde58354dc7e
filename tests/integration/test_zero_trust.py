"""Zero trust through real processes: sidecars speak mTLS with mesh-issued SVIDs, a STRICT
inbound listener lets nothing else reach the app (plaintext, a foreign CA, an expired
certificate), a calling sidecar refuses a server with the wrong SPIFFE ID, policies on
who calls use the certificate's identity, a grpcio proxyless client and server talk mTLS
with mesh SVIDs, and a TLS scan finds only TLS 1.2/1.3 with forward-secret AEAD suites."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integration.dataplane import (
    TRELLIS,
    Member,
    client_sidecar,
    metric_total,
    proxyless_greeter,
    run_service,
    web_app_argv,
)
from tests.integration.harness import TOKEN, Mesh, Proc, free_port, wait_for
from tests.proxy.identity.pki import NOW, Root
from trellis.proxy.identity.agent import IdentityAgent
from trellis.proxy.identity.svid import Svid
from trellis.proxy.identity.tls import client_context

pytestmark = pytest.mark.integration
TD = "trellis.local"


def spiffe(sa: str, ns: str = "default") -> str:
    return f"spiffe://{TD}/ns/{ns}/sa/{sa}"


def issue(mesh: Mesh, service_account: str) -> Svid:
    """A real SVID from the mesh CA: a join token, a CSR, the secure port."""

    async def run() -> Svid:
        agent = IdentityAgent(
            [mesh.cp.secure], mesh.cp.bundle(), mesh.cp.join_token(service_account)
        )
        try:
            return await agent.start()
        finally:
            await agent.aclose()

    return asyncio.run(run())


def raw_get(address: str, context: ssl.SSLContext | None, path: str) -> bytes:
    """What a raw client gets from a listener: the answer, or b"" when refused."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=5) as plain:
            sock = context.wrap_socket(plain) if context is not None else plain
            with sock:
                request = f"GET {path} HTTP/1.1\r\nHost: shop\r\nConnection: close\r\n\r\n"
                sock.sendall(request.encode())
                out = b""
                while chunk := sock.recv(65536):
                    out += chunk
                return out
    except (OSError, ssl.SSLError):
        return b""


def app_requests(member: Member) -> list[str]:
    return [line for line in member.proc.all_lines if line.startswith("REQ ")]


def test_sidecars_speak_mtls_and_nothing_else_reaches_the_app(mesh: Mesh) -> None:
    shop = run_service(mesh, "shop", app_args=("--log-requests",))
    client = client_sidecar(mesh)
    with client.client() as c:
        r = c.get(f"http://shop:{shop.port}/through-the-mesh")
    assert r.status_code == 200 and r.json()["name"] == shop.workload
    source = metric_total(client.metrics(), "trellis_requests_total", reporter="source",
                          connection_security_policy="mutual_tls")  # fmt: skip
    destination = metric_total(
        shop.sidecar.metrics(),
        "trellis_requests_total",
        reporter="destination",
        connection_security_policy="mutual_tls",
    )
    assert source >= 1 and destination >= 1

    inbound = shop.sidecar.inbound
    assert raw_get(inbound, None, "/plaintext") == b""
    foreign = Root.make("not the mesh CA").svid(spiffe("client"))
    assert raw_get(inbound, client_context(foreign), "/foreign") == b""
    expired = Root.make().svid(
        spiffe("client"),
        not_before=NOW - dt.timedelta(hours=2),
        not_after=NOW - dt.timedelta(hours=1),
    )
    assert raw_get(inbound, client_context(expired), "/expired") == b""
    # A real mesh identity gets through (the same raw client).
    mesh_svid = issue(mesh, "prober")
    assert b"200 OK" in raw_get(inbound, client_context(mesh_svid), "/with-svid")
    # The app's log line comes through a reader thread: wait for it, not just the answer.
    wait_for(lambda: "REQ GET /with-svid" in app_requests(shop), 10, "the app to log /with-svid")
    seen = app_requests(shop)
    assert "REQ GET /through-the-mesh" in seen and "REQ GET /with-svid" in seen
    assert not [line for line in seen if line.split()[-1] in ("/plaintext", "/foreign", "/expired")]
    stats = shop.sidecar.admin_get("/stats").json()["inbound_acceptor"]
    assert stats["refused_plaintext"] >= 1 and stats["handshake_failures"] >= 2


IMPOSTOR_WORKLOAD = """
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: shop-fake, labels: {{app: shop}}}}
spec:
  address: 127.0.0.1
  serviceAccount: shop
  ports: [{{name: http, port: {app}, protocol: http}}]
  inbound: {{port: {inbound}}}
  mtls: true
"""
SHOP_SERVICE = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: shop}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 9080, targetPort: http, protocol: http}]
"""


def test_a_server_with_the_wrong_spiffe_id_is_refused(mesh: Mesh, tmp_path: Path) -> None:
    """A sidecar whose certificate says `impostor` serves an endpoint the control plane says
    is `shop`'s: the calling sidecar refuses it, and its app sees nothing."""
    app_port, inbound, admin = free_port(), free_port(), free_port()
    app = Proc(web_app_argv("fake", app_port, "--log-requests"), name="impostor app")
    mesh.procs.append(app)
    app.wait_line(lambda line: line.startswith("READY"), 20)
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(mesh.cp.bundle())
    argv = [TRELLIS, "proxy", "--control", mesh.cp.secure, "--join-token",
            mesh.cp.join_token("impostor"), "--ca-file", str(bundle), "--workload", "impostor",
            "--label", "app=impostor", "--app-port", str(app_port),
            "--inbound", f"127.0.0.1:{inbound}", "--outbound", "127.0.0.1:0",
            "--admin", f"127.0.0.1:{admin}"]  # fmt: skip
    mesh.procs.append(Proc(argv, name="impostor sidecar"))
    wait_for(lambda: httpx.get(f"http://127.0.0.1:{admin}/ready").status_code == 200, 30, "it")
    mesh.cp.apply(SHOP_SERVICE + "---" + IMPOSTOR_WORKLOAD.format(app=app_port, inbound=inbound))
    client = client_sidecar(mesh)
    with client.client() as c:
        r = c.get("http://shop:9080/secret")
    assert r.status_code == 503 and "UF" in r.headers["x-trellis-flags"], r.text
    assert "not allowed" in r.text
    refused = [c["identity_refused"] for c in client.clusters() if "shop" in c["name"]]
    assert refused and refused[0] >= 1
    assert not [line for line in app.all_lines if line.startswith("REQ")]


WHO_CALLS = """
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: only-good}
spec:
  selector: {matchLabels: {app: shop}}
  rules:
    - from: [{source: {principals: ["spiffe://trellis.local/ns/default/sa/good"]}}]
"""


def test_policies_on_who_calls_use_the_certificate(mesh: Mesh) -> None:
    shop = run_service(mesh, "shop")
    mesh.cp.apply(WHO_CALLS)
    good, bad = client_sidecar(mesh, "good"), client_sidecar(mesh, "bad")
    url = f"http://shop:{shop.port}/"
    with good.client() as g, bad.client() as b:
        wait_for(lambda: b.get(url).status_code == 403, 10, "the policy to reach the sidecar")
        assert g.get(url).status_code == 200
        # A header cannot pretend to be someone else: identity comes from the certificate.
        forged = b.get(url, headers={"x-trellis-peer": "workload=good;namespace=default;app=good"})
        assert forged.status_code == 403 and forged.headers["x-trellis-flags"] == "RBAC"


def test_proxyless_grpc_client_and_server_talk_mtls_with_mesh_svids(mesh: Mesh) -> None:
    port = free_port()
    proxyless_greeter(mesh, port)
    done = subprocess.run(
        [TRELLIS, "run", "--server", mesh.cp.api, "--service", "caller", "--proxyless", "--",
         sys.executable, "-m", "trellis.demo.xds_client", "--target", f"xds:///greeter:{port}",
         "--calls", "20", "--wait-ready", "15", "--xds-creds", "--csds"],
        env={"TRELLIS_TOKEN": TOKEN, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=90,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])["summary"]
    assert summary["peers"] == {"greeter-1": 20} and not summary["errors"], summary
    statuses = {entry["status"] for entry in summary["csds"]}
    assert statuses == {"ACKED"}, summary["csds"]
    # The server is STRICT: a plaintext gRPC client gets nowhere.
    import grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary("/trellis.test.Echo/Call")
        with pytest.raises(grpc.RpcError):
            call(b"", timeout=3)


def test_a_tls_scan_finds_only_tls12_and_13_with_forward_secret_aead(
    mesh: Mesh, tmp_path: Path
) -> None:
    from sslyze import (
        ClientAuthenticationCredentials,
        ScanCommand,
        Scanner,
        ServerNetworkConfiguration,
        ServerNetworkLocation,
        ServerScanRequest,
    )

    shop = run_service(mesh, "shop")
    svid = issue(mesh, "scanner")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_bytes(svid.chain_pem)
    key.write_bytes(svid.key_pem)
    host, _, port = shop.sidecar.inbound.rpartition(":")
    commands = {
        ScanCommand.SSL_2_0_CIPHER_SUITES,
        ScanCommand.SSL_3_0_CIPHER_SUITES,
        ScanCommand.TLS_1_0_CIPHER_SUITES,
        ScanCommand.TLS_1_1_CIPHER_SUITES,
        ScanCommand.TLS_1_2_CIPHER_SUITES,
        ScanCommand.TLS_1_3_CIPHER_SUITES,
    }
    request = ServerScanRequest(
        server_location=ServerNetworkLocation(host, int(port)),
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication="shop",
            tls_client_auth_credentials=ClientAuthenticationCredentials(
                certificate_chain_path=cert, key_path=key
            ),
        ),
        scan_commands=commands,
    )
    scanner = Scanner()
    scanner.queue_scans([request])
    (result,) = list(scanner.get_results())
    assert result.scan_result is not None, result.connectivity_error_trace
    accepted: dict[str, list[str]] = {}
    for version in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1", "tls_1_2", "tls_1_3"):
        attempt = getattr(result.scan_result, f"{version}_cipher_suites")
        assert attempt.result is not None, (version, attempt.error_trace)
        accepted[version] = [s.cipher_suite.name for s in attempt.result.accepted_cipher_suites]
    assert not any(accepted[v] for v in ("ssl_2_0", "ssl_3_0", "tls_1_0", "tls_1_1")), accepted
    assert accepted["tls_1_3"], accepted
    for suite in accepted["tls_1_2"]:
        assert "ECDHE" in suite and ("GCM" in suite or "CHACHA20" in suite), suite


def mesh_mode(mode: str) -> str:
    return (
        "apiVersion: trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\n"
        f"spec: {{mtls: {{mode: {mode}}}}}\n"
    )


def test_permissive_takes_plaintext_and_mtls_until_strict(mesh: Mesh) -> None:
    mesh.cp.apply(mesh_mode("PERMISSIVE"))
    shop = run_service(mesh, "shop", app_args=("--log-requests",))
    inbound = shop.sidecar.inbound
    svid = issue(mesh, "prober")
    wait_for(lambda: b"200 OK" in raw_get(inbound, None, "/plain"), 10, "plaintext accepted")
    assert b"200 OK" in raw_get(inbound, client_context(svid), "/mtls")
    mesh.cp.apply(mesh_mode("STRICT"))  # a change of mode reaches the listener live
    wait_for(lambda: raw_get(inbound, None, "/probe") == b"", 10, "plaintext refused")
    assert raw_get(inbound, None, "/after-strict") == b""
    assert b"200 OK" in raw_get(inbound, client_context(svid), "/mtls-again")
    assert "REQ GET /after-strict" not in app_requests(shop)
