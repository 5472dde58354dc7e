"""The gRPC xDS bootstrap a proxyless app reads from GRPC_XDS_BOOTSTRAP. Pure.

Fixed by DESIGN §2: node id `proxyless~WORKLOAD.NAMESPACE`, node metadata
`{kind, namespace, serviceAccount, labels, ports}`, the A36 server listener
template `trellis/inbound?address=%s`, and the `ignore_resource_deletion`
server feature (gRFC A53) so a client keeps what it holds if a control plane
ever leaves a resource out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

INBOUND_LISTENER_TEMPLATE = "trellis/inbound?address=%s"
SERVER_FEATURES = ("xds_v3", "ignore_resource_deletion")


def node_id(kind: str, workload: str, namespace: str) -> str:
    return f"{kind}~{workload}.{namespace}"


def grpc_bootstrap(
    *,
    control_planes: Sequence[str],
    workload: str,
    namespace: str = "default",
    service_account: str | None = None,
    labels: Mapping[str, str] | None = None,
    ports: Sequence[int] = (),
    kind: str = "proxyless",
) -> dict[str, Any]:
    """A bootstrap naming every control plane (`host:port`) in order of preference."""
    if not control_planes:
        raise ValueError("at least one control-plane address is needed")
    labels = dict(labels or {})
    return {
        "xds_servers": [
            {
                "server_uri": address,
                "channel_creds": [{"type": "insecure"}],
                "server_features": list(SERVER_FEATURES),
            }
            for address in control_planes
        ],
        "node": {
            "id": node_id(kind, workload, namespace),
            "cluster": namespace,
            "metadata": {
                "kind": kind,
                "namespace": namespace,
                "serviceAccount": service_account or labels.get("app") or "default",
                "labels": labels,
                "ports": list(ports),
            },
            "locality": {},
        },
        "server_listener_resource_name_template": INBOUND_LISTENER_TEMPLATE,
    }


def bootstrap_json(**kwargs: Any) -> str:
    return json.dumps(grpc_bootstrap(**kwargs), indent=2, sort_keys=True)
