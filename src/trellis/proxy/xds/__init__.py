"""The proxy's xDS client: subscriptions over one ADS stream, ACK/NACK, reconnect and failover.

`client.py` is the grpc.aio transport (`AdsClient`, the `XdsHandler` it feeds);
`protocol.py` the sans-IO ACK/NACK and subscription bookkeeping; `backoff.py`
the reconnect delays; `type_urls.py` the four resource types. What the
resources mean is the handler's business, not this package's.
"""

from trellis.proxy.xds.client import AdsClient, XdsHandler
from trellis.proxy.xds.type_urls import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

__all__ = [
    "CLUSTER_TYPE",
    "ENDPOINT_TYPE",
    "LISTENER_TYPE",
    "ROUTE_TYPE",
    "AdsClient",
    "XdsHandler",
]
