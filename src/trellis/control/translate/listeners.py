"""Listener builders: outbound API listeners (one per spelling) and gRFC A36 inbound listeners.

Outbound: `api_listener` = HttpConnectionManager with RDS over ADS and the
HTTP filters [fault, router] — the router must be last (grpcio NACKs a
listener without it); sidecars' add the local rate limit before the router
(ratelimits.py). Inbound: a Listener whose `address` matches the bind string
of its name, one filter chain with an HCM whose RouteConfiguration is inline,
and the HTTP filters [authorization filters (rbac.py)..., (sidecars: local
rate limit,) router].

Path normalization (sidecars): every HCM states `normalize_path`,
`merge_slashes` and `path_with_escaped_slashes_action`, from MeshConfig
`pathNormalization` (`path_options`, Istio's mapping, except that BASE and
MERGE_SLASHES refuse escaped slashes unless told to keep them). The
`trellis/outbound` listener (hosts outside the mesh) states no normalization:
the mesh has no routes or policies for them, and an external API may need
`%2F` as sent. Proxyless listeners carry none of the fields: gRPC paths are
`/package.Service/Method`, looked up exactly, and grpcio does not normalize.
"""

from __future__ import annotations

from collections.abc import Sequence

from envoy.config.core.v3 import address_pb2, base_pb2
from envoy.config.listener.v3 import api_listener_pb2, listener_components_pb2, listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.fault.v3 import fault_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from google.protobuf import wrappers_pb2

from trellis.control.translate import pb, ratelimits
from trellis.control.translate.tls import InboundMode, inbound_chains
from trellis.control.translate.tracing import hcm_tracing
from trellis.model.mesh_config import PathNormalization, Tracing

HCM = hcm_pb2.HttpConnectionManager
NO_NORMALIZATION = PathNormalization(normalization="NONE")


def path_options(setting: PathNormalization | None, manager: hcm_pb2.HttpConnectionManager) -> None:
    """Set the HCM's three path fields from MeshConfig `pathNormalization`; None sets none
    (proxyless)."""
    if setting is None:
        return
    mode = setting.normalization
    if mode == "NONE":
        action = HCM.KEEP_UNCHANGED
    elif mode == "DECODE_AND_MERGE_SLASHES":
        action = HCM.UNESCAPE_AND_FORWARD
    elif setting.escaped_slashes == "KEEP":
        action = HCM.KEEP_UNCHANGED
    else:
        action = HCM.REJECT_REQUEST
    manager.normalize_path.CopyFrom(wrappers_pb2.BoolValue(value=mode != "NONE"))
    manager.merge_slashes = mode in ("MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES")
    manager.path_with_escaped_slashes_action = action


def http_filters(rate_limits: bool = False) -> list[hcm_pb2.HttpFilter]:
    """[fault, (local rate limit,) router]: per-route fault and rate-limit configs need
    their filters; the router goes last. Only sidecars get the rate-limit filter."""
    out = [hcm_pb2.HttpFilter(name=pb.FAULT_FILTER, typed_config=pb.pack(fault_pb2.HTTPFault()))]
    if rate_limits:
        out.append(ratelimits.http_filter())
    out.append(hcm_pb2.HttpFilter(name=pb.ROUTER_FILTER, typed_config=pb.pack(router_pb2.Router())))
    return out


def trace_options(setting: Tracing | None, manager: hcm_pb2.HttpConnectionManager) -> None:
    """The HCM's `tracing` from MeshConfig `tracing` (translate/tracing.py); None: none."""
    tracing = hcm_tracing(setting)
    if tracing is not None:
        manager.tracing.CopyFrom(tracing)


def outbound_listener(
    name: str,
    route_config_name: str,
    paths: PathNormalization | None = None,
    tracing: Tracing | None = None,
    rate_limits: bool = False,
) -> listener_pb2.Listener:
    manager = HCM(
        stat_prefix="outbound",
        codec_type=HCM.AUTO,
        rds=hcm_pb2.Rds(config_source=pb.ads(), route_config_name=route_config_name),
        http_filters=http_filters(rate_limits),
    )
    path_options(paths, manager)
    trace_options(tracing, manager)
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pb.pack(manager))
    )


def outbound_default_listener(name: str, cluster: str) -> listener_pb2.Listener:
    """The sidecar's catch-all for hosts outside the registry: every request to `cluster`
    (PassthroughCluster for ALLOW_ANY, BlackHoleCluster for REGISTRY_ONLY)."""
    route = rc.Route(
        name="outbound-traffic-policy",
        match=rc.RouteMatch(prefix="/"),
        route=rc.RouteAction(cluster=cluster, timeout=pb.seconds(0)),
    )
    config = route_pb2.RouteConfiguration(
        name=name, virtual_hosts=[rc.VirtualHost(name=name, domains=["*"], routes=[route])]
    )
    manager = HCM(
        stat_prefix="outbound",
        codec_type=HCM.AUTO,
        route_config=config,
        http_filters=[
            hcm_pb2.HttpFilter(name=pb.ROUTER_FILTER, typed_config=pb.pack(router_pb2.Router()))
        ],
    )
    path_options(NO_NORMALIZATION, manager)
    return listener_pb2.Listener(
        name=name, api_listener=api_listener_pb2.ApiListener(api_listener=pb.pack(manager))
    )


def inbound_listener(
    name: str,
    address: str,
    port: int,
    route_config: route_pb2.RouteConfiguration,
    filters: Sequence[hcm_pb2.HttpFilter] = (),
    mode: InboundMode = "DISABLE",
    paths: PathNormalization | None = None,
    tracing: Tracing | None = None,
) -> listener_pb2.Listener:
    """`filters` (authorization) run before the router, in order; `mode` says whether the
    listener takes mesh mTLS, plaintext, or both (translate/tls.py)."""
    manager = HCM(
        stat_prefix="inbound",
        codec_type=HCM.AUTO,
        route_config=route_config,
        http_filters=[
            *filters,
            hcm_pb2.HttpFilter(name=pb.ROUTER_FILTER, typed_config=pb.pack(router_pb2.Router())),
        ],
    )
    path_options(paths, manager)
    trace_options(tracing, manager)
    hcm = listener_components_pb2.Filter(name=pb.HCM_FILTER, typed_config=pb.pack(manager))
    return listener_pb2.Listener(
        name=name,
        address=address_pb2.Address(
            socket_address=address_pb2.SocketAddress(address=address, port_value=port)
        ),
        filter_chains=inbound_chains(mode, hcm),
        traffic_direction=base_pb2.TrafficDirection.INBOUND,
    )
