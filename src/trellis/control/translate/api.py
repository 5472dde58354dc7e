"""The translator's contract: type URLs, the result shape, and `generate`."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf import any_pb2
from google.protobuf.message import Message

from trellis.control.push.context import PushContext
from trellis.control.translate.node import NodeInfo
from trellis.wire import CLUSTER_TYPE as CLUSTER_TYPE
from trellis.wire import ENDPOINT_TYPE as ENDPOINT_TYPE
from trellis.wire import LISTENER_TYPE as LISTENER_TYPE
from trellis.wire import ROUTE_TYPE as ROUTE_TYPE

# Make-before-break: clusters and endpoints before the listeners/routes that use them.
TYPE_ORDER = (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE)


@dataclass(frozen=True, slots=True)
class Generated:
    """What one node gets for one type.

    `resources`: name -> resource message (not packed in Any).
    `errors`: name -> reason, for requested names that exist nowhere; the ADS
    server answers them in `DiscoveryResponse.resource_errors` as NOT_FOUND.
    `packed`: name -> the resource already packed in Any (`pb.pack`), for those a
    generator shares between nodes: packed once per push instead of once per node.
    Resources are shared: callers must not modify them.
    """

    resources: dict[str, Message] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    packed: dict[str, any_pb2.Any] = field(default_factory=dict)


class Generator(Protocol):
    """What one node kind answers: pure, no I/O, no clock."""

    def generate(
        self, node: NodeInfo, push: PushContext, type_url: str, names: Collection[str] | None
    ) -> Generated: ...


def generate(
    node: NodeInfo, push: PushContext, type_url: str, names: Collection[str] | None
) -> Generated:
    """Resources of `type_url` for `node`; `names` None means a wildcard subscription."""
    from trellis.control.translate.generators import GENERATORS

    return GENERATORS[node.kind].generate(node, push, type_url, names)
