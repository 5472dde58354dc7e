"""The ADS server: serves translated xDS resources to every connected node over gRPC.

`AdsServer` (server.py) is the grpc.aio transport; `AdsStream` (stream.py) is
the sans-IO protocol state of one stream; `status.py` is what `trellis status`
shows; `version.py` hashes content into versions.
"""

from trellis.control.xds.server import AdsServer
from trellis.control.xds.status import NodeStatus, TypeStatus
from trellis.control.xds.stream import AdsStream, BadRequest, GenerateFn

__all__ = ["AdsServer", "AdsStream", "BadRequest", "GenerateFn", "NodeStatus", "TypeStatus"]
