"""The ADS server over real gRPC: a grpc.aio server on 127.0.0.1 and grpc.aio client streams."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc
from tests.control.xds.ads_world import (
    AdsClient,
    World,
    assignment,
    cluster,
    generate_from_world,
    listener,
    names_of,
    route,
    unpack_all,
    world,
)

from trellis.control.translate.api import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from trellis.control.xds import AdsServer

NODE = "proxyless~web.default"
START = world(cds={"a": cluster("a"), "b": cluster("b")}, eds={"a": assignment("a")})


class Harness:
    def __init__(self, ads: AdsServer, channel: grpc.aio.Channel) -> None:
        self.ads = ads
        self.channel = channel
        self.clients: list[AdsClient] = []

    def client(self, node_id: str = NODE, **metadata: Any) -> AdsClient:
        c = AdsClient(self.channel, node_id, **metadata)
        self.clients.append(c)
        return c

    def push(self, w: World) -> None:
        self.ads.push(w)  # type: ignore[arg-type]  # the test world stands in for PushContext


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    ads = AdsServer(generate=generate_from_world, push=START)  # type: ignore[arg-type]
    server = grpc.aio.server()
    ads.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    h = Harness(ads, channel)
    try:
        yield h
    finally:
        for c in h.clients:
            await c.aclose()
        await channel.close()
        await server.stop(grace=None)


async def test_first_subscribe_gets_the_resources(harness: Harness) -> None:
    client = harness.client()
    response = await client.subscribe(CLUSTER_TYPE, ["a", "b"])
    assert sorted(names_of(response)) == ["a", "b"]
    assert response.version_info and response.nonce
    assert [c.name for c in unpack_all(response, cluster_pb2.Cluster)] == ["a", "b"]
    assert not response.resource_errors


async def test_ack_sends_nothing_more(harness: Harness) -> None:
    client = harness.client()
    response = await client.subscribe(CLUSTER_TYPE, ["a"])
    await client.ack(response, ["a"])
    await client.expect_silence()
    (status,) = harness.ads.nodes()
    cds = status.type("CDS")
    assert cds is not None
    assert cds.acked_version == cds.sent_version == response.version_info
    assert not cds.nacked


async def test_ack_with_new_names_is_answered_at_once(harness: Harness) -> None:
    client = harness.client()
    first = await client.subscribe(CLUSTER_TYPE, ["a"])
    await client.ack(first, ["a", "b"])
    second = await client.recv()
    assert sorted(names_of(second)) == ["a", "b"]
    assert second.version_info != first.version_info
    assert second.nonce != first.nonce


async def test_nack_is_recorded_and_the_same_version_is_not_resent(harness: Harness) -> None:
    client = harness.client()
    response = await client.subscribe(CLUSTER_TYPE, ["a"])
    await client.nack(response, ["a"], keeps="", error="field:lb_policy error:not supported")
    await client.expect_silence()
    (status,) = harness.ads.nodes()
    cds = status.type("CDS")
    assert cds is not None and cds.nacked
    assert cds.error == "field:lb_policy error:not supported"
    assert cds.acked_version is None

    # A push that leaves this node's CDS as it was must not resend the NACKed version.
    harness.push(world(2, cds={"a": cluster("a"), "b": cluster("b")}))
    await client.expect_silence()

    # A push that changes it sends the new version; its ACK clears the NACK.
    harness.push(world(3, cds={"a": cluster("a", timeout_s=2)}))
    fixed = await client.recv()
    assert fixed.type_url == CLUSTER_TYPE
    assert fixed.version_info != response.version_info
    await client.ack(fixed, ["a"])
    await client.expect_silence()
    cds = harness.ads.nodes()[0].type("CDS")
    assert cds is not None and not cds.nacked and cds.error is None
    assert cds.acked_version == fixed.version_info


async def test_a_stale_nonce_is_ignored(harness: Harness) -> None:
    client = harness.client()
    first = await client.subscribe(CLUSTER_TYPE, ["a"])
    harness.push(world(2, cds={"a": cluster("a", timeout_s=5)}))
    second = await client.recv()
    assert second.nonce != first.nonce
    # The ACK of the first response, arriving after the second was sent, is stale:
    # even with a changed subscription it changes nothing and gets no answer.
    await client.ack(first, ["a", "b"])
    await client.expect_silence()
    cds = harness.ads.nodes()[0].type("CDS")
    assert cds is not None
    assert cds.names == ("a",)
    assert cds.acked_version is None
    assert cds.sent_version == second.version_info


async def test_a_push_that_changes_nothing_sends_nothing(harness: Harness) -> None:
    client = harness.client()
    response = await client.subscribe(CLUSTER_TYPE, ["a"])
    await client.ack(response, ["a"])
    # New revision, other resources changed, but not this node's subscribed ones.
    harness.push(world(2, cds={"a": cluster("a"), "b": cluster("b", 9)}, lds={"x": listener("x")}))
    await client.expect_silence()


async def test_a_push_sends_changed_types_in_make_before_break_order(harness: Harness) -> None:
    client = harness.client()
    for type_url, name in (
        (LISTENER_TYPE, "l"),
        (ROUTE_TYPE, "r"),
        (CLUSTER_TYPE, "a"),
        (ENDPOINT_TYPE, "a"),
    ):
        await client.ack(await client.subscribe(type_url, [name]), [name])
    harness.push(
        world(
            2,
            lds={"l": listener("l")},
            rds={"r": route("r")},
            cds={"a": cluster("a", 3)},
            eds={"a": assignment("a", 2)},
        )
    )
    order = [(await client.recv()).type_url for _ in range(4)]
    assert order == [CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE]
    await client.expect_silence()


async def test_a_removed_resource_that_is_still_subscribed_is_still_sent(harness: Harness) -> None:
    client = harness.client()
    first = await client.subscribe(CLUSTER_TYPE, ["a", "b"])
    await client.ack(first, ["a", "b"])
    # b disappears and nothing else changes: the client's view is unchanged, nothing to send.
    harness.push(world(2, cds={"a": cluster("a")}))
    await client.expect_silence()
    # a changes: the response carries the new a and the b last sent.
    harness.push(world(3, cds={"a": cluster("a", 7)}))
    second = await client.recv()
    clusters = {c.name: c for c in unpack_all(second, cluster_pb2.Cluster)}
    assert sorted(clusters) == ["a", "b"]
    assert clusters["a"].connect_timeout.seconds == 7
    assert clusters["b"] == cluster("b")
    assert not second.resource_errors


async def test_unknown_names_come_back_as_resource_errors(harness: Harness) -> None:
    client = harness.client()
    response = await client.subscribe(CLUSTER_TYPE, ["a", "nosuch"])
    assert names_of(response) == ["a"]
    (error,) = response.resource_errors
    assert error.resource_name.name == "nosuch"
    assert error.error_detail.code == 5  # NOT_FOUND
    assert "nosuch" in error.error_detail.message
    cds = harness.ads.nodes()[0].type("CDS")
    assert cds is not None and cds.not_found == ("nosuch",)

    # Once it exists, the next push sends it and the error is gone.
    await client.ack(response, ["a", "nosuch"])
    harness.push(world(2, cds={"a": cluster("a"), "nosuch": cluster("nosuch")}))
    found = await client.recv()
    assert sorted(names_of(found)) == ["a", "nosuch"]
    assert not found.resource_errors


async def test_nodes_reflect_identity_ack_and_nack(harness: Harness) -> None:
    client = harness.client(NODE, namespace="default", labels={"app": "web"})
    cds = await client.subscribe(CLUSTER_TYPE, ["a"])
    eds = await client.subscribe(ENDPOINT_TYPE, ["a"])
    await client.ack(cds, ["a"])
    await client.nack(eds, ["a"], keeps="", error="bad locality")
    await client.expect_silence()
    (status,) = harness.ads.nodes()
    assert (status.node_id, status.kind, status.namespace, status.workload) == (
        NODE,
        "proxyless",
        "default",
        "web",
    )
    assert status.peer.startswith("ipv4:127.0.0.1:")
    doc = status.to_json()
    assert doc["types"]["CDS"]["acked"] is True and doc["types"]["CDS"]["nacked"] is False
    assert doc["types"]["EDS"]["acked"] is False and doc["types"]["EDS"]["nacked"] is True
    assert doc["types"]["EDS"]["error"] == "bad locality"
    assert doc["types"]["CDS"]["names"] == ["a"]
    assert list(doc["types"]) == ["CDS", "EDS", "Secret"]
    assert harness.ads.subscribers("a") == [NODE]
    assert harness.ads.subscribers("zzz") == []


@pytest.mark.parametrize(
    ("node_id", "reason"),
    [("web.default", "KIND~WORKLOAD.NAMESPACE"), ("", "node.id"), ("sidecar~nodot", "KIND~")],
)
async def test_a_malformed_node_aborts_with_invalid_argument(
    harness: Harness, node_id: str, reason: str
) -> None:
    client = harness.client(node_id)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await client.send(CLUSTER_TYPE, ["a"])
        await client.call.read()
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason in (info.value.details() or "")
    assert harness.ads.nodes() == []


async def test_delta_is_unimplemented(harness: Harness) -> None:
    # Refused as the stream opens: read its status without writing (a write racing the
    # refusal fails as INTERNAL in grpcio, or as InvalidStateError once the call ended).
    call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(harness.channel).DeltaAggregatedResources()
    assert await asyncio.wait_for(call.code(), 10) == grpc.StatusCode.UNIMPLEMENTED


async def test_two_streams_are_independent(harness: Harness) -> None:
    web_id = "proxyless~web.default"
    web = harness.client(web_id)
    api = harness.client("sidecar~api.shop")
    web_cds = await web.subscribe(CLUSTER_TYPE, ["a"])
    api_cds = await api.subscribe(CLUSTER_TYPE, ["b"])
    await web.ack(web_cds, ["a"])
    await api.nack(api_cds, ["b"], keeps="", error="nope")
    await web.expect_silence()
    await api.expect_silence()
    by_id = {s.node_id: s for s in harness.ads.nodes()}
    web_status, api_status = (
        by_id["proxyless~web.default"].type("CDS"),
        by_id["sidecar~api.shop"].type("CDS"),
    )
    assert web_status is not None and not web_status.nacked
    assert api_status is not None and api_status.nacked
    assert harness.ads.subscribers("a") == ["proxyless~web.default"]
    assert harness.ads.subscribers("b") == ["sidecar~api.shop"]

    # A change to b reaches only the stream that subscribes to it.
    harness.push(world(2, cds={"a": cluster("a"), "b": cluster("b", 4)}))
    assert names_of(await api.recv()) == ["b"]
    await web.expect_silence()

    # One stream going away leaves the other serving.
    await api.aclose()
    harness.push(world(3, cds={"a": cluster("a", 8), "b": cluster("b", 4)}))
    assert names_of(await web.recv()) == ["a"]
    await _wait_until(lambda: [s.node_id for s in harness.ads.nodes()] == [web_id])


async def test_a_generator_failure_for_one_node_spares_the_others(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    good = harness.client("proxyless~good.default")
    bad = harness.client("proxyless~bad.default")
    await good.ack(await good.subscribe(CLUSTER_TYPE, ["a"]), ["a"])
    bad_first = await bad.subscribe(CLUSTER_TYPE, ["a"])
    await bad.ack(bad_first, ["a"])

    broken = World(2, {CLUSTER_TYPE: {"a": cluster("a", 6)}}, frozenset({"proxyless~bad.default"}))
    with caplog.at_level(logging.ERROR, logger="trellis.xds"):
        harness.push(broken)
        assert (await good.recv()).version_info != bad_first.version_info
        await bad.expect_silence()  # still connected, still has its last good state
    assert any("proxyless~bad.default" in r.getMessage() for r in caplog.records)
    bad_cds = {s.node_id: s for s in harness.ads.nodes()}["proxyless~bad.default"].type("CDS")
    assert bad_cds is not None and bad_cds.sent_version == bad_first.version_info

    # The generator recovers: the next push reaches the node again.
    harness.push(world(3, cds={"a": cluster("a", 6)}))
    assert names_of(await bad.recv()) == ["a"]


async def test_disconnect_forgets_the_stream(harness: Harness) -> None:
    client = harness.client()
    await client.subscribe(CLUSTER_TYPE, ["a"])
    assert len(harness.ads.nodes()) == 1
    await client.aclose()
    await _wait_until(lambda: harness.ads.nodes() == [])


async def _wait_until(condition: Any, timeout: float = 5.0) -> None:
    import asyncio

    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "condition not met before the deadline"
        await asyncio.sleep(0.01)
