"""The xDS resource types the proxy subscribes to: type URLs and their short names.

Owns the four constants and how statistics and logs name a type (`LDS`, `RDS`,
`CDS`, `EDS`). Knows nothing of streams or resources.
"""

from __future__ import annotations

from typing import Final

LISTENER_TYPE: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

SHORT_NAMES: Final[dict[str, str]] = {
    LISTENER_TYPE: "LDS",
    ROUTE_TYPE: "RDS",
    CLUSTER_TYPE: "CDS",
    ENDPOINT_TYPE: "EDS",
}


def short_name(type_url: str) -> str:
    """`LDS`/`RDS`/`CDS`/`EDS` for the four types, else the message name of the URL."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1]
