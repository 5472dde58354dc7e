"""The wire contract between the control plane and the data plane: every name both
sides must spell the same way, defined once. Pure: the standard library only, no
trellis import, no I/O.

- xDS type URLs the proxies subscribe to, and the Envoy filter names in them;
- well-known listener and cluster names, and how service FQDNs, cluster names and
  inbound listener names are spelled;
- the endpoint metadata the control plane attaches (EDS `filter_metadata`);
- the headers sidecars add for each other (and the flags header clients see);
- the SPIFFE ID format of workloads (format and parse).

Both `trellis.control` and `trellis.proxy` (and `trellis.run`) import from here;
neither defines these values itself (tests/test_layering.py checks which packages
import which; this module imports nothing of trellis).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

# -- xDS type URLs --------------------------------------------------------------------------
LISTENER_TYPE: Final = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE: Final = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE: Final = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE: Final = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"

# How statistics, logs and the status views name the four types.
SHORT_NAMES: Final[dict[str, str]] = {
    LISTENER_TYPE: "LDS",
    ROUTE_TYPE: "RDS",
    CLUSTER_TYPE: "CDS",
    ENDPOINT_TYPE: "EDS",
}


def short_name(type_url: str) -> str:
    """`LDS`/`RDS`/`CDS`/`EDS` for the four types, else the message name of the URL."""
    return SHORT_NAMES.get(type_url) or type_url.rsplit(".", 1)[-1]


# -- Envoy extension names the control plane writes and the proxy understands -------------
HCM_FILTER: Final = "envoy.filters.network.http_connection_manager"
ROUTER_FILTER: Final = "envoy.filters.http.router"
FAULT_FILTER: Final = "envoy.filters.http.fault"
RBAC_FILTER: Final = "envoy.filters.http.rbac"
LOCAL_RATELIMIT_FILTER: Final = "envoy.filters.http.local_ratelimit"
OPENTELEMETRY_TRACER: Final = "envoy.tracers.opentelemetry"

# -- well-known listener and cluster names --------------------------------------------------
# The listener every sidecar asks for at start: what to do with hosts outside the
# registry (MeshConfig outboundTrafficPolicy), as Istio's virtual outbound listener.
OUTBOUND_DEFAULT_LISTENER: Final = "trellis/outbound"
PASSTHROUGH_CLUSTER: Final = "PassthroughCluster"  # ALLOW_ANY: the host reached by DNS
BLACKHOLE_CLUSTER: Final = "BlackHoleCluster"  # REGISTRY_ONLY: 502, flag NR
# The envoy_grpc cluster name that means "the control plane this proxy is connected to"
# (its OTLP receiver), in the HCM's tracing provider.
CONTROL_PLANE_CLUSTER: Final = "trellis/control-plane"
# The certificate provider instance every node's bootstrap names (gRFC A29): the proxy's
# own identity for sidecars, grpcio's file_watcher for proxyless apps.
CERTIFICATE_PROVIDER: Final = "trellis"
# Inbound listeners (gRFC A36): `trellis/inbound?address=IP:PORT`, IPv6 in brackets.
INBOUND_LISTENER_PREFIX: Final = "trellis/inbound?address="
INBOUND_LISTENER_TEMPLATE: Final = INBOUND_LISTENER_PREFIX + "%s"  # the bootstrap's template
# Services: `NAME.NAMESPACE.svc.mesh`; their clusters `outbound|PORT||FQDN`; a sidecar's
# local app port is the cluster `inbound|PORT||`.
DOMAIN_SUFFIX: Final = "svc.mesh"
OUTBOUND_CLUSTER_PREFIX: Final = "outbound|"


def service_fqdn(namespace: str, name: str) -> str:
    return f"{name}.{namespace}.{DOMAIN_SUFFIX}"


def outbound_cluster_name(fqdn: str, port: int) -> str:
    """`outbound|PORT||FQDN`: the cluster (and ClusterLoadAssignment) of a service port."""
    return f"{OUTBOUND_CLUSTER_PREFIX}{port}||{fqdn}"


def inbound_cluster_name(port: int) -> str:
    return f"inbound|{port}||"


def inbound_cluster_port(name: str) -> int:
    """The app port of an `inbound|PORT||` cluster name; 0 when it is not one."""
    parts = name.split("|")
    if len(parts) == 4 and parts[0] == "inbound" and parts[1].isdigit():
        return int(parts[1])
    return 0


def mesh_name_shape(authority: str) -> bool:
    """Could `authority` name a mesh service: NAME, NAME.NAMESPACE or
    NAME.NAMESPACE.svc.mesh, with an optional port (an IP address cannot)? The outbound
    listener asks the control plane only for such names; others follow the mesh's
    outboundTrafficPolicy."""
    host = authority
    if authority.startswith("["):
        return False
    if ":" in authority:
        host, _, port = authority.rpartition(":")
        if not port.isdigit():
            return False
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
        return False
    except ValueError:
        pass
    parts = host.split(".")
    return len(parts) <= 2 or (len(parts) == 4 and host.endswith("." + DOMAIN_SUFFIX))


# Why a name resolves to no service port (the reason of an outbound listener's NOT_FOUND):
# the client's sidecar answers such a name 404 (NR) itself instead of passing it on.
NO_SUCH_PORT: Final = "has no port"
SEVERAL_PORTS: Final = "has several ports"


def port_unresolved(reason: str) -> bool:
    return SEVERAL_PORTS in reason or NO_SUCH_PORT in reason


def inbound_listener_name(address: str, port: int) -> str:
    """gRFC A36's template filled in: `trellis/inbound?address=IP:PORT`."""
    host = f"[{address}]" if ":" in address else address
    return f"{INBOUND_LISTENER_PREFIX}{host}:{port}"


