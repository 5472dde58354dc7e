"""What the sidecar accepts from xDS: every resource the control plane's sidecar generator
makes decodes; a response with one bad resource is refused whole and changes nothing;
references are followed on demand; names the control plane stops sending are kept."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_components_pb2 as rc
from envoy.config.route.v3 import route_pb2
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from google.protobuf import any_pb2
from tests.control.translate.translate_support import FIXTURE, closure, load_push, node

from trellis.control.translate import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE
from trellis.proxy.config.resources import (
    ConfigError,
    decode_assignment,
    decode_cluster,
    decode_listener,
)
from trellis.proxy.config.state import ConfigState

PUSH = load_push(FIXTURE.read_text())
SIDECAR = node("sidecar", "shop", "reviews-v2-a")


def pack(message: object) -> any_pb2.Any:
    out = any_pb2.Any()
    out.Pack(message)  # type: ignore[arg-type]
    return out


class Subscriptions:
    """Records what the state subscribes to (the xDS client's `subscribe`)."""

    def __init__(self) -> None:
        self.names: dict[str, set[str]] = {}

    def __call__(self, type_url: str, names: Iterable[str]) -> None:
        self.names.setdefault(type_url, set()).update(names)


@pytest.fixture
def generated() -> dict[str, dict[str, object]]:
    names = ["reviews:9080", "trellis/outbound", "trellis/inbound?address=10.0.0.12:15006"]
    result = closure(SIDECAR, PUSH, names)
    assert not result[LISTENER_TYPE].errors
    return {t: dict(g.resources) for t, g in result.items()}


def test_everything_the_sidecar_generator_makes_is_accepted(
    generated: dict[str, dict[str, object]],
) -> None:
    state = ConfigState()
    subs = Subscriptions()
    state.bind(subs)
    for type_url in (CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE):
        resources = [pack(r) for r in generated[type_url].values()]
        assert state.on_response(type_url, "v1", resources, {}) is None, state.nacks
    assert set(state.listeners) == set(generated[LISTENER_TYPE])
    outbound = state.listeners["reviews:9080"]
    assert outbound.route_config_name == "reviews.shop.svc.mesh:9080"
    inbound = state.listeners["trellis/inbound?address=10.0.0.12:15006"]
    assert inbound.address == ("10.0.0.12", 15006) and inbound.routes is not None
    # References followed, as grpcio does: RDS of the listener, CDS of the routes, EDS.
    assert "reviews.shop.svc.mesh:9080" in subs.names[ROUTE_TYPE]
    assert "outbound|9080||reviews-v2.shop.svc.mesh" in subs.names[CLUSTER_TYPE]
    assert "PassthroughCluster" in subs.names[CLUSTER_TYPE]
    assert "outbound|9080||reviews-v2.shop.svc.mesh" in subs.names[ENDPOINT_TYPE]
    cluster = state.clusters["outbound|9080||reviews-v2.shop.svc.mesh"]
    assert cluster.lb.kind == "least_request" and cluster.lb.choice_count == 2
    endpoints = state.assignments["outbound|9080||reviews-v2.shop.svc.mesh"]
    assert [(e.address, e.port, e.target_port, e.weight) for e in endpoints] == [
        ("10.0.0.12", 15006, 8082, 3)
    ]
    dump = state.dump()
    assert dump["LDS"]["version"] == "v1" and "reviews:9080" in dump["LDS"]["resources"]


def test_one_bad_resource_refuses_the_whole_response(
    generated: dict[str, dict[str, object]],
) -> None:
    state = ConfigState()
    good = [pack(r) for r in generated[CLUSTER_TYPE].values()]
    assert state.on_response(CLUSTER_TYPE, "1", good, {}) is None
    before = dict(state.clusters)
    tls = cluster_pb2.Cluster(name="with-tls", type=cluster_pb2.Cluster.STATIC)
    tls.transport_socket.name = "tls"
    tls.transport_socket.typed_config.Pack(tls_pb2.UpstreamTlsContext())
    changed = cluster_pb2.Cluster()
    good[0].Unpack(changed)
    changed.connect_timeout.seconds = 1
    reason = state.on_response(CLUSTER_TYPE, "2", [pack(changed), pack(tls)], {})
    assert reason is not None and "with-tls: transport_socket" in reason
    assert state.clusters == before  # the valid change in the same response was not applied
    assert state.versions[CLUSTER_TYPE] == "1"
    assert state.dump()["CDS"]["nack"] == reason


def test_names_left_out_later_are_kept_and_not_found_is_remembered(
    generated: dict[str, dict[str, object]],
) -> None:
    state = ConfigState()
    listeners = [pack(r) for r in generated[LISTENER_TYPE].values()]
    assert state.on_response(LISTENER_TYPE, "1", listeners, {"nosuch:80": "no service"}) is None
    assert state.missing[LISTENER_TYPE] == {"nosuch:80": "no service"}
    assert state.on_response(LISTENER_TYPE, "2", listeners[:1], {}) is None
    assert set(state.listeners) == set(generated[LISTENER_TYPE])  # ignore_resource_deletion


def test_listeners_the_proxy_cannot_serve_are_refused() -> None:
    no_router = listener_pb2.Listener(name="x")
    with pytest.raises(ConfigError, match="neither api_listener nor filter_chains"):
        decode_listener(pack(no_router))
    rc_bad = route_pb2.RouteConfiguration(
        name="r",
        virtual_hosts=[
            rc.VirtualHost(
                name="v",
                domains=["*"],
                routes=[rc.Route(match=rc.RouteMatch(safe_regex={"regex": "(?=x)"}))],
            )
        ],
    )
    from trellis.proxy.config.resources import decode_route_config

    with pytest.raises(ConfigError, match=r"r\.virtual_hosts"):
        decode_route_config(pack(rc_bad))
    with pytest.raises(ConfigError, match=r"expected envoy\.config\.listener\.v3\.Listener"):
        decode_listener(pack(rc_bad))


def test_clusters_and_endpoints_decode_policies_and_health() -> None:
    cluster = cluster_pb2.Cluster(name="c", type=cluster_pb2.Cluster.STATIC)
    cluster.lb_policy = cluster_pb2.Cluster.RING_HASH
    t = cluster.circuit_breakers.thresholds.add()
    t.priority = base_pb2.RoutingPriority.DEFAULT
    t.max_requests.value = 7
    cluster.outlier_detection.consecutive_5xx.value = 2
    _, config = decode_cluster(pack(cluster))
    assert config.lb.kind == "ring_hash"
    assert config.limits.max_requests == 7 and config.limits.max_connections == 1024
    assert config.outlier is not None and config.outlier.consecutive_5xx == 2
    assert config.outlier.consecutive_gateway is None
    bad = cluster_pb2.Cluster(name="m", lb_policy=cluster_pb2.Cluster.MAGLEV)
    with pytest.raises(ConfigError, match="m: lb_policy"):
        decode_cluster(pack(bad))

    from envoy.config.core.v3 import health_check_pb2
    from envoy.config.endpoint.v3 import endpoint_components_pb2 as ec
    from envoy.config.endpoint.v3 import endpoint_pb2

    def endpoint(port: int, health: int) -> ec.LbEndpoint:
        e = ec.LbEndpoint(health_status=health)  # type: ignore[arg-type]
        e.endpoint.address.socket_address.address = "127.0.0.1"
        e.endpoint.address.socket_address.port_value = port
        return e

    cla = endpoint_pb2.ClusterLoadAssignment(cluster_name="c")
    group = cla.endpoints.add()
    group.lb_endpoints.extend(
        [
            endpoint(1, health_check_pb2.HealthStatus.HEALTHY),
            endpoint(2, health_check_pb2.HealthStatus.UNHEALTHY),
            endpoint(3, health_check_pb2.HealthStatus.UNKNOWN),
        ]
    )
    name, endpoints = decode_assignment(pack(cla))
    assert name == "c" and [e.port for e in endpoints] == [1, 3]
