"""Resources shared between nodes (one generation per push and scope) are exactly what
each node would get on its own: for nodes that differ in every field NodeInfo has, and
every name they may ask for, generation through one push's memo, in any order, equals
generation from a fresh push per node."""

from __future__ import annotations

from dataclasses import replace

import pytest
from google.protobuf.message import Message
from tests.control.translate.translate_support import FIXTURE, load_push

from trellis.control.push import context as push_context
from trellis.control.push.context import PushContext
from trellis.control.translate import (
    CLUSTER_TYPE,
    ENDPOINT_TYPE,
    LISTENER_TYPE,
    ROUTE_TYPE,
    Generated,
    NodeInfo,
    generate,
    pb,
)

# The fixture mesh, plus what makes nodes differ beyond kind and namespace: workloads
# speaking mTLS (secure clients get TLS clusters to them), an AuthorizationPolicy on a
# label (inbound listeners of the labelled workload only), a PERMISSIVE workload.
EXTRA = """
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: shop, namespace: web}
spec:
  selector: {app: shop}
  ports: [{name: http, port: 9080, targetPort: http}]
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: shop-a, namespace: web, labels: {app: shop, tier: gold}}
spec:
  address: 10.0.0.31
  ports: [{name: http, port: 8080}]
  inbound: {port: 15006}
  serviceAccount: shop
  mtls: true
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: shop-b, namespace: web, labels: {app: shop}}
spec:
  address: 10.0.0.32
  ports: [{name: http, port: 8080}, {name: admin, port: 9100}]
  inbound: {port: 15006}
  serviceAccount: shop
  mtls: true
---
apiVersion: trellis.dev/v1alpha1
kind: AuthorizationPolicy
metadata: {name: gold-only, namespace: web}
spec:
  selector: {matchLabels: {tier: gold}}
  action: DENY
  rules: [{to: [{operation: {methods: [DELETE]}}]}]
"""

NODES = [
    NodeInfo.parse("sidecar~client.shop", {"namespace": "shop"}),
    NodeInfo.parse("sidecar~client.web", {"namespace": "web"}),
    NodeInfo.parse("proxyless~client.shop", {"namespace": "shop"}),
    NodeInfo.parse("proxyless~client.web", {"namespace": "web"}),
    NodeInfo.parse("gateway~edge.web", {"namespace": "web"}),
    replace(NodeInfo.parse("sidecar~client.shop", {"namespace": "shop"}), secure=True),
    replace(NodeInfo.parse("proxyless~client.web", {"namespace": "web"}), secure=True),
    # Workloads of the mesh, by registration and by metadata, secure or not.
    replace(NodeInfo.parse("sidecar~shop-a.web", {"namespace": "web"}), secure=True),
    NodeInfo.parse("sidecar~shop-b.web", {"namespace": "web", "serviceAccount": "shop"}),
    NodeInfo.parse(
        "sidecar~shop-c.web",
        {"namespace": "web", "labels": {"app": "shop", "tier": "gold"}, "ports": [7000]},
    ),
    NodeInfo.parse(
        "sidecar~shop-d.web", {"namespace": "web", "labels": {"app": "shop"}, "ports": [7001]}
    ),
    NodeInfo.parse("proxyless~ratings-a.shop", {"namespace": "shop", "ports": [50051]}),
    NodeInfo.parse("sidecar~frontend-a.web", {"namespace": "web"}),
]

INBOUND = [
    "trellis/inbound?address=10.0.0.31:15006",
    "trellis/inbound?address=10.0.0.32:15006",
    "trellis/inbound?address=0.0.0.0:50051",
]
UNKNOWN = {
    LISTENER_TYPE: ["nowhere:80", "reviews:1", "trellis/inbound?address=nope"],
    ROUTE_TYPE: ["nowhere.shop.svc.mesh:80"],
    CLUSTER_TYPE: ["outbound|80||nowhere.shop.svc.mesh", "inbound|7000||"],
    ENDPOINT_TYPE: ["outbound|80||nowhere.shop.svc.mesh", "inbound|7000||"],
}


@pytest.fixture(scope="module")
def push() -> PushContext:
    return load_push(FIXTURE.read_text() + EXTRA)


