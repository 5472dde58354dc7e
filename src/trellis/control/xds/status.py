"""What `trellis status` shows about each connected node: plain value objects.

Owns the shape of a node's xDS status (per type: subscription, versions,
ACK/NACK, not-found names) and its JSON form. Knows nothing of gRPC or of
how the ADS server keeps its state; the server builds these on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from trellis.wire import short_name


@dataclass(frozen=True, slots=True)
class TypeStatus:
    """One resource type on one stream.

    `names` is None for a wildcard subscription. `sent_version` is "" until
    something was sent; `acked_version` is None until the client ACKs.
    `nacked` is true while the latest response the client answered was
    rejected; `error` holds the client's `error_detail.message` of that NACK.
    """

    type_url: str
    names: tuple[str, ...] | None
    sent_version: str
    acked_version: str | None
    nacked: bool
    error: str | None
    not_found: tuple[str, ...]

    @property
    def short_name(self) -> str:
        return short_name(self.type_url)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.short_name,
            "typeUrl": self.type_url,
            "names": None if self.names is None else list(self.names),
            "wildcard": self.names is None,
            "sentVersion": self.sent_version,
            "ackedVersion": self.acked_version,
            "acked": bool(self.sent_version) and self.acked_version == self.sent_version,
            "nacked": self.nacked,
            "error": self.error,
            "notFound": list(self.not_found),
        }


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One ADS stream: who is connected, from where, since when, and its types."""

    node_id: str
    kind: str
    namespace: str
    workload: str
    peer: str
    connected_at: float  # time.time() seconds
    types: tuple[TypeStatus, ...]

    def type(self, short_or_url: str) -> TypeStatus | None:
        """The status of one type, by short name (`CDS`) or type URL."""
        for t in self.types:
            if short_or_url in (t.type_url, t.short_name):
                return t
        return None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.node_id,
            "kind": self.kind,
            "namespace": self.namespace,
            "workload": self.workload,
            "peer": self.peer,
            "connectedAt": datetime.fromtimestamp(self.connected_at, UTC).isoformat(),
            "types": {t.short_name: t.to_json() for t in self.types},
        }
