"""Identity through a real `trellis control` (uvloop, real ports): the secure port's banner line,
`trellis token|ca|identity|check`, the CA service and secure ADS with real grpcio TLS clients."""

from __future__ import annotations

import json
from pathlib import Path

import grpc
import httpx
import pytest
from tests.cli.control_plane import ControlPlane, control_plane
from tests.control.ca.ca_support import make_csr
from tests.control.ca.secure_world import Svid, bundle, call, sign
from tests.control.ca.test_files import write_user_ca
from tests.control.xds.ads_world import AdsClient

from trellis.control.ca import pki
from trellis.control.ca.service import SIGN_METHOD
from trellis.control.translate.api import CLUSTER_TYPE

SHOP = """\
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec: {selector: {app: reviews}, ports: [{port: 9080}]}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: reviews-1, namespace: shop, labels: {app: reviews}}
spec: {address: 127.0.0.1, inbound: {port: 15006}, ports: [{port: 9080}]}
"""
CLUSTER = "outbound|9080||reviews.shop.svc.mesh"


def ca_bundle(cp: ControlPlane) -> bytes:
    return httpx.get(f"{cp.api_url}/api/v1/ca/bundle", timeout=10).content


def channel(
    cp: ControlPlane, svid: Svid | None = None, roots: bytes | None = None
) -> grpc.aio.Channel:
    creds = grpc.ssl_channel_credentials(
        roots or ca_bundle(cp),
        svid.key_pem if svid else None,
        svid.chain_pem if svid else None,
    )
    return grpc.aio.secure_channel(cp.secure_address, creds)


def token(cp: ControlPlane, service: str, namespace: str = "default") -> str:
    got = cp.run("token", "create", "--service", service, "-n", namespace, "--ttl", "1h")
    assert got.returncode == 0, got.stderr
    assert "shown only once" in got.stderr
    return got.stdout.strip()


def test_secure_port_is_announced_after_the_other_banner_lines(cp: ControlPlane) -> None:
    assert len(cp.banner) == 5
    assert cp.banner[4] == f"secure listening on {cp.secure_address}"
    assert cp.secure_address.startswith("127.0.0.1:")
    info = httpx.get(f"{cp.api_url}/api/v1/info", timeout=10).json()
    assert info["secure"] == cp.secure_address
    assert cp.data_dir is not None
    assert (cp.data_dir / "ca" / "ca-key.pem").stat().st_mode & 0o777 == 0o600


def test_token_create_list_revoke(cp: ControlPlane) -> None:
    secret = token(cp, "ratings", "tokens-ns")
    token_id = secret.partition(".")[0]
    listed = cp.run("token", "list")
    assert listed.returncode == 0
    row = next(line for line in listed.stdout.splitlines() if line.startswith(token_id))
    assert row.split()[1:5] == ["tokens-ns", "ratings", row.split()[3], "valid"]
    assert secret not in listed.stdout
    as_json = json.loads(cp.run("token", "list", "--json").stdout)
    assert token_id in {t["id"] for t in as_json["items"]}
    revoked = cp.run("token", "revoke", token_id)
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert "revoked" in next(
        line for line in cp.run("token", "list").stdout.splitlines() if line.startswith(token_id)
    )
    missing = cp.run("token", "revoke", "000000000000")
    assert missing.returncode == 1 and "not found" in missing.stderr
    bad = cp.run("token", "create", "--service", "x", "--ttl", "soon")
    assert bad.returncode == 2 and "not a duration" in bad.stderr


async def test_join_then_secure_xds_then_identity_show(cp: ControlPlane, tmp_path: Path) -> None:
    manifest = tmp_path / "shop.yaml"
    manifest.write_text(SHOP)
    assert cp.run("apply", "-f", str(manifest)).returncode == 0
    secret = token(cp, "reviews", "shop")
    async with channel(cp) as anonymous:
        svid = await sign(anonymous, token=secret)
        assert svid.answer["spiffeId"] == "spiffe://trellis.local/ns/shop/sa/reviews"
        # No client certificate: ADS on the secure port is refused as the stream opens.
        client = AdsClient(anonymous, "sidecar~reviews-1.shop", namespace="shop")
        code, details = await client.refusal()
        assert code == grpc.StatusCode.UNAUTHENTICATED
        assert "mesh client certificate" in details
    async with channel(cp, svid) as mtls:
        impostor = AdsClient(
            mtls, "sidecar~reviews-1.shop", namespace="shop", serviceAccount="admin"
        )
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await impostor.send(CLUSTER_TYPE, [CLUSTER])
            await impostor.call.read()
        assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
        node = AdsClient(
            mtls,
            "sidecar~reviews-1.shop",
            kind="sidecar",
            namespace="shop",
            serviceAccount="reviews",
        )
        response = await node.subscribe(CLUSTER_TYPE, [CLUSTER])
        assert len(response.resources) == 1 and not response.resource_errors
        status = httpx.get(f"{cp.api_url}/api/v1/status", timeout=10).json()
        (bound,) = [n for n in status["nodes"] if n["id"] == "sidecar~reviews-1.shop"]
        assert bound["certificate"]["serial"] == svid.serial
        table = cp.run("status").stdout.splitlines()
        row = next(line.split() for line in table if line.startswith("sidecar~reviews-1.shop"))
        assert table[0].split()[-2:] == ["CERT", "EXPIRES"]
        assert row[-1].startswith("in-"), row

        shown = cp.run("identity", "show", "reviews-1", "-n", "shop")
        assert shown.returncode == 0, shown.stderr
        assert "SPIFFE ID:       spiffe://trellis.local/ns/shop/sa/reviews" in shown.stdout
        assert svid.serial in shown.stdout and "sidecar~reviews-1.shop" in shown.stdout
        await node.aclose()
    as_json = json.loads(cp.run("identity", "show", "reviews-1", "-n", "shop", "--json").stdout)
    assert as_json["certificates"][0]["node"] == "sidecar~reviews-1.shop"
    missing = cp.run("identity", "show", "nobody", "-n", "shop")
    assert missing.returncode == 1 and "not found" in missing.stderr


