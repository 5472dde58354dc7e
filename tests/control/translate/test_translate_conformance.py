"""What grpcio's xDS client requires, checked on everything a proxyless node is sent.

The invariants come from docs measured against grpcio 1.85 (shared notes,
grpc-xds-facts.md): the router filter last, ADS config sources, a non-zero
weight on every locality, no legacy LEAST_REQUEST, virtual-host domains that
include the name the client dialled, gRPC-only retry codes, no query matches.
A violation here is a NACK (or an ACKed config that fails every call) waiting
to happen.
"""

from __future__ import annotations

from typing import Any

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import config_source_pb2, health_check_pb2
from tests.control.translate.translate_support import closure, hcm_of, inline_route_config, node

from trellis.control.push.context import PushContext
from trellis.control.translate import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from trellis.control.translate.names import spellings

PREFIX = "type.googleapis.com/"
HCM_TYPE = (
    PREFIX + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
)
ROUTER_TYPE = PREFIX + "envoy.extensions.filters.http.router.v3.Router"
FAULT_TYPE = PREFIX + "envoy.extensions.filters.http.fault.v3.HTTPFault"
LB_TYPES = {
    PREFIX + "envoy.extensions.load_balancing_policies.wrr_locality.v3.WrrLocality",
    PREFIX + "envoy.extensions.load_balancing_policies.ring_hash.v3.RingHash",
    PREFIX + "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
}
GRPC_RETRY_ON = {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}


def assert_ads(source: Any) -> None:
    assert source.HasField("ads"), source
    assert source.resource_api_version == config_source_pb2.ApiVersion.V3


def assert_filters(filters: Any) -> None:
    assert filters, "expected at least one HTTP filter"
    assert filters[-1].name == "envoy.filters.http.router"
    assert filters[-1].typed_config.type_url == ROUTER_TYPE
    for f in filters[:-1]:
        assert f.typed_config.type_url != ROUTER_TYPE, "the router must be the last filter"


def check_routes(rc: Any) -> set[str]:
    """Invariants of one RouteConfiguration; returns the clusters it names."""
    clusters: set[str] = set()
    for vh in rc.virtual_hosts:
        assert vh.domains
        for route in vh.routes:
            assert not route.match.query_parameters, "gRPC has no query-parameter matches"
            assert route.match.WhichOneof("path_specifier") in ("prefix", "path", "safe_regex")
            for name, config in route.typed_per_filter_config.items():
                assert name == "envoy.filters.http.fault" and config.type_url == FAULT_TYPE
            action = route.WhichOneof("action")
            if action == "non_forwarding_action":
                continue
            assert action == "route", f"{route.name}: {action}"
            ra = route.route
            if ra.cluster:
                clusters.add(ra.cluster)
            else:
                weights = ra.weighted_clusters.clusters
                assert weights and all(w.weight.value > 0 for w in weights)
                clusters.update(w.name for w in weights)
            if ra.HasField("retry_policy"):
                codes = set(ra.retry_policy.retry_on.split(","))
                assert codes <= GRPC_RETRY_ON, codes
                assert 1 <= ra.retry_policy.num_retries.value <= 4  # ≤ 5 attempts
                back_off = ra.retry_policy.retry_back_off
                if back_off.HasField("base_interval"):
                    assert (
                        back_off.max_interval.ToNanoseconds()
                        >= back_off.base_interval.ToNanoseconds()
                        > 0
                    )
    return clusters


def check_cluster(c: Any) -> None:
    assert c.type == cluster_pb2.Cluster.EDS
    assert_ads(c.eds_cluster_config.eds_config)
    assert c.eds_cluster_config.service_name == c.name
    assert c.lb_policy in (cluster_pb2.Cluster.ROUND_ROBIN, cluster_pb2.Cluster.RING_HASH)
    policies = c.load_balancing_policy.policies
    assert len(policies) == 1
    config = policies[0].typed_extension_config.typed_config
    assert config.type_url in LB_TYPES
    if config.type_url.endswith("WrrLocality"):
        from envoy.extensions.load_balancing_policies.wrr_locality.v3 import wrr_locality_pb2

        wrr = wrr_locality_pb2.WrrLocality()
        assert config.Unpack(wrr)
        children = [
            p.typed_extension_config.typed_config.type_url
            for p in wrr.endpoint_picking_policy.policies
        ]
        # grpcio needs one policy it supports in the list: round robin is always there.
        assert children[-1].endswith("round_robin.v3.RoundRobin"), children


