"""ProxyOptions: who the proxy is and where it listens (what `trellis proxy` takes). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from envoy.config.core.v3 import base_pb2
from google.protobuf import struct_pb2

from trellis import wire
from trellis.proxy.listeners.timeouts import DEFAULT_TIMEOUTS, DownstreamTimeouts


@dataclass(frozen=True, slots=True)
class Address:
    host: str
    port: int  # 0: pick a free port

    @classmethod
    def parse(cls, text: str) -> Address:
        host, sep, port = text.rpartition(":")
        if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{text!r} is not HOST:PORT")
        host = host.removeprefix("[").removesuffix("]")
        return cls(host or "0.0.0.0", int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ProxyOptions:
    control: tuple[str, ...]  # control-plane xDS addresses, in order of preference
    workload: str
    namespace: str = "default"
    service_account: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    app_ports: tuple[int, ...] = ()
    outbound: Address = Address("127.0.0.1", 15001)
    inbound: Address = Address("127.0.0.1", 15006)
    admin: Address = Address("127.0.0.1", 15000)
    access_log: str = ""  # "-" for stdout, a path, or "" for none
    pick_free_ports: bool = False  # a listener's port taken: take a free one instead
    # Mesh identity: with a join token, `control` are the control plane's secure
    # addresses (TLS, CA + ADS) and `ca_bundle` the pinned CA certificates.
    join_token: str = ""
    ca_bundle: bytes = b""
    # How long a client may take with a head, a body, or idling (outbound and inbound).
    timeouts: DownstreamTimeouts = DEFAULT_TIMEOUTS
    # The metrics listener for a Prometheus elsewhere (listeners/scrape.py): off when None;
    # it needs the SHA-256 of the scrape token.
    metrics: Address | None = None
    metrics_token_sha256: str = ""
    metrics_max_series: int = 300  # label sets kept (telemetry/metrics.py)

    @property
    def node_id(self) -> str:
        return f"sidecar~{self.workload}.{self.namespace}"

    @property
    def app(self) -> str:
        return self.labels.get("app", self.workload)

    def node(self, ports: tuple[int, ...] | None = None) -> base_pb2.Node:
        metadata = struct_pb2.Struct()
        metadata.update(
            {
                "kind": "sidecar",
                "namespace": self.namespace,
                "serviceAccount": self.service_account or self.labels.get("app") or "default",
                "labels": dict(self.labels),
                "ports": list(self.app_ports if ports is None else ports),
            }
        )
        return base_pb2.Node(id=self.node_id, cluster=self.namespace, metadata=metadata)


def inbound_listener_name(address: str, port: int) -> str:
    """gRFC A36's template, as the control plane names inbound listeners."""
    return wire.inbound_listener_name(address, port)
