"""The sidecar's `trellis/outbound` listener: MeshConfig outboundTrafficPolicy as a route to
PassthroughCluster (ALLOW_ANY) or BlackHoleCluster (REGISTRY_ONLY). Proxyless nodes have none."""

from __future__ import annotations

import pytest
from envoy.config.cluster.v3 import cluster_pb2
from tests.control.translate.translate_support import gen, hcm_of, load_push, node, one

from trellis.control.translate import CLUSTER_TYPE, LISTENER_TYPE

SERVICE = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{port: 9080}]
"""
REGISTRY_ONLY = """
---
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {name: mesh}
spec:
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"""
NAME = "trellis/outbound"


@pytest.mark.parametrize(
    ("mesh", "cluster"),
    [(SERVICE, "PassthroughCluster"), (SERVICE + REGISTRY_ONLY, "BlackHoleCluster")],
)
def test_sidecar_default_listener_follows_the_policy(mesh: str, cluster: str) -> None:
    push = load_push(mesh)
    listener = one(node("sidecar", "shop"), push, LISTENER_TYPE, NAME)
    routes = hcm_of(listener).route_config.virtual_hosts[0].routes
    assert [r.route.cluster for r in routes] == [cluster]
    assert routes[0].route.timeout.seconds == 0 and routes[0].route.timeout.nanos == 0


def test_passthrough_and_blackhole_clusters() -> None:
    push = load_push(SERVICE)
    sidecar = node("sidecar", "shop")
    passthrough = one(sidecar, push, CLUSTER_TYPE, "PassthroughCluster")
    assert passthrough.type == cluster_pb2.Cluster.ORIGINAL_DST
    blackhole = one(sidecar, push, CLUSTER_TYPE, "BlackHoleCluster")
    assert blackhole.type == cluster_pb2.Cluster.STATIC
    assert not blackhole.load_assignment.endpoints


def test_proxyless_nodes_have_no_default_listener() -> None:
    push = load_push(SERVICE)
    client = node("proxyless", "shop")
    assert NAME in gen(client, push, LISTENER_TYPE, [NAME]).errors
    assert "PassthroughCluster" in gen(client, push, CLUSTER_TYPE, ["PassthroughCluster"]).errors
