"""ClusterLoadAssignment builder: live endpoints grouped by locality, with priorities.

With locality failover on (the service's DestinationPolicy
`loadBalancer.localityLbSetting.enabled`), each locality group gets a priority
from the calling node's own locality, as Istio's failover does: 0 same region
and zone, 1 same region, 2 elsewhere (renumbered densely). Off, every group is
priority 0 and balancing uses the locality weights alone.

grpcio needs a non-zero `load_balancing_weight` on every locality (else "no
children in weighted_target policy"): a locality weighs the sum of its
endpoints' weights. Every endpoint is HEALTHY (the PushContext already left
out unhealthy and expired ones). A sidecar endpoint is its inbound port and
carries `filter_metadata {"trellis": {"targetPort", "workload", "peer"}}` so the
caller's sidecar can tell the inbound sidecar which app port it wants, and label its
metrics with the destination's app, version and canonical name (`peer`).
"""

from __future__ import annotations

from collections.abc import Iterable

from envoy.config.core.v3 import address_pb2, base_pb2, health_check_pb2
from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
from envoy.config.endpoint.v3 import endpoint_pb2

from trellis.control.push.context import Endpoint
from trellis.wire import ENDPOINT_METADATA as METADATA_NAMESPACE
from trellis.wire import ENDPOINT_PEER, ENDPOINT_TARGET_PORT, ENDPOINT_WORKLOAD


def load_assignment(
    name: str, endpoints: Iterable[Endpoint], caller: tuple[str, str] | None = None
) -> endpoint_pb2.ClusterLoadAssignment:
    """`caller`: the calling node's (region, zone) when the service's DestinationPolicy
    enables locality failover; None: every locality at priority 0."""
    by_locality: dict[tuple[str, str, str], list[Endpoint]] = {}
    for e in endpoints:
        key = (e.locality.region, e.locality.zone, e.locality.sub_zone)
        by_locality.setdefault(key, []).append(e)
    levels = {key: failover_level(caller, key[0], key[1]) for key in by_locality}
    dense = {level: i for i, level in enumerate(sorted(set(levels.values())))}
    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name=name)
    for (region, zone, sub_zone), members in sorted(by_locality.items()):
        group = ec.LocalityLbEndpoints(
            locality=base_pb2.Locality(region=region, zone=zone, sub_zone=sub_zone),
            lb_endpoints=[
                _lb_endpoint(e)
                for e in sorted(members, key=lambda e: (e.address, e.port, e.workload))
            ],
            priority=dense[levels[(region, zone, sub_zone)]],
        )
        group.load_balancing_weight.value = sum(e.weight for e in members)
        cla.endpoints.append(group)
    return cla


def failover_level(caller: tuple[str, str] | None, region: str, zone: str) -> int:
    """Istio's locality failover: 0 for the caller's own region and zone, 1 for its region,
    2 elsewhere. A caller with no locality prefers nothing (0). The levels present are
    renumbered 0, 1, ... (priorities must not skip: grpcio and Envoy refuse gaps)."""
    if caller is None or caller == ("", ""):
        return 0
    own_region, own_zone = caller
    if region == own_region and zone == own_zone:
        return 0
    if region == own_region:
        return 1
    return 2


def _lb_endpoint(e: Endpoint) -> ec.LbEndpoint:
    out = ec.LbEndpoint(
        endpoint=ec.Endpoint(
            address=address_pb2.Address(
                socket_address=address_pb2.SocketAddress(address=e.address, port_value=e.port)
            )
        ),
        health_status=health_check_pb2.HealthStatus.HEALTHY,
    )
    out.load_balancing_weight.value = e.weight
    if e.sidecar:
        meta = out.metadata.filter_metadata[METADATA_NAMESPACE]
        meta.update({ENDPOINT_TARGET_PORT: e.target_port, ENDPOINT_WORKLOAD: e.workload})
        if e.peer:
            meta.update({ENDPOINT_PEER: e.peer})  # app, version, canonical name: callers' metrics
    return out
