"""Registry endpoints, /status and describe over real HTTP with a real store and registry."""

from __future__ import annotations

import asyncio
import time
from typing import Any, cast

import grpc
from envoy.config.core.v3 import base_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from tests.control.api.documents import route, service, workload
from tests.control.api.served import Api

from trellis.control.translate.api import CLUSTER_TYPE
from trellis.model.keys import ResourceKey


async def test_register_heartbeat_deregister(api: Api) -> None:
    wl = workload("reviews-1", {"app": "reviews"})
    r = await api.client.post("/api/v1/registry/register", json={"workload": wl, "ttlSeconds": 30})
    assert r.status_code == 200, r.text
    assert r.json()["revision"] >= 1
    lease = await api.store.get_lease(api_key("reviews-1"))
    assert lease is not None and lease.ttl == 30

    before = time.time()
    hb = await api.client.post(
        "/api/v1/registry/heartbeat",
        json={"namespace": "default", "name": "reviews-1", "healthy": False},
    )
    assert hb.status_code == 200, hb.text
    assert hb.json()["expiresAt"] >= before + 29
    renewed = await api.store.get_lease(api_key("reviews-1"))
    assert renewed is not None and renewed.healthy is False

    gone = await api.client.post(
        "/api/v1/registry/deregister", json={"namespace": "default", "name": "reviews-1"}
    )
    assert gone.status_code == 200 and gone.json()["action"] == "deleted"
    assert await api.store.get_lease(api_key("reviews-1")) is None
    missing = await api.client.post("/api/v1/registry/heartbeat", json={"name": "reviews-1"})
    assert missing.status_code == 404
    assert missing.json()["error"].startswith("unknown workload default/reviews-1")


def api_key(name: str) -> ResourceKey:
    return ResourceKey("Workload", "default", name)


async def test_register_validates_the_workload(api: Api) -> None:
    bad = workload("w", {"app": "x"}, address="not-an-ip")
    r = await api.client.post("/api/v1/registry/register", json={"workload": bad, "ttlSeconds": 10})
    assert r.status_code == 422
    assert r.json()["problems"][0]["errors"][0]["path"] == "spec.address"
    not_workload = await api.client.post(
        "/api/v1/registry/register", json={"workload": service("s"), "ttlSeconds": 1}
    )
    assert not_workload.status_code == 400
    negative = await api.client.post(
        "/api/v1/registry/register", json={"workload": workload("w", {}), "ttlSeconds": -1}
    )
    assert negative.status_code == 422
    assert await api.store.revision() == 0


async def test_describe_service_shows_routes_endpoints_and_health(api: Api) -> None:
    docs = [
        service("reviews"),
        service("reviews-v2", selector={"app": "reviews", "version": "v2"}),
        route("split", "reviews", {"reviews": 1, "reviews-v2": 1}),
        route("other", "reviews-v2", {"reviews-v2": 1}),
        workload("static-1", {"app": "reviews"}, address="10.0.0.1"),
        workload("other-app", {"app": "ratings"}, address="10.0.0.9"),
    ]
    assert (await api.client.post("/api/v1/apply", json={"documents": docs})).status_code == 200
    leased = workload("leased-2", {"app": "reviews", "version": "v2"}, address="10.0.0.2")
    await api.client.post("/api/v1/registry/register", json={"workload": leased, "ttlSeconds": 60})
    await api.client.post("/api/v1/registry/heartbeat", json={"name": "leased-2", "healthy": False})

    r = await api.anonymous.get(
        "/api/v1/describe/services/reviews", params={"namespace": "default"}
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["service"]["metadata"]["name"] == "reviews"
    assert [x["metadata"]["name"] for x in body["routes"]] == ["split"]
    by_name = {e["workload"]: e for e in body["endpoints"]}
    assert set(by_name) == {"static-1", "leased-2"}
    assert by_name["static-1"] == {
        "workload": "static-1",
        "address": "10.0.0.1",
        "port": 9080,
        "servicePort": 9080,
        "healthy": True,
        "expiresAt": None,
        "static": True,
    }
    assert by_name["leased-2"]["healthy"] is False and by_name["leased-2"]["static"] is False
    assert body["subscribers"] == []
    assert (await api.anonymous.get("/api/v1/describe/services/nosuch")).status_code == 404


async def test_status_and_subscribers_show_a_connected_node(api: Api) -> None:
    """A real ADS stream (grpc.aio client) appears in /status and as a subscriber in describe."""
    await api.client.put("/api/v1/services/reviews", json=service("reviews"))
    server = grpc.aio.server()
    api.ads.register(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel)
            node = base_pb2.Node(id="proxyless~web.default")
            cluster = "outbound|9080||reviews.default.svc.mesh"
            call = stub.StreamAggregatedResources()
            await call.write(
                discovery_pb2.DiscoveryRequest(
                    node=node, type_url=CLUSTER_TYPE, resource_names=[cluster]
                )
            )
            await call.read()
            status = await poll_status(api)
            (entry,) = status["nodes"]
            assert entry["id"] == "proxyless~web.default" and entry["kind"] == "proxyless"
            assert "CDS" in entry["types"]
            described = (await api.anonymous.get("/api/v1/describe/services/reviews")).json()
            assert described["subscribers"] == ["proxyless~web.default"]
            call.cancel()
    finally:
        await server.stop(None)


async def poll_status(api: Api, deadline: float = 5.0) -> dict[str, Any]:
    """/api/v1/status once it lists a node (or as it is at the deadline)."""
    end = time.monotonic() + deadline
    while True:
        body = (await api.anonymous.get("/api/v1/status")).json()
        if body["nodes"] or time.monotonic() > end:
            return cast(dict[str, Any], body)
        await asyncio.sleep(0.01)
