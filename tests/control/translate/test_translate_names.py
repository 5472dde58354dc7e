"""Listener names: every spelling, short names in the client's namespace, port defaulting."""

from __future__ import annotations

import pytest
from tests.control.translate.translate_support import gen, hcm_of, load_push, node, one

from trellis.control.translate import CLUSTER_TYPE, ENDPOINT_TYPE, LISTENER_TYPE, ROUTE_TYPE

MESH = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{port: 9080}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: web, namespace: shop}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80}, {name: admin, port: 9000}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: multi, namespace: shop}
spec:
  selector: {app: multi}
  ports: [{name: a, port: 7000}, {name: b, port: 7001}]
"""
PUSH = load_push(MESH)
RDS = "reviews.shop.svc.mesh:9080"


@pytest.mark.parametrize(
    "name",
    [
        "reviews",
        "reviews:9080",
        "reviews.shop",
        "reviews.shop:9080",
        "reviews.shop.svc.mesh",
        "reviews.shop.svc.mesh:9080",
    ],
)
def test_every_spelling_points_at_one_route_configuration(name: str) -> None:
    listener = one(node(namespace="shop"), PUSH, LISTENER_TYPE, name)
    assert listener.name == name
    assert hcm_of(listener).rds.route_config_name == RDS


@pytest.mark.parametrize("name", ["reviews", "reviews:9080"])
def test_short_names_resolve_in_the_clients_namespace(name: str) -> None:
    g = gen(node(namespace="web"), PUSH, LISTENER_TYPE, [name])
    assert g.resources == {}
    assert "no service 'reviews' in namespace 'web'" in g.errors[name]
    assert (
        "reviews.shop"
        in gen(node(namespace="web"), PUSH, LISTENER_TYPE, ["reviews.shop"]).resources
    )


def test_domains_list_the_spellings_valid_for_the_node() -> None:
    own = one(node(namespace="shop"), PUSH, ROUTE_TYPE, RDS).virtual_hosts[0].domains
    assert sorted(own) == sorted(
        [
            "reviews",
            "reviews:9080",
            "reviews.shop",
            "reviews.shop:9080",
            "reviews.shop.svc.mesh",
            "reviews.shop.svc.mesh:9080",
        ]
    )
    other = one(node(namespace="web"), PUSH, ROUTE_TYPE, RDS).virtual_hosts[0].domains
    assert "reviews" not in other and "reviews:9080" not in other
    assert "reviews.shop:9080" in other


def test_port_defaults_to_80_then_the_only_port() -> None:
    n = node(namespace="shop")
    assert (
        hcm_of(one(n, PUSH, LISTENER_TYPE, "web")).rds.route_config_name == "web.shop.svc.mesh:80"
    )
    assert hcm_of(one(n, PUSH, LISTENER_TYPE, "web:9000")).rds.route_config_name == (
        "web.shop.svc.mesh:9000"
    )
    # Port names without a port are only valid for the default port.
    domains = one(n, PUSH, ROUTE_TYPE, "web.shop.svc.mesh:9000").virtual_hosts[0].domains
    assert "web" not in domains and "web:9000" in domains


def test_ambiguous_and_unknown_names_are_errors() -> None:
    g = gen(node(), PUSH, LISTENER_TYPE, ["multi", "multi:7001", "reviews:1", "nosuch", "a.b.c"])
    assert set(g.resources) == {"multi:7001"}
    assert "several ports" in g.errors["multi"]
    assert "has no port 1" in g.errors["reviews:1"]
    assert "no service 'nosuch'" in g.errors["nosuch"]
    assert "not a mesh service name" in g.errors["a.b.c"]


def test_unknown_clusters_and_route_configs_are_errors() -> None:
    n = node()
    cds = gen(n, PUSH, CLUSTER_TYPE, ["outbound|9080||gone.shop.svc.mesh", "garbage"])
    assert cds.resources == {}
    assert set(cds.errors) == {"outbound|9080||gone.shop.svc.mesh", "garbage"}
    eds = gen(n, PUSH, ENDPOINT_TYPE, ["outbound|9080||gone.shop.svc.mesh"])
    assert "gone" in eds.errors["outbound|9080||gone.shop.svc.mesh"]
    rds = gen(n, PUSH, ROUTE_TYPE, ["reviews:9080", "reviews.shop.svc.mesh:1"])
    assert rds.resources == {} and len(rds.errors) == 2


def test_wildcards() -> None:
    n = node()
    lds = gen(n, PUSH, LISTENER_TYPE, None)
    assert sorted(lds.resources) == sorted(
        [
            "multi.shop.svc.mesh:7000",
            "multi.shop.svc.mesh:7001",
            "reviews.shop.svc.mesh:9080",
            "web.shop.svc.mesh:80",
            "web.shop.svc.mesh:9000",
        ]
    )
    cds = gen(n, PUSH, CLUSTER_TYPE, None)
    assert "outbound|9080||reviews.shop.svc.mesh" in cds.resources and len(cds.resources) == 5
    assert gen(n, PUSH, ROUTE_TYPE, None).resources == {}
    assert gen(n, PUSH, ENDPOINT_TYPE, None).resources == {}


def test_inbound_listener_address_matches_its_name() -> None:
    for kind in ("proxyless", "sidecar"):
        name = "trellis/inbound?address=0.0.0.0:50051"
        listener = one(node(kind), PUSH, LISTENER_TYPE, name)
        assert listener.address.socket_address.address == "0.0.0.0"
        assert listener.address.socket_address.port_value == 50051
    v6 = one(node(), PUSH, LISTENER_TYPE, "trellis/inbound?address=[::]:8080")
    assert v6.address.socket_address.address == "::"
    bad = gen(node(), PUSH, LISTENER_TYPE, ["trellis/inbound?address=nope"])
    assert bad.resources == {} and bad.errors
