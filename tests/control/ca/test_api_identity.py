"""The REST API's identity endpoints, served by uvicorn on a free port, around a real CA."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn
from tests.control.api.served import TOKEN, served_api, wait_started
from tests.control.ca.ca_support import make_csr
from tests.control.ca.test_files import write_user_ca

from trellis.control.api import AdminToken, ApiState, create_app
from trellis.control.api.serving import ApiServer, listen_tcp
from trellis.control.ca import pki
from trellis.control.ca.db import CaDb
from trellis.control.ca.files import CaFiles, open_authority
from trellis.control.ca.issuer import CertificateAuthority, SignRequest
from trellis.control.config import HostPort
from trellis.control.registry import Registry
from trellis.control.server import mesh_settings
from trellis.control.xds.server import AdsServer
from trellis.store.sqlite import SqliteStore

WORKLOAD = {
    "apiVersion": "trellis.dev/v1alpha1",
    "kind": "Workload",
    "metadata": {"name": "reviews-1", "namespace": "shop", "labels": {"app": "reviews"}},
    "spec": {"address": "127.0.0.1", "inbound": {"port": 15006}},
}
MESH = {
    "apiVersion": "trellis.dev/v1alpha1",
    "kind": "MeshConfig",
    "metadata": {"name": "mesh"},
    "spec": {"trustDomain": "corp.example", "certificateTTL": "2h"},
}


@dataclass
class Api:
    client: httpx.AsyncClient
    anonymous: httpx.AsyncClient
    ca: CertificateAuthority


@asynccontextmanager
async def served(tmp_path: Path, *, intermediate: bool = False) -> AsyncIterator[Api]:
    cert = key = None
    if intermediate:
        cert, key, _ = write_user_ca(tmp_path / "user")
    files = CaFiles(tmp_path / "ca")
    authority, _ = open_authority(files, cert, key, pki.utcnow())
    db = CaDb(tmp_path / "ca.db")
    store = SqliteStore(tmp_path / "state.db")
    ca = CertificateAuthority(authority, files, db, settings=lambda: mesh_settings(store))
    try:
        async with Registry(store, sweep_interval=0.05) as registry:
            state = ApiState(
                store,
                registry,
                AdsServer(),
                AdminToken.of(TOKEN),
                ca=ca,
                secure_address="127.0.0.1:15012",
            )
            sock = listen_tcp(HostPort("127.0.0.1", 0))
            server = ApiServer(
                uvicorn.Config(create_app(state), log_config=None, lifespan="off", access_log=False)
            )
            task = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                await wait_started(server, task)
                base = f"http://127.0.0.1:{sock.getsockname()[1]}"
                async with (
                    httpx.AsyncClient(
                        base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}
                    ) as client,
                    httpx.AsyncClient(base_url=base) as anonymous,
                ):
                    yield Api(client, anonymous, ca)
            finally:
                server.should_exit = True
                await task
                sock.close()
    finally:
        await store.aclose()
        db.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with served(tmp_path) as a:
        yield a


async def test_tokens_need_the_admin_token_even_to_list(api: Api) -> None:
    for method, path in (("POST", "/api/v1/tokens"), ("GET", "/api/v1/tokens")):
        r = await api.anonymous.request(method, path, json={"serviceAccount": "reviews"})
        assert r.status_code == 401, path
    r = await api.anonymous.delete("/api/v1/tokens/abc")
    assert r.status_code == 401


async def test_token_create_list_revoke(api: Api) -> None:
    r = await api.client.post(
        "/api/v1/tokens", json={"serviceAccount": "reviews", "namespace": "shop", "ttlSeconds": 60}
    )
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["token"].startswith(created["id"] + ".")
    assert created["expires"].endswith("Z") and created["serviceAccount"] == "reviews"
    listed = (await api.client.get("/api/v1/tokens")).json()["items"]
    assert [t["id"] for t in listed] == [created["id"]]
    assert created["token"] not in (await api.client.get("/api/v1/tokens")).text
    assert listed[0] | {"created": "", "expires": ""} == {
        "id": created["id"],
        "serviceAccount": "reviews",
        "namespace": "shop",
        "created": "",
        "expires": "",
        "expired": False,
        "revoked": False,
        "revokedAt": None,
        "certificates": 0,
    }
    revoked = await api.client.delete(f"/api/v1/tokens/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    assert (await api.client.delete("/api/v1/tokens/nope")).status_code == 404


async def test_bad_token_requests_are_422(api: Api) -> None:
    for body in (
        {"serviceAccount": "reviews", "ttlSeconds": 0},
        {"serviceAccount": "a/b"},
        {"namespace": "shop"},
    ):
        r = await api.client.post("/api/v1/tokens", json=body)
        assert r.status_code == 422, body


async def test_bundle_and_ca_state_are_public_rotation_is_admin(api: Api) -> None:
    r = await api.anonymous.get("/api/v1/ca/bundle")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-pem-file"
    assert pki.load_certs(r.content) == [api.ca.authority.root]
    info = (await api.anonymous.get("/api/v1/ca")).json()
    assert info["mode"] == "self-signed" and info["rotating"] is False
    assert info["trustDomain"] == "trellis.local" and info["certificateTTLSeconds"] == 86400
    assert info["secure"] == "127.0.0.1:15012"
    assert info["signing"]["fingerprint"] == info["roots"][0]["fingerprint"]
    assert (await api.anonymous.post("/api/v1/ca/rotate", json={})).status_code == 401

    rotating = (await api.client.post("/api/v1/ca/rotate", json={})).json()
    assert rotating["rotating"] is True and len(rotating["roots"]) == 2
    assert rotating["roots"][1]["fingerprint"] == info["roots"][0]["fingerprint"]
    bundle = pki.load_certs((await api.anonymous.get("/api/v1/ca/bundle")).content)
    assert len(bundle) == 2
    finished = (await api.client.post("/api/v1/ca/rotate", json={"finish": True})).json()
    assert finished["rotating"] is False
    assert [r["fingerprint"] for r in finished["roots"]] == [rotating["roots"][0]["fingerprint"]]


async def test_rotation_of_an_intermediate_ca_is_a_conflict(tmp_path: Path) -> None:
    async with served(tmp_path, intermediate=True) as api:
        assert (await api.anonymous.get("/api/v1/ca")).json()["mode"] == "intermediate"
        r = await api.client.post("/api/v1/ca/rotate", json={})
        assert r.status_code == 409 and "--ca-cert" in r.json()["error"]


async def test_identities_of_a_workload_follow_the_mesh_config(api: Api) -> None:
    assert (await api.client.post("/api/v1/apply", json={"documents": [WORKLOAD, MESH]})).is_success
    token = api.ca.create_token("reviews", "shop", 60).token
    issued = await api.ca.sign(SignRequest(make_csr()[1].decode(), token=token), None)
    assert str(issued.spiffe_id) == "spiffe://corp.example/ns/shop/sa/reviews"
    assert (issued.not_after - pki.utcnow()).total_seconds() == pytest.approx(7200, abs=5)

    body = (await api.anonymous.get("/api/v1/identities/reviews-1?namespace=shop")).json()
    assert body["spiffeId"] == "spiffe://corp.example/ns/shop/sa/reviews"
    assert body["serviceAccount"] == "reviews"
    assert [c["serial"] for c in body["certificates"]] == [issued.serial]
    listed = (await api.anonymous.get("/api/v1/identities?serviceAccount=reviews")).json()
    assert [c["spiffeId"] for c in listed["items"]] == [str(issued.spiffe_id)]
    assert (await api.anonymous.get("/api/v1/identities?serviceAccount=other")).json() == {
        "items": []
    }
    r = await api.anonymous.get("/api/v1/identities/nobody?namespace=shop")
    assert r.status_code == 404


async def test_openapi_lists_the_identity_endpoints(api: Api) -> None:
    paths = (await api.anonymous.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/tokens",
        "/api/v1/tokens/{token_id}",
        "/api/v1/ca",
        "/api/v1/ca/bundle",
        "/api/v1/ca/rotate",
        "/api/v1/identities",
        "/api/v1/identities/{workload}",
    ):
        assert path in paths, path


async def test_an_api_without_a_ca_answers_503(tmp_path: Path) -> None:
    async with served_api(tmp_path) as plain:
        r = await plain.anonymous.get("/api/v1/ca/bundle")
        assert r.status_code == 503
        info = (await plain.anonymous.get("/api/v1/info")).json()
        assert info.get("secure") is None
