"""What the API handlers work with: the store and the control plane's live parts.

Declared as Protocols so that the API knows only the methods it calls, not
the classes behind them (the registry, the ADS server, the push controller).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from trellis.control.api.auth import AdminToken
from trellis.control.metrics.scrape_token import ScrapeToken
from trellis.model import Workload
from trellis.model.keys import ResourceKey
from trellis.store.base import Store

if TYPE_CHECKING:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )

    from trellis.control.ca.authority import Authority
    from trellis.control.ca.db import CertificateRecord
    from trellis.control.ca.issuer import MeshSettings, NewToken
    from trellis.control.ca.tokens import TokenRecord
    from trellis.control.push.context import PushContext
    from trellis.control.signals.tap import TapHub
    from trellis.control.traces.export import Refused
    from trellis.control.traces.store import TraceStore
    from trellis.control.translate.node import NodeInfo


class RegistryPort(Protocol):
    async def register(self, workload: Workload, ttl: float) -> Any: ...

    async def heartbeat(self, key: ResourceKey, healthy: bool = True) -> Any: ...

    async def deregister(self, key: ResourceKey) -> Any: ...


class NodeStatusView(Protocol):
    def to_json(self) -> dict[str, Any]: ...


class AdsPort(Protocol):
    def nodes(self) -> Sequence[NodeStatusView]: ...

    def subscribers(self, resource_name: str) -> list[str]: ...

    @property
    def current(self) -> PushContext:
        """The PushContext being served."""

    def node_infos(self) -> Sequence[NodeInfo]: ...


class CaPort(Protocol):
    """The mesh CA (trellis.control.ca.issuer.CertificateAuthority), as the API uses it."""

    @property
    def authority(self) -> Authority: ...

    def bundle_pem(self) -> bytes: ...

    async def settings(self) -> MeshSettings: ...

    def create_token(
        self, service_account: str, namespace: str, ttl_seconds: float
    ) -> NewToken: ...

    def tokens(self) -> list[TokenRecord]: ...

    def revoke_token(self, token_id: str) -> TokenRecord | None: ...

    def certificates_of_token(self, token_id: str) -> int: ...

    def current_certificates(
        self, namespace: str | None = None, service_account: str | None = None
    ) -> list[CertificateRecord]: ...

    def rotate(self) -> Authority: ...

    def finish_rotation(self) -> Authority: ...


class TracesPort(Protocol):
    """The trace receiver and its store (trellis.control.traces.export.OtlpReceiver)."""

    @property
    def store(self) -> TraceStore: ...

    @property
    def max_bytes(self) -> int: ...

    def receive(self, data: bytes) -> ExportTraceServiceResponse | Refused: ...

    def receive_json(self, data: bytes) -> ExportTraceServiceResponse | Refused: ...

    def statistics(self) -> dict[str, int]: ...


class TelemetryPort(Protocol):
    """The proxies' telemetry streams (trellis.control.signals.stream.TelemetryHub)."""

    @property
    def taps(self) -> TapHub: ...

    def signals(self, window: float) -> dict[str, Any]: ...

    def history(self, minutes: float, **which: str | None) -> dict[str, Any]: ...

    def statistics(self) -> dict[str, Any]: ...


@dataclass(slots=True)
class ApiState:
    store: Store
    registry: RegistryPort
    ads: AdsPort
    tokens: AdminToken
    push: Any = None  # the PushController, when the API wants the pushed view
    xds_address: str = ""  # HOST:PORT where clients reach the ADS server
    ca: CaPort | None = None  # the mesh CA; None when this API runs without one
    scrape_token: ScrapeToken | None = None  # Prometheus's credential (control/metrics)
    secure_address: str = ""  # HOST:PORT of the secure port (TLS: CA service + ADS)
    traces: TracesPort | None = None  # the OTLP receiver and trace store; None: without one
    telemetry: TelemetryPort | None = None  # golden signals and tap; None: without them
