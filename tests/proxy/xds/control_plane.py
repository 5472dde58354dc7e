"""Real parts for the xDS client's tests: an in-process control plane and a recording handler.

`ControlPlane` is the real thing minus the REST API: a SqliteStore in a data
dir, the PushController, the AdsServer and a grpc.aio server on 127.0.0.1.
It can stop and start again on the same port with the same data dir. Its
servicer taps every DiscoveryRequest on the way in (then hands the stream to
the real `AdsServer.serve_stream`), so tests can check what the client put
on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2
from google.protobuf import any_pb2, struct_pb2
from google.protobuf.message import Message

from trellis.control.push.controller import PushController
from trellis.control.xds import AdsServer, NodeStatus
from trellis.model.loader import load_documents
from trellis.ports import free_port
from trellis.proxy.xds import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from trellis.store.base import Put
from trellis.store.sqlite import SqliteStore

NAMESPACE = "shop"
NODE_ID = "sidecar~productpage-1.shop"

MESH = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: http}]
"""


def workload(name: str, address: str, inbound_port: int) -> str:
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: shop, labels: {{app: reviews}}}}
spec:
  address: {address}
  ports: [{{name: http, port: 8081}}]
  inbound: {{port: {inbound_port}}}
"""


ROUND_ROBIN_POLICY = """
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: reviews, namespace: shop}
spec:
  service: reviews
  loadBalancer: {type: ROUND_ROBIN}
"""


def sidecar_node(workload: str = "productpage-1", namespace: str = NAMESPACE) -> base_pb2.Node:
    """A sidecar's node as `trellis run` builds it (DESIGN §2)."""
    metadata = struct_pb2.Struct()
    metadata.update(
        {
            "kind": "sidecar",
            "namespace": namespace,
            "serviceAccount": "productpage",
            "labels": {"app": "productpage"},
            "ports": [9080],
        }
    )
    return base_pb2.Node(id=f"sidecar~{workload}.{namespace}", metadata=metadata)


T = TypeVar("T")


async def wait_for(probe: Callable[[], T | None], what: str, timeout: float = 10.0) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


class _TappedRequests:
    """An async iterator over a stream's requests that records each one in `sink`."""

    def __init__(
        self,
        requests: AsyncIterator[discovery_pb2.DiscoveryRequest],
        sink: list[discovery_pb2.DiscoveryRequest],
    ) -> None:
        self._requests = requests.__aiter__()
        self._sink = sink

    def __aiter__(self) -> _TappedRequests:
        return self

    async def __anext__(self) -> discovery_pb2.DiscoveryRequest:
        request = await self._requests.__anext__()
        self._sink.append(request)
        return request


class _TappedServicer(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):  # type: ignore[misc]
    def __init__(self, ads: AdsServer, sink: list[discovery_pb2.DiscoveryRequest]) -> None:
        self._ads = ads
        self._sink = sink

    async def StreamAggregatedResources(
        self,
        request_iterator: AsyncIterator[discovery_pb2.DiscoveryRequest],
        context: grpc.aio.ServicerContext,
    ) -> None:
        await self._ads.serve_stream(_TappedRequests(request_iterator, self._sink), context)


