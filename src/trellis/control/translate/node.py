"""Who is asking: a node's identity and metadata, as DESIGN §2 fixes them.

`node.id` is `KIND~WORKLOAD.NAMESPACE`; `node.metadata` carries
`{kind, namespace, serviceAccount, labels, ports}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

NodeKind = Literal["sidecar", "proxyless", "gateway"]
NODE_KINDS: tuple[NodeKind, ...] = ("sidecar", "proxyless", "gateway")


@dataclass(frozen=True, slots=True)
class NodeInfo:
    id: str
    kind: NodeKind
    workload: str
    namespace: str
    service_account: str = "default"
    labels: Mapping[str, str] = field(default_factory=dict)
    ports: tuple[int, ...] = ()
    # The node proved a mesh identity (its stream came over the secure port with a
    # client certificate): it gets mTLS clusters and an mTLS inbound listener.
    secure: bool = False

    @classmethod
    def parse(cls, node_id: str, metadata: Mapping[str, object]) -> NodeInfo:
        """Build from `node.id` and `node.metadata` (a plain dict); ValueError says what's wrong."""
        kind, sep, rest = node_id.partition("~")
        if not sep or kind not in NODE_KINDS:
            raise ValueError(
                f"node id {node_id!r} must be KIND~WORKLOAD.NAMESPACE with KIND one of {NODE_KINDS}"
            )
        workload, dot, id_ns = rest.rpartition(".")
        if not dot or not workload or not id_ns:
            raise ValueError(f"node id {node_id!r} must be KIND~WORKLOAD.NAMESPACE")
        meta_kind = metadata.get("kind", kind)
        if meta_kind != kind:
            raise ValueError(
                f"node metadata kind {meta_kind!r} differs from the id's kind {kind!r}"
            )
        namespace = str(metadata.get("namespace") or id_ns)
        labels_raw = metadata.get("labels") or {}
        if not isinstance(labels_raw, Mapping):
            raise ValueError("node metadata labels must be a map of strings")
        ports_raw = metadata.get("ports") or []
        if not isinstance(ports_raw, list | tuple):
            raise ValueError("node metadata ports must be a list of port numbers")
        try:
            ports = tuple(int(p) for p in ports_raw)
        except (TypeError, ValueError):
            raise ValueError("node metadata ports must be a list of port numbers") from None
        return cls(
            id=node_id,
            kind=kind,
            workload=workload,
            namespace=namespace,
            service_account=str(metadata.get("serviceAccount") or "default"),
            labels={str(k): str(v) for k, v in labels_raw.items()},
            ports=ports,
        )