# -- endpoint metadata (EDS LbEndpoint.metadata.filter_metadata) ----------------------------
ENDPOINT_METADATA: Final = "trellis"  # the filter_metadata namespace
ENDPOINT_TARGET_PORT: Final = "targetPort"  # the app port the peer's inbound delivers to
ENDPOINT_WORKLOAD: Final = "workload"  # the endpoint's workload name (telemetry)
ENDPOINT_PEER: Final = "peer"  # the peer header's fields of the endpoint (callers' metrics)
# The same namespace on a Cluster (CDS metadata.filter_metadata["trellis"]): the retry
# budget in force for the destination (percent, minRetriesPerSecond, ttl).
RETRY_BUDGET_KEY: Final = "retryBudget"

# -- headers between sidecars ----------------------------------------------------------------
# As text (what the control plane writes into route matchers) and as bytes (what the
# proxy writes on the wire as it is).
# The app port a request is for, set by the calling sidecar from the endpoint's metadata
# and read (then dropped) by the peer's inbound listener.
TARGET_PORT_FIELD: Final = "x-trellis-target-port"
TARGET_PORT_HEADER: Final = b"x-trellis-target-port"
# Who the calling sidecar is (workload labels for metrics), read and dropped by the peer.
PEER_FIELD: Final = "x-trellis-peer"
PEER_HEADER: Final = b"x-trellis-peer"
# Envoy's response flags of a local answer (NR, UH, UF, UO, RL, ...), seen by clients.
FLAGS_FIELD: Final = "x-trellis-flags"
FLAGS_HEADER: Final = b"x-trellis-flags"

# -- the peer header's value ------------------------------------------------------------------
# `key=value;key=value`: who a workload is, for the metrics of those it calls and of those
# calling it (Istio's workload labels). A sidecar sends its own in PEER_HEADER (plus
# `service=`, the service it calls); the control plane puts each endpoint's into its EDS
# metadata (ENDPOINT_PEER). A field whose value is not PEER_VALUE is left out.
PEER_FIELDS: Final = frozenset(("workload", "namespace", "app", "version", "cs", "cr", "service"))
PEER_MAX_FIELDS: Final = 8  # a reader reads no more
PEER_VALUE: Final = re.compile(r"^[A-Za-z0-9._\-]{1,128}$")
# Labels a workload's canonical name and revision are read from, in order (Istio's).
CANONICAL_NAME_LABELS: Final = ("service.istio.io/canonical-name", "app.kubernetes.io/name", "app")
CANONICAL_REVISION_LABELS: Final = (
    "service.istio.io/canonical-revision",
    "app.kubernetes.io/version",
    "version",
)


