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
from dataclasses import dataclass
from typing import Any

from trellis.wire import CERTIFICATE_PROVIDER, INBOUND_LISTENER_TEMPLATE

SERVER_FEATURES = ("xds_v3", "ignore_resource_deletion")


@dataclass(frozen=True, slots=True)
class IdentityFiles:
    """Where grpcio's file_watcher reads the workload's SVID (swapped atomically)."""

    certificate: str
    private_key: str
    bundle: str
    refresh_seconds: float = 1.0

    @classmethod
    def under(cls, current: str) -> IdentityFiles:
        return cls(f"{current}/cert.pem", f"{current}/key.pem", f"{current}/bundle.pem")


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
    identity: IdentityFiles | None = None,
) -> dict[str, Any]:
    """A bootstrap naming every control plane (`host:port`) in order of preference.

    With `identity`, the control planes are their secure ports: the xDS channel is mTLS
    with the workload's SVID (gRFC A65 `tls` channel credentials), and the files are
    the `trellis` certificate provider that mesh clusters and listeners name (A29)."""
    if not control_planes:
        raise ValueError("at least one control-plane address is needed")
    labels = dict(labels or {})
    creds: list[dict[str, Any]] = [{"type": "insecure"}]
    if identity is not None:
        creds = [
            {
                "type": "tls",
                "config": {
                    "ca_certificate_file": identity.bundle,
                    "certificate_file": identity.certificate,
                    "private_key_file": identity.private_key,
                    "refresh_interval": f"{identity.refresh_seconds:g}s",
                },
            }
        ]
    bootstrap: dict[str, Any] = {
        "xds_servers": [
            {
                "server_uri": address,
                "channel_creds": creds,
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
    if identity is not None:
        bootstrap["certificate_providers"] = {
            CERTIFICATE_PROVIDER: {
                "plugin_name": "file_watcher",
                "config": {
                    "certificate_file": identity.certificate,
                    "private_key_file": identity.private_key,
                    "ca_certificate_file": identity.bundle,
                    "refresh_interval": f"{identity.refresh_seconds:g}s",
                },
            }
        }
    return bootstrap


def bootstrap_json(**kwargs: Any) -> str:
    return json.dumps(grpc_bootstrap(**kwargs), indent=2, sort_keys=True)