class ControlPlane:
    """The real control plane (store → push → ADS) in-process; restartable on the same port."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        # Below the ephemeral range, so that no client's source port takes it while the
        # control plane is stopped between a stop and a restart on the same port.
        self.port = free_port()
        self.requests: list[discovery_pb2.DiscoveryRequest] = []  # since the last start
        self.ads: AdsServer | None = None
        self.store: SqliteStore | None = None
        self._stack: contextlib.AsyncExitStack | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        assert self._stack is None, "already running"
        async with contextlib.AsyncExitStack() as stack:
            store = SqliteStore(self.data_dir / "state.db", poll_interval=0.05)
            stack.push_async_callback(store.aclose)
            ads = AdsServer()
            # As `trellis control` does: no SO_REUSEPORT, so the port is ours alone.
            server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
            self.requests = []
            ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(
                _TappedServicer(ads, self.requests), server
            )
            port = server.add_insecure_port(f"127.0.0.1:{self.port}")
            assert port, f"cannot listen on 127.0.0.1:{self.port}"
            await server.start()
            stack.push_async_callback(server.stop, None)
            await stack.enter_async_context(PushController(store, ads.push))
            self.port, self.ads, self.store = port, ads, store
            self._stack = stack.pop_all()

    async def stop(self, *, wait_streams: float = 0.0) -> None:
        """Stop serving (open streams end at once), the push controller, then close the store.

        `wait_streams`: first give clients that went away this long to be noticed, so the
        server does not cancel their handlers while stopping (grpc.aio prints those).
        """
        deadline = time.monotonic() + wait_streams
        while (
            self.ads is not None
            and self.ads.statistics()["streams"]
            and time.monotonic() < deadline
        ):
            await asyncio.sleep(0.01)
        stack, self._stack = self._stack, None
        self.ads = self.store = None
        if stack is not None:
            await stack.aclose()

    async def apply(self, yaml_text: str) -> None:
        """Write documents to the store and wait until the ADS server has pushed them."""
        assert self.store is not None
        result = await self.store.apply([Put(d) for d in load_documents(yaml_text)])
        ads = self.ads
        assert ads is not None
        await wait_for(lambda: ads.current.revision >= result.revision, "the push")

    def node(self, node_id: str = NODE_ID) -> NodeStatus | None:
        """The ADS server's status of `node_id`'s stream, if it is connected."""
        if self.ads is None:
            return None
        return next((s for s in self.ads.nodes() if s.node_id == node_id), None)

    def acked(self, short: str, node_id: str = NODE_ID) -> str | None:
        """The version `short` (`LDS`...) is ACKed at, when the last one sent is ACKed."""
        status = self.node(node_id)
        t = status.type(short) if status is not None else None
        if t is None or not t.sent_version or t.acked_version != t.sent_version or t.nacked:
            return None
        return t.acked_version

    def requests_for(self, type_url: str) -> list[discovery_pb2.DiscoveryRequest]:
        return [r for r in self.requests if r.type_url == type_url]


@dataclass
class Received:
    """One response as the handler saw it."""

    type_url: str
    version: str
    resources: dict[str, any_pb2.Any]
    errors: dict[str, str]


_CLASSES: dict[str, type[Message]] = {
    LISTENER_TYPE: listener_pb2.Listener,
    ROUTE_TYPE: route_pb2.RouteConfiguration,
    CLUSTER_TYPE: cluster_pb2.Cluster,
    ENDPOINT_TYPE: endpoint_pb2.ClusterLoadAssignment,
}


def resource_name(packed: any_pb2.Any) -> str:
    msg = _CLASSES[packed.type_url]()
    assert packed.Unpack(msg)
    return str(getattr(msg, "name", "") or getattr(msg, "cluster_name", ""))


def unpack(packed: any_pb2.Any) -> Any:
    msg = _CLASSES[packed.type_url]()
    assert packed.Unpack(msg)
    return msg


@dataclass
class RecordingHandler:
    """An XdsHandler that records every call and holds what it ACKed, as a proxy would.

    `nack` maps a type URL to the reason to NACK it with; `fail` types raise.
    """

    nack: dict[str, str] = field(default_factory=dict)
    fail: set[str] = field(default_factory=set)
    received: list[Received] = field(default_factory=list)
    held: dict[str, Received] = field(default_factory=dict)  # type URL -> last ACKed
    connections: list[tuple[bool, str]] = field(default_factory=list)

    def on_response(
        self,
        type_url: str,
        version: str,
        resources: Sequence[any_pb2.Any],
        errors: Mapping[str, str],
    ) -> str | None:
        got = Received(type_url, version, {resource_name(r): r for r in resources}, dict(errors))
        self.received.append(got)
        if type_url in self.fail:
            raise RuntimeError("handler bug")
        reason = self.nack.get(type_url)
        if reason is None:
            self.held[type_url] = got
        return reason

    def on_connection(self, connected: bool, server: str) -> None:
        self.connections.append((connected, server))

    def has(self, type_url: str, *names: str) -> Received | None:
        """The held (ACKed) state of `type_url` when it holds every one of `names`."""
        got = self.held.get(type_url)
        return got if got is not None and all(n in got.resources for n in names) else None

    def last(self, type_url: str) -> Received | None:
        return next((r for r in reversed(self.received) if r.type_url == type_url), None)
