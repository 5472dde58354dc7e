"""The wire contract between the control plane and the data plane: every name both
sides must spell the same way, defined once. Pure: no imports beyond typing.

- xDS type URLs the proxies subscribe to;
- well-known listener and cluster names;
- the headers sidecars add for each other (and the flags header clients see);
- the SPIFFE ID format of workloads.

Both `trellis.control` and `trellis.proxy` import from here; neither defines these
values itself (tests/test_layering.py checks which packages import which).
"""

from __future__ import annotations

from typing import Final

# -- xDS type URLs --------------------------------------------------------------------------
LISTENER_TYPE: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

# -- headers between sidecars (bytes: the proxy writes them as they are) --------------------
# The app port a request is for, set by the calling sidecar from the endpoint's metadata
# and read (then dropped) by the peer's inbound listener.
TARGET_PORT_HEADER: Final = b"x-trellis-target-port"
# Who the calling sidecar is (workload labels for metrics), read and dropped by the peer.
PEER_HEADER: Final = b"x-trellis-peer"
# Envoy's response flags of a local answer (NR, UH, UF, UO, RL, ...), seen by clients.
FLAGS_HEADER: Final = b"x-trellis-flags"