def every_name(push: PushContext) -> dict[str, list[str]]:
    """Every name some node asks for, per type: wildcards' names and what they lead to."""
    fresh = replace(push, memo={})
    wanted: dict[str, set[str]] = {t: set(UNKNOWN[t]) for t in UNKNOWN}
    wanted[LISTENER_TYPE].update(INBOUND)
    wanted[LISTENER_TYPE].update(["trellis/outbound", "reviews:9080", "reviews.shop:9080"])
    for n in NODES:
        wanted[LISTENER_TYPE].update(generate(n, fresh, LISTENER_TYPE, None).resources)
        wanted[CLUSTER_TYPE].update(generate(n, fresh, CLUSTER_TYPE, None).resources)
    # Wildcard listeners are named FQDN:PORT, as are the route configurations they use.
    wanted[ROUTE_TYPE].update(n for n in wanted[LISTENER_TYPE] if ".svc.mesh:" in n)
    wanted[ENDPOINT_TYPE].update(c for c in wanted[CLUSTER_TYPE] if c.startswith("outbound|"))
    return {t: sorted(names) for t, names in wanted.items()}


def as_bytes(generated: Generated) -> tuple[dict[str, bytes], dict[str, str]]:
    def wire(m: Message) -> bytes:
        return m.SerializeToString(deterministic=True)

    return {k: wire(v) for k, v in generated.resources.items()}, dict(generated.errors)


def test_the_names_cover_every_type_with_resources_and_errors(push: PushContext) -> None:
    names = every_name(push)
    for type_url, wanted in names.items():
        got = generate(NODES[0], replace(push, memo={}), type_url, wanted)
        assert got.resources, type_url
        assert got.errors, type_url


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_shared_generation_equals_generation_per_node(push: PushContext, order: str) -> None:
    names = every_name(push)
    shared = replace(push, memo={})
    nodes = NODES if order == "forward" else NODES[::-1]
    for n in nodes:
        for type_url, wanted in names.items():
            for subscription in (wanted, None):
                alone = generate(n, replace(push, memo={}), type_url, subscription)
                together = generate(n, shared, type_url, subscription)
                assert as_bytes(together) == as_bytes(alone), (n.id, type_url)
                for name, packed in together.packed.items():
                    assert packed == pb.pack(together.resources[name])
    assert shared.memo  # it was shared, not regenerated


def test_nodes_of_one_shape_get_the_very_same_resources(push: PushContext) -> None:
    shared = replace(push, memo={})
    a = NodeInfo.parse("sidecar~client-1.shop", {"namespace": "shop"})
    b = NodeInfo.parse("sidecar~client-2.shop", {"namespace": "shop", "labels": {"x": "y"}})
    name = "reviews.shop.svc.mesh:9080"
    first = generate(a, shared, ROUTE_TYPE, [name])
    second = generate(b, shared, ROUTE_TYPE, [name])
    assert second.resources[name] is first.resources[name]
    assert second.packed[name] is first.packed[name]
    # Another namespace spells the service differently: its own resource.
    other = NodeInfo.parse("sidecar~client.web", {"namespace": "web"})
    third = generate(other, shared, ROUTE_TYPE, [name])
    assert third.resources[name] is not first.resources[name]


def test_the_memo_keeps_no_errors_and_is_bounded(
    push: PushContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Names and namespaces come from clients: what they ask for must not grow the memo.
    shared = replace(push, memo={})
    for i in range(50):
        stranger = NodeInfo.parse(f"sidecar~x.ns{i}", {"namespace": f"ns{i}"})
        got = generate(stranger, shared, LISTENER_TYPE, [f"nowhere-{i}:80"])
        assert got.errors and not got.resources
    assert shared.memo == {}
    monkeypatch.setattr(push_context, "MEMO_MAX", 3)
    name = "reviews.shop.svc.mesh:9080"
    for i in range(10):
        n = NodeInfo.parse(f"sidecar~x.ns{i}", {"namespace": f"ns{i}"})
        alone = generate(n, replace(push, memo={}), ROUTE_TYPE, [name])
        together = generate(n, shared, ROUTE_TYPE, [name])
        assert as_bytes(together) == as_bytes(alone)
    assert len(shared.memo) == 3
