"""ADS on the secure port: a mesh client certificate is required and binds the node's identity;
the plaintext port serves the same resources without one, as before."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from tests.control.ca.secure_world import Secure, Svid, secure_world
from tests.control.xds.ads_world import (
    AdsClient,
    cluster,
    generate_from_world,
    names_of,
    world,
)

from trellis.control.translate.api import CLUSTER_TYPE, Generated
from trellis.control.translate.node import NodeInfo

WORLD = world(1, cds={"outbound|9080||reviews.default.svc.mesh": cluster("reviews")})
RESOURCE = "outbound|9080||reviews.default.svc.mesh"


@pytest.fixture
async def secure(tmp_path: Path) -> AsyncIterator[Secure]:
    async with secure_world(tmp_path, WORLD) as s:
        yield s


def meta(namespace: str = "default", service_account: str = "reviews") -> dict[str, Any]:
    return {"kind": "sidecar", "namespace": namespace, "serviceAccount": service_account}


async def stream_error(client: AdsClient) -> grpc.aio.AioRpcError:
    # The node is refused once its first request is read, so that write cannot race it.
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.send(CLUSTER_TYPE, [RESOURCE])
        await client.call.read()
    return info.value


async def test_without_a_client_certificate_the_stream_is_unauthenticated(
    secure: Secure,
) -> None:
    client = AdsClient(secure.channel(), "sidecar~reviews-1.default", **meta())
    code, details = await client.refusal()
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "mesh client certificate" in details


@pytest.mark.parametrize(
    ("node_id", "metadata", "why"),
    [
        ("sidecar~reviews-1.default", meta(service_account="payments"), "service account"),
        ("sidecar~reviews-1.shop", meta(namespace="shop"), "namespace"),
        ("sidecar~reviews-1.shop", meta(), "namespace"),  # metadata and id disagree
        ("sidecar~reviews-1.default", {"kind": "sidecar"}, "service account"),  # sa "default"
    ],
)
async def test_a_node_claiming_another_identity_than_its_certificate_is_denied(
    secure: Secure, node_id: str, metadata: dict[str, Any], why: str
) -> None:
    svid, _ = await secure.join("reviews")
    client = AdsClient(secure.channel(svid), node_id, **metadata)
    error = await stream_error(client)
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert why in (error.details() or "")
    assert secure.ads.nodes() == []


async def test_a_matching_node_gets_its_resources_and_is_bound_to_its_certificate(
    secure: Secure,
) -> None:
    svid: Svid
    svid, _ = await secure.join("reviews")
    client = AdsClient(secure.channel(svid), "sidecar~reviews-1.default", **meta())
    response = await client.subscribe(CLUSTER_TYPE, [RESOURCE])
    assert names_of(response) == ["reviews"]
    (status,) = secure.ads.nodes()
    assert status.node_id == "sidecar~reviews-1.default"
    # The status shows the proxy's own address, not the internal hop behind the TLS front.
    forwarded = secure.port.peers.items()
    assert status.peer in {peer.remote for peer in forwarded.values()}
    assert int(status.peer.rpartition(":")[2]) not in forwarded
    (current,) = secure.ca.current_certificates("default", "reviews")
    assert current.node == "sidecar~reviews-1.default"
    # Pushes reach the secure stream like any other.
    await client.ack(response, [RESOURCE])
    secure.ads.push(world(2, cds={RESOURCE: cluster("reviews", timeout_s=3)}))  # type: ignore[arg-type]
    pushed = await client.recv()
    assert pushed.version_info != response.version_info
    await client.aclose()


async def test_only_nodes_bound_on_the_secure_port_are_generated_as_secure(
    tmp_path: Path,
) -> None:
    seen: dict[str, bool] = {}

    def recording(node: NodeInfo, push: Any, type_url: str, names: Any) -> Generated:
        seen[node.id] = node.secure
        return generate_from_world(node, push, type_url, names)

    async with secure_world(tmp_path, WORLD, generate=recording) as secure:
        svid, _ = await secure.join("reviews")
        bound = AdsClient(secure.channel(svid), "sidecar~reviews-1.default", **meta())
        await bound.subscribe(CLUSTER_TYPE, [RESOURCE])
        async with grpc.aio.insecure_channel(secure.plaintext) as channel:
            plain = AdsClient(channel, "sidecar~reviews-2.default", **meta())
            await plain.subscribe(CLUSTER_TYPE, [RESOURCE])
            await plain.aclose()
        await bound.aclose()
    assert seen == {"sidecar~reviews-1.default": True, "sidecar~reviews-2.default": False}


async def test_the_plaintext_port_still_serves_without_a_certificate(secure: Secure) -> None:
    async with grpc.aio.insecure_channel(secure.plaintext) as channel:
        client = AdsClient(channel, "proxyless~ratings-1.default", kind="proxyless")
        response = await client.subscribe(CLUSTER_TYPE, [RESOURCE])
        assert names_of(response) == ["reviews"]
        await client.aclose()
