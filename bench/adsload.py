"""Simulated proxyless nodes: real grpc.aio ADS streams that subscribe and ACK as grpcio does.

Each `SimNode` opens its own channel (one connection, as one process would)
and one StreamAggregatedResources stream, sends node `proxyless~bench-I.default`
with metadata `{kind: proxyless, namespace: default}`, and subscribes the way
grpcio's xDS client does: LDS for the target's host:port, then RDS for the
route its HTTP connection manager names, CDS for the route's clusters, EDS for
the clusters' service names. Every response is ACKed at once (version_info and
nonce echoed, the current names re-sent).

To keep the load side cheap (it shares one core with up to 1000 streams),
resources are unpacked only while a node is still discovering names; later
responses are ACKed from their header fields alone. The benchmark's pushes
change route weights, never names, so nothing is missed.

`Fleet` owns the nodes and measures one push round: which version each node
had before, and when each one ACKed a new RDS version.

Must not know how the control plane generates resources or what the mesh is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import struct_pb2

from trellis import wire

LDS, RDS, CDS, EDS = wire.LISTENER_TYPE, wire.ROUTE_TYPE, wire.CLUSTER_TYPE, wire.ENDPOINT_TYPE
ALL_TYPES = (LDS, RDS, CDS, EDS)


class SetupError(RuntimeError):
    """A node could not complete its subscriptions (NOT_FOUND, NACK-worthy config, closed)."""


def _rds_name(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    names = []
    for packed in resp.resources:
        listener = listener_pb2.Listener()
        packed.Unpack(listener)
        hcm = hcm_pb2.HttpConnectionManager()
        listener.api_listener.api_listener.Unpack(hcm)
        names.append(hcm.rds.route_config_name)
    return sorted(set(names))


def _cluster_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    names: set[str] = set()
    for packed in resp.resources:
        rc = route_pb2.RouteConfiguration()
        packed.Unpack(rc)
        for vhost in rc.virtual_hosts:
            for route in vhost.routes:
                action = route.route
                if action.cluster:
                    names.add(action.cluster)
                names.update(c.name for c in action.weighted_clusters.clusters)
    return sorted(names)


def _eds_names(resp: discovery_pb2.DiscoveryResponse) -> list[str]:
    names = []
    for packed in resp.resources:
        cluster = cluster_pb2.Cluster()
        packed.Unpack(cluster)
        names.append(cluster.eds_cluster_config.service_name or cluster.name)
    return sorted(set(names))


_NEXT = {LDS: (RDS, _rds_name), RDS: (CDS, _cluster_names), CDS: (EDS, _eds_names)}


class Round:
    """One push: the RDS version each node had before it, and when each ACKed a new one."""

    __slots__ = ("acked_at", "before", "done", "pending")

    def __init__(self, nodes: Iterable[SimNode]) -> None:
        self.before = {node.index: node.versions.get(RDS, "") for node in nodes}
        self.pending = set(self.before)
        self.acked_at: dict[int, float] = {}
        self.done = asyncio.Event()
        if not self.pending:
            self.done.set()

    def rds_acked(self, index: int, version: str, at: float) -> None:
        if index in self.pending and version != self.before[index]:
            self.pending.discard(index)
            self.acked_at[index] = at
            if not self.pending:
                self.done.set()


class SimNode:
    """One proxyless node: a channel, an ADS stream, and a task that reads and ACKs."""

    def __init__(self, index: int, target: str, listener: str, fleet: Fleet) -> None:
        self.index = index
        self.node_id = f"proxyless~bench-{index}.default"
        self.listener = listener
        self.fleet = fleet
        self.names: dict[str, list[str]] = {}
        self.versions: dict[str, str] = {}
        self.ready = asyncio.Event()
        self.error: BaseException | None = None
        self.last_error = ""  # the latest NOT_FOUND answered to this node
        self.responses = 0
        self._channel = grpc.aio.insecure_channel(target)
        self._call: grpc.aio.StreamStreamCall | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        stub = ads_pb2_grpc.AggregatedDiscoveryServiceStub(self._channel)
        self._call = stub.StreamAggregatedResources()
        metadata = struct_pb2.Struct()
        metadata.update({"kind": "proxyless", "namespace": "default"})
        first = discovery_pb2.DiscoveryRequest(
            node=base_pb2.Node(id=self.node_id, metadata=metadata),
            type_url=LDS,
            resource_names=[self.listener],
        )
        self.names[LDS] = [self.listener]
        await self._call.write(first)
        self._task = asyncio.create_task(self._read(), name=f"ads-{self.index}")

    async def _read(self) -> None:
        assert self._call is not None
        call = self._call
        try:
            while True:
                resp = await call.read()
                if resp is grpc.aio.EOF:
                    raise SetupError(f"{self.node_id}: the control plane ended the stream")
                await self._on_response(call, resp)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            self.error = exc
            self.ready.set()  # wake whoever waits; they check `error`

    async def _on_response(
        self, call: grpc.aio.StreamStreamCall, resp: discovery_pb2.DiscoveryResponse
    ) -> None:
        type_url = resp.type_url
        if resp.resource_errors:
            # Not there yet (the mesh was applied a moment ago and is still being
            # pushed): ACK and wait for the push that brings it, as grpcio does.
            detail = resp.resource_errors[0]
            self.last_error = f"{detail.resource_name.name}: {detail.error_detail.message}"
            if not resp.resources:
                await call.write(
                    discovery_pb2.DiscoveryRequest(
                        type_url=type_url,
                        version_info=self.versions.get(type_url, ""),
                        response_nonce=resp.nonce,
                        resource_names=self.names.get(type_url, []),
                    )
                )
                return
        await call.write(
            discovery_pb2.DiscoveryRequest(
                type_url=type_url,
                version_info=resp.version_info,
                response_nonce=resp.nonce,
                resource_names=self.names.get(type_url, []),
            )
        )
        self.responses += 1
        self.versions[type_url] = resp.version_info
        if type_url == RDS:
            self.fleet.rds_acked(self.index, resp.version_info, time.perf_counter())
        step = _NEXT.get(type_url)
        if step is not None and step[0] not in self.names:
            next_type, names_of = step
            names = names_of(resp)
            if not names:
                raise SetupError(f"{self.node_id}: no {next_type.rsplit('.', 1)[1]} names")
            self.names[next_type] = names
            await call.write(
                discovery_pb2.DiscoveryRequest(type_url=next_type, resource_names=names)
            )
        if not self.ready.is_set() and all(t in self.versions for t in ALL_TYPES):
            self.ready.set()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._call is not None:
            self._call.cancel()
        await self._channel.close()


class Fleet:
    """Up to N simulated nodes on one control plane; grows, measures rounds, closes."""

    def __init__(self, target: str, listener: str) -> None:
        self.target = target
        self.listener = listener
        self.nodes: list[SimNode] = []
        self._round: Round | None = None

    async def grow(self, n: int, timeout: float) -> None:
        """Open nodes until there are `n`, and wait until each one holds all four types."""
        new = [SimNode(i, self.target, self.listener, self) for i in range(len(self.nodes), n)]
        self.nodes.extend(new)
        for node in new:
            await node.start()
        try:
            await asyncio.wait_for(asyncio.gather(*(n.ready.wait() for n in new)), timeout)
        except TimeoutError:
            waiting = [node for node in new if not node.ready.is_set()]
            raise SetupError(
                f"{len(waiting)} node(s) not ready after {timeout}s;"
                f" first: {waiting[0].node_id}: {waiting[0].last_error or 'no answer'}"
            ) from None
        failed = [node.error for node in new if node.error is not None]
        if failed:
            raise SetupError(f"{len(failed)} node(s) failed; first: {failed[0]!r}")

    def begin_round(self) -> Round:
        self._round = Round(self.nodes)
        return self._round

    def rds_acked(self, index: int, version: str, at: float) -> None:
        if self._round is not None:
            self._round.rds_acked(index, version, at)

    def check(self) -> None:
        failed = [node.error for node in self.nodes if node.error is not None]
        if failed:
            raise SetupError(f"{len(failed)} node(s) failed; first: {failed[0]!r}")

    async def aclose(self) -> None:
        await asyncio.gather(*(node.aclose() for node in self.nodes), return_exceptions=True)
        self.nodes.clear()
