"""What one node would hold: resources generated for it, then compiled by the proxy's own code.

`NodeConfig(node, push)` answers `listener(name)`, `routes(name)`, `cluster(name)` and
`endpoints(name)` as the node's sidecar would have them after asking the control plane
for those names: the resource is generated for the node by the translator
(`trellis.control.translate.generate`, from the PushContext being served) and decoded by
the proxy's config code (`trellis.proxy.config.resources`: ListenerConfig, RouteTable,
ClusterConfig, endpoints), so explanations evaluate the very objects the sidecar does.
A name the control plane answers NOT_FOUND comes back as `Missing(reason)`; a resource
the proxy would refuse (a NACK) as `Refused(reason)`.

Pure: no I/O, no clock. Must not know how requests are taken (outbound.py, inbound.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar, cast

from google.protobuf import any_pb2

from trellis.control.push.context import PushContext
from trellis.control.translate import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    NodeInfo,
    generate,
    pb,
)
from trellis.proxy.config.resources import (
    ClusterConfig,
    ConfigError,
    EndpointConfig,
    ListenerConfig,
    decode_assignment,
    decode_cluster,
    decode_listener,
    decode_route_config,
)
from trellis.routing import RouteTable

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Missing:
    """The control plane answers the name NOT_FOUND (the sidecar's view: it does not exist)."""

    reason: str


@dataclass(frozen=True, slots=True)
class Refused:
    """The resource exists, but the proxy's config code refuses it (the sidecar NACKs it and
    keeps what it had)."""

    reason: str


class NodeConfig:
    """The resources of one node, generated and compiled on demand (each name once)."""

    __slots__ = ("_cache", "node", "push")

    def __init__(self, node: NodeInfo, push: PushContext) -> None:
        self.node = node
        self.push = push
        self._cache: dict[tuple[str, str], object] = {}

    def listener(self, name: str) -> ListenerConfig | Missing | Refused:
        return self._get(LISTENER_TYPE, name, decode_listener)

    def routes(self, name: str) -> RouteTable | Missing | Refused:
        return self._get(ROUTE_TYPE, name, decode_route_config)

    def cluster(self, name: str) -> ClusterConfig | Missing | Refused:
        return self._get(CLUSTER_TYPE, name, decode_cluster)

    def endpoints(self, name: str) -> tuple[EndpointConfig, ...] | Missing | Refused:
        return self._get(ENDPOINT_TYPE, name, decode_assignment)

    def _get(
        self, type_url: str, name: str, decode: Callable[[any_pb2.Any], tuple[str, T]]
    ) -> T | Missing | Refused:
        key = (type_url, name)
        if key not in self._cache:
            self._cache[key] = self._build(type_url, name, decode)
        return cast("T | Missing | Refused", self._cache[key])

    def _build(
        self, type_url: str, name: str, decode: Callable[[any_pb2.Any], tuple[str, T]]
    ) -> T | Missing | Refused:
        generated = generate(self.node, self.push, type_url, [name])
        if name not in generated.resources:
            return Missing(generated.errors.get(name, "not found"))
        packed = generated.packed.get(name)
        if packed is None:
            packed = pb.pack(generated.resources[name])
        try:
            _, config = decode(packed)
        except ConfigError as e:
            return Refused(str(e))
        return config