def check_assignment(cla: Any) -> None:
    for group in cla.endpoints:
        assert group.load_balancing_weight.value > 0, "grpcio needs a locality weight"
        for e in group.lb_endpoints:
            assert e.health_status in (
                health_check_pb2.HealthStatus.UNKNOWN,
                health_check_pb2.HealthStatus.HEALTHY,
            )


def every_spelling(push: PushContext, namespace: str) -> list[str]:
    return sorted(
        {
            s
            for svc in push.all_services()
            for p in svc.spec.ports
            for s in spellings(svc, p.port, namespace)
        }
    )


@pytest.mark.parametrize("namespace", ["shop", "web"])
def test_proxyless_resources_meet_grpcio_requirements(
    fixture_push: PushContext, namespace: str
) -> None:
    n = node("proxyless", namespace=namespace)
    names = [*every_spelling(fixture_push, namespace), "trellis/inbound?address=0.0.0.0:50051"]
    held = closure(n, fixture_push, names)
    listeners, rcs = held[LISTENER_TYPE], held[ROUTE_TYPE]
    assert not listeners.errors and len(listeners.resources) == len(names)

    for name, listener in listeners.resources.items():
        assert listener.name == name
        if listener.HasField("api_listener"):
            assert listener.api_listener.api_listener.type_url == HCM_TYPE
            hcm = hcm_of(listener)
            assert_ads(hcm.rds.config_source)
            assert_filters(hcm.http_filters)
            rc = rcs.resources[hcm.rds.route_config_name]
            # The authority the client uses must match a virtual host (else calls fail, ACKed).
            assert name in rc.virtual_hosts[0].domains
        else:
            host_port = name.removeprefix("trellis/inbound?address=")
            sa = listener.address.socket_address
            assert f"{sa.address}:{sa.port_value}" == host_port
            (chain,) = listener.filter_chains
            assert chain.filters[-1].typed_config.type_url == HCM_TYPE
            inline = inline_route_config(listener)
            (route,) = inline.virtual_hosts[0].routes
            assert route.HasField("non_forwarding_action")

    named: set[str] = set()
    for rc in rcs.resources.values():
        named |= check_routes(rc)
    clusters = held[CLUSTER_TYPE]
    # Every cluster a route names is answered: as a resource, or as NOT_FOUND.
    assert named == set(clusters.resources) | set(clusters.errors)
    for c in clusters.resources.values():
        check_cluster(c)
    endpoints = held[ENDPOINT_TYPE]
    assert set(endpoints.resources) == set(clusters.resources)
    for cla in endpoints.resources.values():
        check_assignment(cla)


def test_conformance_checks_can_fail(fixture_push: PushContext) -> None:
    """The checks reject what grpcio rejects (so the test above can fail)."""
    n = node("proxyless")
    held = closure(n, fixture_push, ["reviews"])
    hcm = hcm_of(held[LISTENER_TYPE].resources["reviews"])
    reordered = list(reversed(hcm.http_filters))
    with pytest.raises(AssertionError):
        assert_filters(reordered)
    c = cluster_pb2.Cluster()
    c.CopyFrom(held[CLUSTER_TYPE].resources["outbound|9080||reviews-v1.shop.svc.mesh"])
    c.lb_policy = cluster_pb2.Cluster.LEAST_REQUEST
    with pytest.raises(AssertionError):
        check_cluster(c)
    cla = held[ENDPOINT_TYPE].resources["outbound|9080||reviews-v1.shop.svc.mesh"]
    broken = type(cla)()
    broken.CopyFrom(cla)
    broken.endpoints[0].load_balancing_weight.value = 0
    with pytest.raises(AssertionError):
        check_assignment(broken)