async def test_rotation_through_the_cli_and_check(cp: ControlPlane) -> None:
    assert cp.run("check").returncode == 0
    old_roots = ca_bundle(cp)
    async with channel(cp) as anonymous:
        before = await sign(anonymous, token=token(cp, "details"))

    started = cp.run("ca", "rotate")
    assert started.returncode == 0, started.stderr
    assert "rotation started" in started.stdout and "trusted root (previous)" in started.stdout
    printed = cp.run("ca", "bundle")
    assert len(pki.load_certs(printed.stdout.encode())) == 2
    checked = cp.run("check")
    assert checked.returncode == 0
    assert "\u203c no root rotation is left unfinished" in checked.stdout
    assert "trellis ca rotate --finish" in checked.stdout

    # A proxy that still pins the old roots reaches the control plane and renews with its
    # old-root certificate; what it gets comes from the new root and verifies either way.
    async with channel(cp, before, roots=old_roots) as renewing:
        renewed = await sign(renewing)
    chain = pki.load_certs(renewed.chain_pem)
    assert pki.verify_svid(chain, pki.load_certs(old_roots), pki.utcnow())
    assert pki.verify_svid(chain, pki.load_certs(ca_bundle(cp)), pki.utcnow())

    finished = cp.run("ca", "rotate", "--finish")
    assert finished.returncode == 0 and "rotation finished" in finished.stdout
    assert len(pki.load_certs(ca_bundle(cp))) == 1
    assert "\u221a no root rotation is left unfinished" in cp.run("check").stdout
    async with channel(cp, before) as stale:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await sign(stale)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE  # old root: TLS refuses it
    async with channel(cp, renewed) as fresh:
        assert "BEGIN CERTIFICATE" in await bundle(fresh)


def test_check_fails_when_the_control_plane_is_unreachable(cp: ControlPlane) -> None:
    env = {**cp.env, "TRELLIS_SERVER": "http://127.0.0.1:9"}
    got = cp.run("check", env=env)
    assert got.returncode == 1
    assert got.stdout.splitlines()[0].startswith("\u00d7 the control plane API is reachable")
    assert "hint:" in got.stdout


async def test_intermediate_ca_from_the_users_root(tmp_path: Path) -> None:
    cert, key, root_file = write_user_ca(tmp_path / "user")
    with control_plane(tmp_path, extra_args=("--ca-cert", str(cert), "--ca-key", str(key))) as cp:
        assert ca_bundle(cp) == root_file.read_bytes()
        secret = token(cp, "reviews")
        async with channel(cp) as anonymous:
            svid = await sign(anonymous, token=secret)
        chain = pki.load_certs(svid.chain_pem)
        assert len(chain) == 2  # the SVID, then the user's intermediate
        roots = pki.load_certs(root_file.read_bytes())
        assert pki.verify_svid(chain, roots, pki.utcnow()) == [svid.answer["spiffeId"]]
        refused = cp.run("ca", "rotate")
        assert refused.returncode == 1 and "--ca-cert" in refused.stderr
        async with channel(cp, svid) as renewing:  # renewal through the user's chain
            assert (await sign(renewing)).answer["spiffeId"] == svid.answer["spiffeId"]
            _, csr = make_csr()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await call(renewing, SIGN_METHOD, {"csr": csr.decode(), "serviceAccount": "x"})
            assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_bad_ca_certificate_is_a_one_line_error(tmp_path: Path) -> None:
    root_only = tmp_path / "root.pem"
    _, key, root_file = write_user_ca(tmp_path / "user")
    root_only.write_bytes(root_file.read_bytes())
    with (
        pytest.raises(AssertionError, match="did not start"),
        control_plane(tmp_path, extra_args=("--ca-cert", str(root_only), "--ca-key", str(key))),
    ):
        pass
    stderr = (tmp_path / "control.stderr").read_text()
    assert "error: --ca-cert is a self-signed root" in stderr
    assert "Traceback" not in stderr


async def test_sigterm_with_an_open_secure_stream_exits_cleanly(tmp_path: Path) -> None:
    with control_plane(tmp_path) as cp:
        async with channel(cp) as anonymous:
            svid = await sign(anonymous, token=token(cp, "web"))
        mtls = channel(cp, svid)
        node = AdsClient(mtls, "proxyless~web-1.default", kind="proxyless", serviceAccount="web")
        await node.subscribe(CLUSTER_TYPE, ["outbound|80||nothing.default.svc.mesh"])
    # Leaving the block sent SIGTERM: the stream ends, the process exits 0.
    with pytest.raises(grpc.aio.AioRpcError):
        await node.recv(timeout=10)
    await mtls.close()
    assert cp.exit_code == 0
    assert "Traceback" not in (tmp_path / "control.stderr").read_text()
