"""AdsClient against the real control plane (store → push → ADS server) over real gRPC.

Every test runs on asyncio and on uvloop (conftest). Conditions are polled
with a deadline (`wait_for`), never slept on.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import any_pb2
from tests.proxy.xds.control_plane import (
    NODE_ID,
    ROUND_ROBIN_POLICY,
    ControlPlane,
    RecordingHandler,
    sidecar_node,
    unpack,
    wait_for,
    workload,
)

from trellis.ports import free_port
from trellis.proxy.xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE, AdsClient
from trellis.proxy.xds import client as client_module

LISTENER = "reviews:9080"
FAST = {"backoff_base": 0.02, "backoff_max": 0.2}


def client(servers: Sequence[str], handler: RecordingHandler) -> AdsClient:
    return AdsClient(servers, sidecar_node(), handler, **FAST)


def endpoints(handler: RecordingHandler, name: str) -> list[str]:
    held = handler.has(ENDPOINT_TYPE, name)
    assert held is not None
    cla = unpack(held.resources[name])
    return sorted(
        f"{lb.endpoint.address.socket_address.address}:{lb.endpoint.address.socket_address.port_value}"
        for locality in cla.endpoints
        for lb in locality.lb_endpoints
    )


async def follow_chain(ads: AdsClient, handler: RecordingHandler) -> dict[str, str]:
    """Subscribe LDS → RDS → CDS → EDS the way the proxy does; returns the names per type."""
    ads.subscribe(LISTENER_TYPE, [LISTENER])
    lds = await wait_for(lambda: handler.has(LISTENER_TYPE, LISTENER), "the listener")
    manager = hcm_pb2.HttpConnectionManager()
    assert unpack(lds.resources[LISTENER]).api_listener.api_listener.Unpack(manager)
    route_name = manager.rds.route_config_name

    ads.subscribe(ROUTE_TYPE, [route_name])
    rds = await wait_for(lambda: handler.has(ROUTE_TYPE, route_name), "the route configuration")
    cluster_name = unpack(rds.resources[route_name]).virtual_hosts[0].routes[0].route.cluster
    assert cluster_name == "outbound|9080||reviews.shop.svc.mesh"

    ads.subscribe(CLUSTER_TYPE, [cluster_name])
    cds = await wait_for(lambda: handler.has(CLUSTER_TYPE, cluster_name), "the cluster")
    cluster = unpack(cds.resources[cluster_name])
    eds_name = cluster.eds_cluster_config.service_name or cluster.name

    ads.subscribe(ENDPOINT_TYPE, [eds_name])
    await wait_for(lambda: handler.has(ENDPOINT_TYPE, eds_name), "the endpoints")
    return {
        LISTENER_TYPE: LISTENER,
        ROUTE_TYPE: route_name,
        CLUSTER_TYPE: cluster_name,
        ENDPOINT_TYPE: eds_name,
    }


def all_acked(cp: ControlPlane) -> dict[str, str] | None:
    versions = {short: cp.acked(short) for short in ("LDS", "RDS", "CDS", "EDS")}
    return versions if all(versions.values()) else None  # type: ignore[return-value]


async def test_the_sidecar_chain_is_delivered_and_acked(control_plane: ControlPlane) -> None:
    handler = RecordingHandler()
    async with client([control_plane.address], handler) as ads:
        names = await follow_chain(ads, handler)
        assert endpoints(handler, names[ENDPOINT_TYPE]) == ["127.0.0.1:15006"]

        versions = await wait_for(lambda: all_acked(control_plane), "the server to see 4 ACKs")
        stats = ads.statistics()
        json.dumps(stats)  # JSON-able
        assert stats["server"] == control_plane.address
        assert stats["connected"] is True
        assert stats["connects"] == 1
        for type_url, short in (
            (LISTENER_TYPE, "LDS"),
            (ROUTE_TYPE, "RDS"),
            (CLUSTER_TYPE, "CDS"),
            (ENDPOINT_TYPE, "EDS"),
        ):
            assert stats["types"][short]["ackedVersion"] == versions[short]
            assert stats["types"][short]["names"] == [names[type_url]]
            assert stats["types"][short]["nacks"] == 0
            assert ads.subscriptions(type_url) == frozenset({names[type_url]})
            assert handler.held[type_url].version == versions[short]
        assert handler.connections == [(True, control_plane.address)]

        # On the wire: one request per type to subscribe, one ACK per response; the node
        # on the first request only.
        requests = control_plane.requests
        assert requests[0].node.id == NODE_ID
        assert not any(r.HasField("node") for r in requests[1:])
        assert len(requests) == 4 + sum(t["responses"] for t in stats["types"].values())
    assert handler.connections[-1] == (False, control_plane.address)
    assert ads.statistics()["connected"] is False


async def test_names_added_later_arrive_on_the_same_stream(control_plane: ControlPlane) -> None:
    handler = RecordingHandler()
    async with client([control_plane.address], handler) as ads:
        ads.subscribe(LISTENER_TYPE, [LISTENER])
        await wait_for(lambda: handler.has(LISTENER_TYPE, LISTENER), "the first listener")
        # Several calls in one go: coalesced into one request with the whole set.
        ads.subscribe(LISTENER_TYPE, ["reviews.shop:9080"])
        ads.subscribe(LISTENER_TYPE, ["reviews.shop.svc.mesh:9080"])
        held = await wait_for(
            lambda: handler.has(
                LISTENER_TYPE, LISTENER, "reviews.shop:9080", "reviews.shop.svc.mesh:9080"
            ),
            "the added listeners",
        )
        assert len(held.resources) == 3
        assert ads.statistics()["connects"] == 1
        # The handler holds the response before the client ACKs it: wait for the ACK.
        await wait_for(lambda: control_plane.acked("LDS") == held.version, "the ACK")
        lds = control_plane.requests_for(LISTENER_TYPE)
        assert [sorted(r.resource_names) for r in lds if not r.response_nonce] == [[LISTENER]]
        assert len(lds) == 1 + 1 + len([r for r in handler.received])  # subscribe, add, ACKs

        ads.unsubscribe(LISTENER_TYPE, ["reviews.shop:9080"])
        await wait_for(
            lambda: (
                (s := control_plane.node()) is not None
                and (t := s.type("LDS")) is not None
                and t.names == tuple(sorted([LISTENER, "reviews.shop.svc.mesh:9080"]))
            ),
            "the server to see the unsubscribe",
        )


async def test_an_unknown_name_arrives_as_an_error(control_plane: ControlPlane) -> None:
    handler = RecordingHandler()
    async with client([control_plane.address], handler) as ads:
        ads.subscribe(LISTENER_TYPE, [LISTENER, "nosuch:1"])
        held = await wait_for(lambda: handler.has(LISTENER_TYPE, LISTENER), "the listener")
        assert list(held.resources) == [LISTENER]
        assert list(held.errors) == ["nosuch:1"]
        assert "nosuch" in held.errors["nosuch:1"]
        await wait_for(lambda: control_plane.acked("LDS"), "the ACK")
        status = control_plane.node()
        assert status is not None
        lds = status.type("LDS")
        assert lds is not None and lds.not_found == ("nosuch:1",)


async def test_a_nack_is_sent_once_and_the_server_records_it(control_plane: ControlPlane) -> None:
    reason = "clusters[0].lb_policy: not supported by this proxy"
    handler = RecordingHandler(nack={CLUSTER_TYPE: reason})
    cluster_name = "outbound|9080||reviews.shop.svc.mesh"
    async with client([control_plane.address], handler) as ads:
        ads.subscribe(CLUSTER_TYPE, [cluster_name])

        def nacked() -> bool:
            status = control_plane.node()
            cds = status.type("CDS") if status is not None else None
            return cds is not None and cds.nacked and cds.error == reason

        await wait_for(nacked, "the server to record the NACK")
        # A barrier: another type's round trip; had the client looped on CDS it would show.
        ads.subscribe(ENDPOINT_TYPE, [cluster_name])
        await wait_for(lambda: control_plane.acked("EDS"), "the EDS ACK")

        (response,) = [r for r in handler.received if r.type_url == CLUSTER_TYPE]
        subscribe, nack = control_plane.requests_for(CLUSTER_TYPE)
        assert subscribe.response_nonce == ""
        assert nack.version_info == ""  # nothing ACKed yet
        assert nack.response_nonce
        assert nack.error_detail.code == 3  # INVALID_ARGUMENT
        assert nack.error_detail.message == reason
        assert CLUSTER_TYPE not in handler.held  # applied nothing
        cds = ads.statistics()["types"]["CDS"]
        assert cds["nacked"] is True
        assert cds["lastNack"]["message"] == reason
        assert cds["lastNack"]["version"] == response.version
        assert (cds["responses"], cds["acks"], cds["nacks"]) == (1, 0, 1)

        # The proxy learns to accept clusters; a new snapshot is ACKed.
        del handler.nack[CLUSTER_TYPE]
        await control_plane.apply(ROUND_ROBIN_POLICY)
        await wait_for(lambda: control_plane.acked("CDS"), "the CDS ACK of the new version")
        assert handler.has(CLUSTER_TYPE, cluster_name)


async def test_a_handler_exception_is_a_nack(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    handler = RecordingHandler(fail={LISTENER_TYPE})
    async with client([control_plane.address], handler) as ads:
        ads.subscribe(LISTENER_TYPE, [LISTENER])
        await wait_for(lambda: ads.statistics()["types"]["LDS"]["nacks"], "the NACK")
        stats = ads.statistics()
        assert stats["handlerErrors"] == 1
        assert "RuntimeError('handler bug')" in stats["types"]["LDS"]["lastNack"]["message"]
        assert stats["connected"] is True  # the task carried on
    assert any(
        r.name == "trellis.proxy.xds" and "handler failed" in r.message for r in caplog.records
    )


async def test_a_store_change_is_pushed_and_acked(control_plane: ControlPlane) -> None:
    handler = RecordingHandler()
    async with client([control_plane.address], handler) as ads:
        names = await follow_chain(ads, handler)
        eds_name = names[ENDPOINT_TYPE]
        before = await wait_for(lambda: control_plane.acked("EDS"), "the EDS ACK")

        await control_plane.apply(workload("reviews-2", "127.0.0.2", 15007))
        await wait_for(
            lambda: endpoints(handler, eds_name) == ["127.0.0.1:15006", "127.0.0.2:15007"],
            "the new endpoint",
        )
        after = await wait_for(lambda: control_plane.acked("EDS"), "the new EDS ACK")
        assert after != before
        assert ads.statistics()["types"]["EDS"]["ackedVersion"] == after
        assert ads.statistics()["connects"] == 1


async def test_reconnects_and_resubscribes_after_a_control_plane_restart(
    control_plane: ControlPlane,
) -> None:
    handler = RecordingHandler()
    async with client([control_plane.address], handler) as ads:
        names = await follow_chain(ads, handler)
        versions = await wait_for(lambda: all_acked(control_plane), "4 ACKs")
        seen = len(handler.received)

        await control_plane.stop()
        await wait_for(lambda: not ads.statistics()["connected"], "the disconnect")
        await wait_for(lambda: ads.statistics()["connectFailures"] >= 3, "three failed reconnects")
        stats = ads.statistics()
        assert stats["attempts"] >= 1 + 3  # the first stream, then the failed reconnects
        assert stats["backoffAttempt"] >= 3  # backing off, not resetting
        assert stats["lastError"]
        assert len(handler.received) == seen  # the handler keeps what it holds
        assert handler.connections[-1] == (False, control_plane.address)

        await control_plane.start()  # same port, same data dir
        assert control_plane.address == stats["server"]
        await wait_for(lambda: all_acked(control_plane), "4 ACKs after the restart")
        assert ads.statistics()["connects"] == 2
        assert handler.connections[-1] == (True, control_plane.address)

        # The new stream resubscribed every type with its ACKed version and no nonce.
        resubscribes = [r for r in control_plane.requests if not r.response_nonce]
        assert resubscribes[0].node.id == NODE_ID
        assert {r.type_url: (list(r.resource_names), r.version_info) for r in resubscribes} == {
            t: ([names[t]], versions[short]) for t, short in _SHORT.items()
        }

        # And updates flow again.
        await control_plane.apply(workload("reviews-2", "127.0.0.2", 15007))
        await wait_for(
            lambda: (
                endpoints(handler, names[ENDPOINT_TYPE]) == ["127.0.0.1:15006", "127.0.0.2:15007"]
            ),
            "the update after the restart",
        )


_SHORT = {LISTENER_TYPE: "LDS", ROUTE_TYPE: "RDS", CLUSTER_TYPE: "CDS", ENDPOINT_TYPE: "EDS"}


async def test_fails_over_to_the_next_server(control_plane: ControlPlane) -> None:
    dead = f"127.0.0.1:{free_port()}"
    handler = RecordingHandler()
    async with client([dead, control_plane.address], handler) as ads:
        ads.subscribe(LISTENER_TYPE, [LISTENER])
        await wait_for(lambda: handler.has(LISTENER_TYPE, LISTENER), "the listener")
        stats = ads.statistics()
        assert stats["server"] == control_plane.address
        assert stats["connectFailures"] >= 1
        assert dead in stats["lastError"]
        assert handler.connections == [(True, control_plane.address)]


async def test_a_server_that_never_answers_is_given_up_after_the_connect_timeout(
    control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A TCP listener that never speaks HTTP/2 keeps the channel CONNECTING: move on."""
    monkeypatch.setattr(client_module, "CONNECT_TIMEOUT", 0.3)
    peers: list[tuple[asyncio.StreamWriter, asyncio.Task[Any]]] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peers.append((writer, task))
        await reader.read()  # until the client gives up and closes
        writer.close()

    silent = await asyncio.start_server(hold, "127.0.0.1", 0)
    address = f"127.0.0.1:{silent.sockets[0].getsockname()[1]}"
    handler = RecordingHandler()
    try:
        async with client([address, control_plane.address], handler) as ads:
            ads.subscribe(LISTENER_TYPE, [LISTENER])
            await wait_for(lambda: handler.has(LISTENER_TYPE, LISTENER), "the listener")
            stats = ads.statistics()
            assert stats["server"] == control_plane.address
            assert stats["connectFailures"] == 1
            assert address in stats["lastError"]
            assert peers  # the silent server did get a connection
        # gRPC gives up its handshake too, rather than 20 s later.
        await wait_for(lambda: all(task.done() for _, task in peers), "the handshake to end")
    finally:
        silent.close()
        for writer, _ in peers:
            writer.close()
        await asyncio.gather(*(task for _, task in peers), return_exceptions=True)
        await silent.wait_closed()


