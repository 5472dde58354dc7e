"""A tiny world for ADS tests: a push object holding real envoy resources, a generator, a client.

`World` stands in for PushContext (the ADS server only passes it to the
generator and reads `revision`), `generate_from_world` is a small real
generator over it, and `AdsClient` drives a real grpc.aio ADS stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from google.rpc import status_pb2

from trellis.control.translate.api import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Generated,
)
from trellis.control.translate.node import NodeInfo

PROBE_TYPE = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"


@dataclass(frozen=True)
class World:
    """type_url -> name -> resource; `broken` node ids make the generator raise."""

    revision: int
    resources: Mapping[str, Mapping[str, Message]] = field(default_factory=dict)
    broken: frozenset[str] = frozenset()


def cluster(name: str, timeout_s: int = 1) -> cluster_pb2.Cluster:
    c = cluster_pb2.Cluster(name=name, type=cluster_pb2.Cluster.EDS)
    c.connect_timeout.seconds = timeout_s
    c.eds_cluster_config.eds_config.ads.SetInParent()
    return c


def assignment(name: str, weight: int = 1) -> endpoint_pb2.ClusterLoadAssignment:
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    cla.endpoints.add().load_balancing_weight.value = weight
    return cla


def listener(name: str) -> listener_pb2.Listener:
    return listener_pb2.Listener(name=name)


def route(name: str, domain: str = "*") -> route_pb2.RouteConfiguration:
    rc = route_pb2.RouteConfiguration(name=name)
    rc.virtual_hosts.add(name=name, domains=[domain])
    return rc


def world(revision: int = 1, **by_short_type: dict[str, Message]) -> World:
    urls = {"cds": CLUSTER_TYPE, "eds": ENDPOINT_TYPE, "lds": LISTENER_TYPE, "rds": ROUTE_TYPE}
    return World(revision, {urls[k]: v for k, v in by_short_type.items()})


def generate_from_world(
    node: NodeInfo, push: Any, type_url: str, names: Collection[str] | None
) -> Generated:
    assert isinstance(push, World)
    if node.id in push.broken and type_url != PROBE_TYPE:
        raise RuntimeError(f"generator bug for {node.id}")
    if type_url == PROBE_TYPE:
        return Generated()
    have = push.resources.get(type_url, {})
    if names is None:
        return Generated(resources=dict(have))
    return Generated(
        resources={n: have[n] for n in names if n in have},
        errors={n: f"{n} is not in the test world" for n in names if n not in have},
    )


def node_pb(node_id: str, **metadata: Any) -> base_pb2.Node:
    meta = struct_pb2.Struct()
    meta.update(metadata)
    return base_pb2.Node(id=node_id, metadata=meta)


class AdsClient:
    """One ADS stream from the client's side, with helpers for the protocol's moves."""

    def __init__(self, channel: grpc.aio.Channel, node_id: str, **metadata: Any) -> None:
        self.call = ads_pb2_grpc.AggregatedDiscoveryServiceStub(channel).StreamAggregatedResources()
        self._node: base_pb2.Node | None = node_pb(node_id, **metadata)

    async def send(
        self,
        type_url: str,
        names: Collection[str] = (),
        *,
        nonce: str = "",
        version: str = "",
        error: str | None = None,
    ) -> None:
        req = discovery_pb2.DiscoveryRequest(
            type_url=type_url,
            resource_names=list(names),
            response_nonce=nonce,
            version_info=version,
        )
        if self._node is not None:
            req.node.CopyFrom(self._node)
            self._node = None
        if error is not None:
            req.error_detail.CopyFrom(status_pb2.Status(code=3, message=error))
        await self.call.write(req)

    async def recv(self, timeout: float = 5.0) -> discovery_pb2.DiscoveryResponse:
        response = await asyncio.wait_for(self.call.read(), timeout)
        assert response is not grpc.aio.EOF, f"stream ended: {await self.call.code()}"
        return response

    async def refusal(self, timeout: float = 10.0) -> tuple[grpc.StatusCode, str]:
        """The status of a stream the server refuses as it opens, before any request.

        Nothing is written: a write that races the refusal fails as INTERNAL in grpcio
        ("Failed execute_batch") and hides the server's status."""
        code = await asyncio.wait_for(self.call.code(), timeout)
        return code, await self.call.details()

    async def subscribe(
        self, type_url: str, names: Collection[str] = ()
    ) -> discovery_pb2.DiscoveryResponse:
        await self.send(type_url, names)
        response = await self.recv()
        assert response.type_url == type_url
        return response

    async def ack(
        self, response: discovery_pb2.DiscoveryResponse, names: Collection[str] = ()
    ) -> None:
        await self.send(
            response.type_url, names, nonce=response.nonce, version=response.version_info
        )

    async def nack(
        self,
        response: discovery_pb2.DiscoveryResponse,
        names: Collection[str],
        *,
        keeps: str,
        error: str,
    ) -> None:
        await self.send(response.type_url, names, nonce=response.nonce, version=keeps, error=error)

    async def expect_silence(self) -> None:
        """Assert that the server sent nothing since the last read.

        The server handles a stream's inputs in order and answers an empty-nonce
        request at once, so the next response must be the probe's answer.
        """
        await self.send(PROBE_TYPE, ["probe"])
        response = await self.recv()
        assert response.type_url == PROBE_TYPE, (
            f"unexpected {response.type_url} v{response.version_info}"
        )

    async def aclose(self) -> None:
        self.call.cancel()


def names_of(response: discovery_pb2.DiscoveryResponse) -> list[str]:
    """The names of the resources in a response (every type in this world has `name` or
    `cluster_name`)."""
    out = []
    for packed in response.resources:
        for cls in (
            cluster_pb2.Cluster,
            endpoint_pb2.ClusterLoadAssignment,
            listener_pb2.Listener,
            route_pb2.RouteConfiguration,
        ):
            if packed.Is(cls.DESCRIPTOR):
                msg = cls()
                packed.Unpack(msg)
                out.append(getattr(msg, "name", "") or getattr(msg, "cluster_name", ""))
    return out


def unpack_all(response: discovery_pb2.DiscoveryResponse, cls: type[Message]) -> list[Any]:
    out = []
    for packed in response.resources:
        msg = cls()
        assert packed.Unpack(msg)
        out.append(msg)
    return out
