"""Pure translation of mesh state into xDS resources, per node and per kind.

`generate(node, push, type_url, names)` is the one entry point: no I/O, no
clock, no globals. The ADS server calls it for each stream and type after
every push; simulation and golden tests call it directly.
"""

from trellis.control.translate.api import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    TYPE_ORDER,
    Generated,
    generate,
)
from trellis.control.translate.node import NodeInfo

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "TYPE_ORDER",
    "Generated",
    "NodeInfo",
    "generate",
]
