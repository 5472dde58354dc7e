"""How a stored resource is named: (kind, namespace, name)."""

from __future__ import annotations

from typing import NamedTuple

CLUSTER_SCOPED = frozenset({"MeshConfig"})


class ResourceKey(NamedTuple):
    kind: str
    namespace: str  # "" for cluster-scoped kinds (MeshConfig)
    name: str

    def __str__(self) -> str:
        return (
            f"{self.kind} {self.namespace}/{self.name}"
            if self.namespace
            else f"{self.kind} {self.name}"
        )
