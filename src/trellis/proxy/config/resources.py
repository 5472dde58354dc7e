"""xDS resources → the proxy's config objects, validated; a `ConfigError` is a NACK reason.

One decoder per type. Each takes a packed `Any`, returns `(name, config)`, and
refuses what the proxy could not honour (an unknown required HTTP filter, a
config source other than ADS, a load-balancing policy with no supported
choice, a route table that does not compile) with the field path, as Envoy
and grpcio do. Listeners also carry the HCM's path normalization options and,
inbound, which app ports accept CONNECT. Pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.extensions.load_balancing_policies.least_request.v3 import least_request_pb2
from envoy.extensions.load_balancing_policies.ring_hash.v3 import ring_hash_pb2
from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2 as tls_common_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import DecodeError, Message

from trellis.authz import Engine, RbacConfigError
from trellis.proxy.config.tracing import TracingConfig, TracingConfigError, decode_tracing
from trellis.proxy.config.types import (
    CERTIFICATE_PROVIDER,
    FAULT_FILTER,
    HCM_FILTER,
    LOCAL_RATELIMIT_FILTER,
    RBAC_FILTER,
    ROUTER_FILTER,
)
from trellis.routing import RouteConfigError, RouteTable
from trellis.routing.local_ratelimit import filter_level as rate_limit_filter
from trellis.routing.matchers import StringTest, string_test
from trellis.routing.paths import (
    DEFAULT_OPTIONS,
    ESCAPED_SLASH_ACTIONS,
    REJECT_REQUEST,
    PathOptions,
)
from trellis.wire import (
    ENDPOINT_METADATA,
    ENDPOINT_PEER,
    ENDPOINT_TARGET_PORT,
    ENDPOINT_WORKLOAD,
    RETRY_BUDGET_KEY,
)

_HEALTHY = (health_check_pb2.HealthStatus.UNKNOWN, health_check_pb2.HealthStatus.HEALTHY)
_KNOWN_FILTERS = (ROUTER_FILTER, FAULT_FILTER, RBAC_FILTER, LOCAL_RATELIMIT_FILTER)


class ConfigError(Exception):
    """A resource the proxy refuses; str is `name: field: reason`."""


def _unpack(packed: any_pb2.Any, message: Message, what: str) -> None:
    expected = message.DESCRIPTOR.full_name
    if packed.TypeName() != expected:
        raise ConfigError(f"{what}: expected {expected}, got {packed.TypeName() or 'nothing'}")
    try:
        packed.Unpack(message)
    except DecodeError as e:
        raise ConfigError(f"{what}: cannot decode: {e}") from None


def _seconds(d: duration_pb2.Duration, default: float) -> float:
    if d.seconds == 0 and d.nanos == 0:
        return default
    return float(d.seconds + d.nanos / 1e9)


# -- TLS --------------------------------------------------------------------------------

TlsMode = Literal["DISABLE", "STRICT", "PERMISSIVE"]


@dataclass(frozen=True, slots=True)
class UpstreamTls:
    """Mesh mTLS to a cluster's endpoints: our SVID as client certificate, and the peer's
    SPIFFE ID must pass one of `san_tests` (gRFC A29's match_subject_alt_names)."""

    san_tests: tuple[StringTest, ...] = ()
    sans: tuple[str, ...] = ()  # as configured, for /clusters and errors

    def allows(self, spiffe_id: str) -> bool:
        """`spiffe_id` is the peer's (`peer_spiffe_id`: "" when its certificate names no
        one SPIFFE ID), which must be one; with no SAN tests any one is allowed."""
        if not spiffe_id:
            return False
        return not self.san_tests or any(test(spiffe_id) for test in self.san_tests)


def _provider(common: tls_pb2.CommonTlsContext, where: str) -> None:
    """Certificates come from our identity: the one provider instance every node knows."""
    if not common.HasField("tls_certificate_provider_instance"):
        raise ConfigError(f"{where}.tls_certificate_provider_instance: required")
    name = common.tls_certificate_provider_instance.instance_name
    if name != CERTIFICATE_PROVIDER:
        raise ConfigError(
            f"{where}.tls_certificate_provider_instance.instance_name: "
            f"unrecognized certificate provider instance name: {name}"
        )


def _validation(
    common: tls_pb2.CommonTlsContext, where: str
) -> tls_common_pb2.CertificateValidationContext:
    if not common.HasField("validation_context"):
        raise ConfigError(f"{where}.validation_context: required (peers are verified)")
    validation = common.validation_context
    ca = validation.ca_certificate_provider_instance.instance_name
    if ca != CERTIFICATE_PROVIDER:
        raise ConfigError(
            f"{where}.validation_context.ca_certificate_provider_instance.instance_name: "
            f"unrecognized certificate provider instance name: {ca or '(none)'}"
        )
    return validation


def _upstream_tls(cluster: cluster_pb2.Cluster) -> UpstreamTls:
    where = f"{cluster.name}: transport_socket"
    context = tls_pb2.UpstreamTlsContext()
    _unpack(cluster.transport_socket.typed_config, context, where)
    common = context.common_tls_context
    _provider(common, f"{where}.common_tls_context")
    validation = _validation(common, f"{where}.common_tls_context")
    tests = []
    for i, m in enumerate(validation.match_subject_alt_names):
        try:
            tests.append(string_test(m, f"match_subject_alt_names[{i}]"))
        except RouteConfigError as e:
            raise ConfigError(f"{where}.common_tls_context.validation_context.{e}") from None
    sans = tuple(
        m.exact or m.prefix or m.suffix or m.contains or m.safe_regex.regex
        for m in validation.match_subject_alt_names
    )
    return UpstreamTls(tuple(tests), sans)


def _downstream_tls(chain: listener_components_pb2.FilterChain, where: str) -> bool:
    """Whether the chain terminates mesh mTLS (True) or takes plaintext (False)."""
    if not chain.HasField("transport_socket"):
        return False
    context = tls_pb2.DownstreamTlsContext()
    _unpack(chain.transport_socket.typed_config, context, f"{where}.transport_socket")
    common = context.common_tls_context
    _provider(common, f"{where}.transport_socket.common_tls_context")
    _validation(common, f"{where}.transport_socket.common_tls_context")
    if not context.require_client_certificate.value:
        raise ConfigError(
            f"{where}.transport_socket.require_client_certificate: mesh TLS is mutual"
        )
    return True


# -- Listener ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """An outbound API listener (RDS by name) or an inbound listener (inline routes)."""

    name: str
    route_config_name: str | None = None
    routes: RouteTable | None = None
    address: tuple[str, int] | None = None
    http_filters: tuple[str, ...] = ()
    tls: TlsMode = "DISABLE"  # inbound: what connections must speak
    authz: tuple[Engine, ...] = ()  # inbound: RBAC filters, in order
    paths: PathOptions = DEFAULT_OPTIONS  # how request paths are normalized (routing/paths.py)
    tunnel_ports: frozenset[int] = frozenset()  # inbound: app ports that accept CONNECT
    tracing: TracingConfig | None = None  # the HCM's tracing (config/tracing.py)

    @property
    def inbound(self) -> bool:
        return self.address is not None


def _http_filters(hcm: hcm_pb2.HttpConnectionManager, where: str) -> tuple[str, ...]:
    names = []
    for i, f in enumerate(hcm.http_filters):
        if f.name not in _KNOWN_FILTERS and not f.is_optional:
            raise ConfigError(f"{where}.http_filters[{i}]: unsupported filter {f.name!r}")
        if f.name == LOCAL_RATELIMIT_FILTER and f.HasField("typed_config"):
            try:
                rate_limit_filter(f.typed_config, f"http_filters[{i}].typed_config")
            except RouteConfigError as e:
                raise ConfigError(f"{where}.{e}") from None
        names.append(f.name)
    if not names or names[-1] != ROUTER_FILTER:
        raise ConfigError(f"{where}.http_filters: the router filter must be last")
    return tuple(names)


def _tracing(hcm: hcm_pb2.HttpConnectionManager, where: str) -> TracingConfig | None:
    try:
        return decode_tracing(hcm, where)
    except TracingConfigError as e:
        raise ConfigError(str(e)) from None


def _authz(hcm: hcm_pb2.HttpConnectionManager, where: str) -> tuple[Engine, ...]:
    """The RBAC filters, compiled, in their order (DENY before ALLOW, as the HCM runs them)."""
    engines = []
    for i, f in enumerate(hcm.http_filters):
        if f.name != RBAC_FILTER:
            continue
        try:
            engines.append(Engine.compile_any(f.typed_config))
        except RbacConfigError as e:
            raise ConfigError(f"{where}.http_filters[{i}].typed_config.{e}") from None
    return tuple(engines)


def _path_options(hcm: hcm_pb2.HttpConnectionManager, where: str) -> PathOptions:
    """`normalize_path`, `merge_slashes`, `path_with_escaped_slashes_action`. Left unset,
    normalize_path is on and the implementation-specific action refuses escaped slashes:
    Envoy's defaults (off, keep) would let `/%2e%2e/admin` past a policy on /admin. Our
    control plane always states all three."""
    if hcm.HasField("path_normalization_options"):
        raise ConfigError(f"{where}.path_normalization_options: not supported")
    action = hcm.path_with_escaped_slashes_action or REJECT_REQUEST
    if action not in ESCAPED_SLASH_ACTIONS:
        raise ConfigError(f"{where}.path_with_escaped_slashes_action: unknown value {action}")
    normalize = hcm.normalize_path.value if hcm.HasField("normalize_path") else True
    return PathOptions(normalize, hcm.merge_slashes, action)


def _tunnel_ports(hcm: hcm_pb2.HttpConnectionManager) -> frozenset[int]:
    """The app ports (`inbound|PORT||` clusters) whose routes accept CONNECT: an
    `upgrade_configs` entry of type CONNECT on the route, or on the HCM unless the route's
    entry disables it (Envoy: a route's `enabled` overrides the HCM's)."""
    default = any(_connect(u) for u in hcm.upgrade_configs)
    ports: set[int] = set()
    for vhost in hcm.route_config.virtual_hosts:
        for route in vhost.routes:
            if not route.HasField("route"):
                continue
            action = route.route
            enabled = default
            for u in action.upgrade_configs:
                if u.upgrade_type.lower() == "connect":
                    enabled = _connect(u)
            if not enabled:
                continue
            clusters = [action.cluster] + [c.name for c in action.weighted_clusters.clusters]
            for name in clusters:
                parts = name.split("|")
                if len(parts) == 4 and parts[0] == "inbound" and parts[1].isdigit():
                    ports.add(int(parts[1]))
    return frozenset(ports)


def _connect(upgrade: Any) -> bool:
    """An UpgradeConfig (the HCM's or a route's) that enables CONNECT (`enabled` unset: on)."""
    return bool(upgrade.upgrade_type.lower() == "connect") and (
        not upgrade.HasField("enabled") or bool(upgrade.enabled.value)
    )


def _routes(rc: route_pb2.RouteConfiguration, where: str) -> RouteTable:
    try:
        return RouteTable.compile(rc)
    except RouteConfigError as e:
        raise ConfigError(f"{where}.{e}") from None


def decode_listener(packed: any_pb2.Any) -> tuple[str, ListenerConfig]:
    listener = listener_pb2.Listener()
    _unpack(packed, listener, "resource")
    name = listener.name
    if listener.HasField("api_listener"):
        hcm = hcm_pb2.HttpConnectionManager()
        _unpack(listener.api_listener.api_listener, hcm, f"{name}: api_listener")
        filters = _http_filters(hcm, f"{name}: api_listener")
        paths = _path_options(hcm, f"{name}: api_listener")
        tracing = _tracing(hcm, f"{name}: api_listener")
        if hcm.HasField("rds"):
            if not hcm.rds.config_source.HasField("ads"):
                raise ConfigError(f"{name}: rds.config_source: only ads is supported")
            if not hcm.rds.route_config_name:
                raise ConfigError(f"{name}: rds.route_config_name: empty")
            rds = hcm.rds.route_config_name
            return name, ListenerConfig(
                name, rds, http_filters=filters, paths=paths, tracing=tracing
            )
        if hcm.HasField("route_config"):
            table = _routes(hcm.route_config, f"{name}: route_config")
            return name, ListenerConfig(
                name, routes=table, http_filters=filters, paths=paths, tracing=tracing
            )
        raise ConfigError(f"{name}: api_listener: neither rds nor route_config")
    if not listener.filter_chains:
        raise ConfigError(f"{name}: neither api_listener nor filter_chains")
    sock = listener.address.socket_address
    if not sock.address or not sock.port_value:
        raise ConfigError(f"{name}: address: an inbound listener needs address and port")
    # One chain (mTLS or plaintext), or two told apart by transport protocol (PERMISSIVE).
    # Every chain serves the same routes: the first chain's HCM is the one used.
    if len(listener.filter_chains) > 2:
        raise ConfigError(f"{name}: filter_chains: at most two (mTLS and plaintext)")
    tls_chains = []
    for i, chain in enumerate(listener.filter_chains):
        where = f"{name}: filter_chains[{i}]"
        if not chain.filters or chain.filters[-1].name != HCM_FILTER:
            raise ConfigError(f"{where}.filters: the last filter must be the HCM")
        tls_chains.append(_downstream_tls(chain, where))
    if len(tls_chains) == 2 and sorted(tls_chains) != [False, True]:
        raise ConfigError(f"{name}: filter_chains: two chains must be one mTLS, one plaintext")
    mode: TlsMode = (
        "PERMISSIVE" if len(tls_chains) == 2 else ("STRICT" if tls_chains[0] else "DISABLE")
    )
    chain = listener.filter_chains[0]
    hcm = hcm_pb2.HttpConnectionManager()
    _unpack(chain.filters[-1].typed_config, hcm, f"{name}: filter_chains[0].filters[-1]")
    where = f"{name}: filter_chains[0]"
    filters = _http_filters(hcm, where)
    if not hcm.HasField("route_config"):
        raise ConfigError(f"{where}: an inbound listener needs an inline route_config")
    table = _routes(hcm.route_config, f"{where}.route_config")
    address = (sock.address, sock.port_value)
    return name, ListenerConfig(
        name,
        routes=table,
        address=address,
        http_filters=filters,
        tls=mode,
        authz=_authz(hcm, where),
        paths=_path_options(hcm, where),
        tunnel_ports=_tunnel_ports(hcm),
        tracing=_tracing(hcm, where),
    )


# -- RouteConfiguration -------------------------------------------------------------------


def decode_route_config(packed: any_pb2.Any) -> tuple[str, RouteTable]:
    rc = route_pb2.RouteConfiguration()
    _unpack(packed, rc, "resource")
    return rc.name, _routes(rc, rc.name)


# -- Cluster ------------------------------------------------------------------------------

LbKind = Literal["least_request", "round_robin", "ring_hash"]


@dataclass(frozen=True, slots=True)
class LbConfig:
    kind: LbKind = "least_request"
    choice_count: int = 2
    ring_min: int = 1024
    ring_max: int = 8 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class CircuitLimits:
    """Envoy's defaults: 1024 connections, pending and active requests, 3 active retries."""

    max_connections: int = 1024
    max_pending: int = 1024
    max_requests: int = 1024
    max_retries: int = 3


@dataclass(frozen=True, slots=True)
class RetryBudgetConfig:
    """Linkerd's retry budget (stack/budget.py): retries at most `ratio` of the requests
    plus `min_per_second`, over `ttl` seconds. On by default."""

    ratio: float = 0.2
    min_per_second: float = 10.0
    ttl: float = 10.0


@dataclass(frozen=True, slots=True)
class OutlierConfig:
    consecutive_5xx: int | None = None
    consecutive_gateway: int | None = None
    interval: float = 10.0
    base_ejection: float = 30.0
    max_ejection_percent: int = 10
    # Failure percentage (Envoy's): evaluated every `interval` over hosts with at least
    # `failure_percentage_volume` requests, when at least `failure_percentage_min_hosts` do.
    failure_percentage: int | None = None
    failure_percentage_min_hosts: int = 5
    failure_percentage_volume: int = 50


@dataclass(frozen=True, slots=True)
class EndpointConfig:
    address: str
    port: int
    weight: int = 1
    target_port: int | None = None  # the app port behind a peer's inbound listener
    workload: str = ""
    locality: str = ""
    peer: str = ""  # the endpoint's labels for metrics, in the peer header's format
    priority: int = 0  # EDS priority: 0 is preferred (the caller's own zone), then 1, ...
    locality_weight: int = 0  # the weight of the endpoint's locality group (0: unset)

    @property
    def key(self) -> tuple[str, int]:
        return (self.address, self.port)


Discovery = Literal["EDS", "STATIC", "ORIGINAL_DST"]


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    name: str
    discovery: Discovery = "EDS"
    eds_name: str = ""
    lb: LbConfig = field(default_factory=LbConfig)
    connect_timeout: float = 5.0
    limits: CircuitLimits = field(default_factory=CircuitLimits)
    outlier: OutlierConfig | None = None
    endpoints: tuple[EndpointConfig, ...] = ()  # STATIC only
    tls: UpstreamTls | None = None  # mesh mTLS to the endpoints
    retry_budget: RetryBudgetConfig | None = field(default_factory=RetryBudgetConfig)
    panic_threshold: float = 50.0  # healthy share (%) below which all endpoints serve
    locality_weighted: bool = False  # locality weights from EDS are applied


def _lb_from_policies(policy: cluster_pb2.LoadBalancingPolicy, where: str) -> LbConfig:
    """The first policy in the list that the proxy supports (xDS semantics)."""
    for i, p in enumerate(policy.policies):
        typed = p.typed_extension_config.typed_config
        name = typed.TypeName()
        if name == least_request_pb2.LeastRequest.DESCRIPTOR.full_name:
            lr = least_request_pb2.LeastRequest()
            _unpack(typed, lr, f"{where}.policies[{i}]")
            count = lr.choice_count.value if lr.HasField("choice_count") else 2
            if count < 2:
                raise ConfigError(f"{where}.policies[{i}].choice_count: must be at least 2")
            return LbConfig("least_request", choice_count=count)
        if name == "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin":
            return LbConfig("round_robin")
        if name == ring_hash_pb2.RingHash.DESCRIPTOR.full_name:
            ring = ring_hash_pb2.RingHash()
            _unpack(typed, ring, f"{where}.policies[{i}]")
            low = ring.minimum_ring_size.value if ring.HasField("minimum_ring_size") else 1024
            high = ring.maximum_ring_size.value if ring.HasField("maximum_ring_size") else 8 << 20
            if low > high or high > 8 << 20:
                raise ConfigError(f"{where}.policies[{i}]: bad ring sizes {low}..{high}")
            return LbConfig("ring_hash", ring_min=max(1, low), ring_max=high)
        if name == wrr_locality_pb2.WrrLocality.DESCRIPTOR.full_name:
            wrr = wrr_locality_pb2.WrrLocality()
            _unpack(typed, wrr, f"{where}.policies[{i}]")
            return _lb_from_policies(
                wrr.endpoint_picking_policy, f"{where}.policies[{i}].endpoint_picking_policy"
            )
    raise ConfigError(f"{where}: no supported load balancing policy")


_LEGACY_LB = {
    cluster_pb2.Cluster.ROUND_ROBIN: LbConfig("round_robin"),
    cluster_pb2.Cluster.LEAST_REQUEST: LbConfig("least_request"),
    cluster_pb2.Cluster.RING_HASH: LbConfig("ring_hash"),
}


def _limits(cluster: cluster_pb2.Cluster) -> CircuitLimits:
    for t in cluster.circuit_breakers.thresholds:
        if t.priority != base_pb2.RoutingPriority.DEFAULT:
            continue
        d = CircuitLimits()
        return CircuitLimits(
            max_connections=t.max_connections.value
            if t.HasField("max_connections")
            else d.max_connections,
            max_pending=t.max_pending_requests.value
            if t.HasField("max_pending_requests")
            else d.max_pending,
            max_requests=t.max_requests.value if t.HasField("max_requests") else d.max_requests,
            max_retries=t.max_retries.value if t.HasField("max_retries") else d.max_retries,
        )
    return CircuitLimits()


def _outlier(cluster: cluster_pb2.Cluster) -> OutlierConfig | None:
    """Envoy's semantics: consecutive-5xx ejection is enforced unless its enforcing_ field
    says 0; gateway-failure ejection only when its enforcing_ field is set above 0."""
    if not cluster.HasField("outlier_detection"):
        return None
    od = cluster.outlier_detection

    def wrapped(name: str, default: int) -> int:
        return int(getattr(od, name).value) if od.HasField(name) else default

    five = wrapped("consecutive_5xx", 5) if wrapped("enforcing_consecutive_5xx", 100) else None
    gateway = (
        wrapped("consecutive_gateway_failure", 5)
        if wrapped("enforcing_consecutive_gateway_failure", 0)
        else None
    )
    percentage = (
        wrapped("failure_percentage_threshold", 85)
        if wrapped("enforcing_failure_percentage", 0)
        else None
    )
    where = f"{cluster.name}: outlier_detection"
    for pct in ("failure_percentage_threshold", "max_ejection_percent"):
        if wrapped(pct, 0) > 100:
            raise ConfigError(f"{where}.{pct}: {wrapped(pct, 0)} is above 100")
    return OutlierConfig(
        consecutive_5xx=five,
        consecutive_gateway=gateway,
        interval=_seconds(od.interval, 10.0),
        base_ejection=_seconds(od.base_ejection_time, 30.0),
        max_ejection_percent=wrapped("max_ejection_percent", 10),
        failure_percentage=percentage,
        failure_percentage_min_hosts=wrapped("failure_percentage_minimum_hosts", 5),
        failure_percentage_volume=wrapped("failure_percentage_request_volume", 50),
    )


_BUDGET_FIELDS = ("percent", "minRetriesPerSecond", "ttl")


def _retry_budget(cluster: cluster_pb2.Cluster) -> RetryBudgetConfig | None:
    """The Cluster's `metadata.filter_metadata["trellis"]["retryBudget"]` (our control
    plane's: Envoy has no rate-based budget): `{percent, minRetriesPerSecond, ttl}` with
    ttl in seconds. Absent: Linkerd's default budget (on by default)."""
    meta = cluster.metadata.filter_metadata.get(ENDPOINT_METADATA)
    if meta is None or RETRY_BUDGET_KEY not in meta.fields:
        return RetryBudgetConfig()
    where = f"{cluster.name}: metadata.filter_metadata[{ENDPOINT_METADATA}].{RETRY_BUDGET_KEY}"
    value = meta.fields[RETRY_BUDGET_KEY]
    if value.WhichOneof("kind") != "struct_value":
        raise ConfigError(f"{where}: must be a struct")
    fields = value.struct_value.fields
    unknown = sorted(set(fields) - set(_BUDGET_FIELDS))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {unknown}")
    numbers: dict[str, float] = {}
    default = RetryBudgetConfig()
    defaults = {
        "percent": default.ratio * 100,
        "minRetriesPerSecond": default.min_per_second,
        "ttl": default.ttl,
    }
    for name in _BUDGET_FIELDS:
        if name not in fields:
            numbers[name] = defaults[name]
            continue
        item = fields[name]
        if item.WhichOneof("kind") != "number_value":
            raise ConfigError(f"{where}.{name}: must be a number")
        number = float(item.number_value)
        if number != number or number < 0 or number > 1e9:
            raise ConfigError(f"{where}.{name}: {number} is out of range")
        numbers[name] = number
    if not 1.0 <= numbers["ttl"] <= 60.0:
        raise ConfigError(f"{where}.ttl: {numbers['ttl']} must be between 1 and 60 seconds")
    return RetryBudgetConfig(
        ratio=numbers["percent"] / 100.0,
        min_per_second=numbers["minRetriesPerSecond"],
        ttl=numbers["ttl"],
    )


def _panic_threshold(cluster: cluster_pb2.Cluster) -> float:
    """`common_lb_config.healthy_panic_threshold` (percent; unset: Envoy's 50, 0: off)."""
    common = cluster.common_lb_config
    if not common.HasField("healthy_panic_threshold"):
        return 50.0
    value = float(common.healthy_panic_threshold.value)
    if not 0.0 <= value <= 100.0:
        raise ConfigError(
            f"{cluster.name}: common_lb_config.healthy_panic_threshold: "
            f"{value} is not a percentage (0-100)"
        )
    return value


def _locality_weighted(cluster: cluster_pb2.Cluster) -> bool:
    """Locality weights from EDS apply under WrrLocality (what our control plane sends) or
    the legacy `common_lb_config.locality_weighted_lb_config`."""
    if cluster.common_lb_config.HasField("locality_weighted_lb_config"):
        return True
    wrr = wrr_locality_pb2.WrrLocality.DESCRIPTOR.full_name
    return any(
        p.typed_extension_config.typed_config.TypeName() == wrr
        for p in cluster.load_balancing_policy.policies
    )


def decode_cluster(packed: any_pb2.Any) -> tuple[str, ClusterConfig]:
    cluster = cluster_pb2.Cluster()
    _unpack(packed, cluster, "resource")
    name = cluster.name
    tls = _upstream_tls(cluster) if cluster.HasField("transport_socket") else None
    if cluster.HasField("load_balancing_policy"):
        lb = _lb_from_policies(cluster.load_balancing_policy, f"{name}: load_balancing_policy")
    else:
        legacy = _LEGACY_LB.get(cluster.lb_policy)
        if legacy is None:
            raise ConfigError(f"{name}: lb_policy: not supported")
        lb = legacy
    base = ClusterConfig(
        name,
        lb=lb,
        connect_timeout=_seconds(cluster.connect_timeout, 5.0),
        limits=_limits(cluster),
        outlier=_outlier(cluster),
        tls=tls,
        retry_budget=_retry_budget(cluster),
        panic_threshold=_panic_threshold(cluster),
        locality_weighted=_locality_weighted(cluster),
    )
    kind = cluster.type
    if kind == cluster_pb2.Cluster.EDS:
        eds = cluster.eds_cluster_config
        if not eds.eds_config.HasField("ads"):
            raise ConfigError(f"{name}: eds_cluster_config.eds_config: only ads is supported")
        return name, replace(base, discovery="EDS", eds_name=eds.service_name or name)
    if kind == cluster_pb2.Cluster.STATIC:
        _, endpoints = _assignment(cluster.load_assignment, f"{name}: load_assignment")
        return name, replace(base, discovery="STATIC", endpoints=endpoints)
    if kind == cluster_pb2.Cluster.ORIGINAL_DST:
        return name, replace(base, discovery="ORIGINAL_DST")
    raise ConfigError(f"{name}: type: only EDS, STATIC and ORIGINAL_DST are supported")


# -- ClusterLoadAssignment ----------------------------------------------------------------


def _assignment(
    cla: endpoint_pb2.ClusterLoadAssignment, where: str
) -> tuple[str, tuple[EndpointConfig, ...]]:
    out = []
    for i, group in enumerate(cla.endpoints):
        loc = group.locality
        locality = "/".join(p for p in (loc.region, loc.zone, loc.sub_zone) if p)
        priority = group.priority
        if priority > 128:
            raise ConfigError(f"{where}.endpoints[{i}].priority: {priority} is above 128")
        locality_weight = (
            group.load_balancing_weight.value if group.HasField("load_balancing_weight") else 0
        )
        for j, lb in enumerate(group.lb_endpoints):
            if lb.health_status not in _HEALTHY:
                continue
            sock = lb.endpoint.address.socket_address
            if not sock.address or not 0 < sock.port_value < 65536:
                raise ConfigError(
                    f"{where}.endpoints[{i}].lb_endpoints[{j}].endpoint.address: "
                    "needs an address and a port"
                )
            weight = lb.load_balancing_weight.value if lb.HasField("load_balancing_weight") else 1
            if weight < 1:
                raise ConfigError(f"{where}.endpoints[{i}].lb_endpoints[{j}]: weight 0")
            meta = lb.metadata.filter_metadata.get(ENDPOINT_METADATA)
            target_port: int | None = None
            workload = ""
            peer = ""
            if meta is not None:
                fields = meta.fields
                if ENDPOINT_TARGET_PORT in fields:
                    target_port = int(fields[ENDPOINT_TARGET_PORT].number_value)
                if ENDPOINT_WORKLOAD in fields:
                    workload = fields[ENDPOINT_WORKLOAD].string_value
                if ENDPOINT_PEER in fields:
                    peer = fields[ENDPOINT_PEER].string_value[:1024]
            out.append(
                EndpointConfig(
                    sock.address,
                    sock.port_value,
                    weight,
                    target_port,
                    workload,
                    locality,
                    peer,
                    priority,
                    locality_weight,
                )
            )
    return cla.cluster_name, tuple(out)


def decode_assignment(packed: any_pb2.Any) -> tuple[str, tuple[EndpointConfig, ...]]:
    cla = endpoint_pb2.ClusterLoadAssignment()
    _unpack(packed, cla, "resource")
    return _assignment(cla, cla.cluster_name)