def workload_peer(
    workload: str, namespace: str, labels: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """A workload's peer fields by Istio's rules: app and version labels (else the workload
    name, "unknown"); the canonical name (cs) from the first of CANONICAL_NAME_LABELS set
    (else the workload), the revision (cr) from the first of CANONICAL_REVISION_LABELS
    (else "latest")."""
    name = next((labels[k] for k in CANONICAL_NAME_LABELS if labels.get(k)), workload)
    revision = next((labels[k] for k in CANONICAL_REVISION_LABELS if labels.get(k)), "latest")
    return (
        ("workload", workload),
        ("namespace", namespace),
        ("app", labels.get("app") or workload),
        ("version", labels.get("version") or "unknown"),
        ("cs", name),
        ("cr", revision),
    )


def peer_value(fields: Iterable[tuple[str, str]]) -> str:
    """The header value of `fields` (those with an unsafe value left out)."""
    return ";".join(f"{k}={v}" for k, v in fields if PEER_VALUE.match(v))


def parse_peer(value: str | None) -> dict[str, str]:
    """The fields of a peer header value; anything malformed reads as absent."""
    out: dict[str, str] = {}
    if not value:
        return out
    for part in value.split(";")[:PEER_MAX_FIELDS]:
        key, sep, val = part.partition("=")
        if sep and key in PEER_FIELDS and PEER_VALUE.match(val):
            out[key] = val
    return out


# -- SPIFFE IDs of workloads -----------------------------------------------------------------
SPIFFE_SCHEME: Final = "spiffe://"
WORKLOAD_ID_SHAPE: Final = "spiffe://TD/ns/NS/sa/SA"
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
# The whole ID in one pattern (TLS peers are checked against it): group 1 is the trust domain.
WORKLOAD_ID_PATTERN: Final = (
    r"spiffe://([a-z0-9](?:[-a-z0-9.]*[a-z0-9])?)/ns/[A-Za-z0-9._-]+/sa/[A-Za-z0-9._-]+"
)


@dataclass(frozen=True, slots=True)
class SpiffeId:
    """A workload's identity, `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`: the
    one shape the mesh CA issues and the proxies check. Building one with an invalid part,
    or parsing anything else, raises ValueError with the expected shape."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        if not _TRUST_DOMAIN.match(self.trust_domain):
            raise ValueError(f"{self.trust_domain!r} is not a valid trust domain")
        segments = (("namespace", self.namespace), ("service account", self.service_account))
        for what, value in segments:
            if not _SEGMENT.match(value):
                raise ValueError(f"{value!r} is not a valid {what}")

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """The ID in `uri`; ValueError unless it is spiffe://TD/ns/NS/sa/SA."""
        rest = uri.removeprefix(SPIFFE_SCHEME)
        parts = rest.split("/")
        if rest == uri or len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise ValueError(f"{uri!r} is not a workload SPIFFE ID ({WORKLOAD_ID_SHAPE})")
        return cls(parts[0], parts[2], parts[4])

    def __str__(self) -> str:
        return workload_id(self.trust_domain, self.namespace, self.service_account)


def workload_id(trust_domain: str, namespace: str, service_account: str) -> str:
    """The SPIFFE ID text of a workload, its parts unchecked (SpiffeId checks them)."""
    return f"{SPIFFE_SCHEME}{trust_domain}/ns/{namespace}/sa/{service_account}"


def split_workload_id(value: str) -> tuple[str, str, str] | None:
    """(trust domain, namespace, service account) of `spiffe://TD/ns/NS/sa/SA` with no
    empty part, or None: the lenient reading for telemetry and display."""
    if not value.startswith(SPIFFE_SCHEME):
        return None
    parts = value[len(SPIFFE_SCHEME) :].split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa" or not all(parts):
        return None
    return parts[0], parts[2], parts[4]