async def test_subscriptions_made_before_start_go_out_on_connect(
    control_plane: ControlPlane,
) -> None:
    handler = RecordingHandler()
    ads = client([control_plane.address], handler)
    ads.subscribe(LISTENER_TYPE, [LISTENER])
    ads.subscribe(LISTENER_TYPE, ["nosuch:1"])
    async with ads:
        await wait_for(lambda: handler.has(LISTENER_TYPE, LISTENER), "the listener")
    (first,) = [r for r in control_plane.requests if not r.response_nonce]
    assert list(first.resource_names) == ["nosuch:1", LISTENER]


async def test_without_any_server_it_retries_quietly_and_exits_cleanly(tmp_path: Path) -> None:
    handler = RecordingHandler()
    async with client([f"127.0.0.1:{free_port()}"], handler) as ads:
        ads.subscribe(LISTENER_TYPE, [LISTENER])
        await wait_for(lambda: ads.statistics()["connectFailures"] >= 3, "three attempts")
        assert ads.statistics()["connected"] is False
    assert handler.received == [] and handler.connections == []


def test_refuses_no_servers() -> None:
    with pytest.raises(ValueError):
        AdsClient([], sidecar_node(), RecordingHandler())
    with pytest.raises(ValueError):
        AdsClient("127.0.0.1:1", sidecar_node(), RecordingHandler())


class _MinimalHandler:
    """A handler without the optional `on_connection`."""

    def __init__(self) -> None:
        self.versions: list[str] = []

    def on_response(
        self,
        type_url: str,
        version: str,
        resources: Sequence[any_pb2.Any],
        errors: Mapping[str, str],
    ) -> str | None:
        self.versions.append(version)
        return None


async def test_on_connection_is_optional(
    control_plane: ControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    handler = _MinimalHandler()
    with caplog.at_level(logging.INFO, "trellis.proxy.xds"):
        ads = AdsClient([control_plane.address], sidecar_node(), handler, **FAST)  # type: ignore[arg-type]
        async with ads:
            ads.subscribe(LISTENER_TYPE, [LISTENER])
            await wait_for(lambda: handler.versions, "a response")
            assert ads.statistics()["handlerErrors"] == 0
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
