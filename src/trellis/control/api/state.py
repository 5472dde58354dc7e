"""What the API handlers work with: the store and the control plane's live parts.

Declared as Protocols so that the API knows only the methods it calls, not
the classes behind them (the registry, the ADS server, the push controller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from trellis.control.api.auth import AdminToken
from trellis.model import Workload
from trellis.model.keys import ResourceKey
from trellis.store.base import Store


class RegistryPort(Protocol):
    async def register(self, workload: Workload, ttl: float) -> Any: ...

    async def heartbeat(self, key: ResourceKey, healthy: bool = True) -> Any: ...

    async def deregister(self, key: ResourceKey) -> Any: ...


class NodeStatusView(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class AdsPort(Protocol):
    def nodes(self) -> Sequence[NodeStatusView]: ...

    def subscribers(self, resource_name: str) -> list[str]: ...


@dataclass(slots=True)
class ApiState:
    store: Store
    registry: RegistryPort
    ads: AdsPort
    tokens: AdminToken
    push: Any = None  # the PushController, when the API wants the pushed view
    xds_address: str = ""  # HOST:PORT where clients reach the ADS server
