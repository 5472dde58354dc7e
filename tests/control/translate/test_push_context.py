"""PushContext: endpoints from leases, membership, GAMMA route attachment, policies."""

from __future__ import annotations

from tests.control.translate.translate_support import load_push

from trellis.control.push.context import PushContext
from trellis.model.keys import ResourceKey
from trellis.store.base import Lease

MESH = """
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews, namespace: shop}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080, targetPort: http}]
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {name: reviews-v2, namespace: shop}
spec:
  selector: {app: reviews, version: v2}
  ports: [{name: http, port: 9080, targetPort: http}]
"""


def workload(name: str, labels: str, port_name: str = "http", ns: str = "shop") -> str:
    return f"""
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, namespace: {ns}, labels: {{{labels}}}}}
spec:
  address: 10.0.0.{len(name)}
  ports: [{{name: {port_name}, port: 8080}}]
  proxyless: true
"""


def lease(name: str, expires_at: float, healthy: bool = True) -> Lease:
    return Lease(ResourceKey("Workload", "shop", name), 10, expires_at, healthy)


def endpoint_names(push: PushContext, service: str) -> list[str]:
    svc = push.service("shop", service)
    assert svc is not None
    return [e.workload for e in push.endpoints(svc, svc.spec.ports[0])]


def test_leases_decide_which_workloads_are_endpoints() -> None:
    text = MESH + "".join(
        workload(n, "app: reviews") for n in ("static", "fresh", "expired", "sick")
    )
    leases = [lease("fresh", 1001), lease("expired", 999), lease("sick", 2000, healthy=False)]
    push = load_push(text, leases, now=1000)
    assert endpoint_names(push, "reviews") == ["fresh.shop", "static.shop"]


def test_membership_follows_selector_and_namespace() -> None:
    text = MESH + workload("a", "app: reviews, version: v1")
    text += workload("b", "app: reviews, version: v2") + workload("c", "app: reviews", ns="other")
    push = load_push(text)
    assert endpoint_names(push, "reviews") == ["a.shop", "b.shop"]
    assert endpoint_names(push, "reviews-v2") == ["b.shop"]


def test_target_port_by_name_and_missing_name() -> None:
    text = MESH + workload("named", "app: reviews") + workload("other", "app: reviews", "web")
    push = load_push(text)
    svc = push.service("shop", "reviews")
    assert svc is not None
    eps = push.endpoints(svc, svc.spec.ports[0])
    # `other` has no port named http: not an endpoint of this port.
    assert [(e.workload, e.port, e.target_port) for e in eps] == [("named.shop", 8080, 8080)]


def test_sidecar_endpoint_is_the_inbound_port() -> None:
    text = (
        MESH
        + """
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {name: s, namespace: shop, labels: {app: reviews}}
spec:
  address: 10.1.1.1
  ports: [{name: http, port: 7000}]
  inbound: {port: 15006}
"""
    )
    push = load_push(text)
    svc = push.service("shop", "reviews")
    assert svc is not None
    (e,) = push.endpoints(svc, svc.spec.ports[0])
    assert (e.address, e.port, e.target_port, e.sidecar) == ("10.1.1.1", 15006, 7000, True)


ROUTES = """
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: producer, namespace: shop}
spec:
  parentRefs: [{name: reviews}]
---
apiVersion: trellis.dev/v1alpha1
kind: HTTPRoute
metadata: {name: consumer, namespace: web}
spec:
  parentRefs: [{name: reviews, namespace: shop}]
---
apiVersion: trellis.dev/v1alpha1
kind: GRPCRoute
metadata: {name: other-port, namespace: shop}
spec:
  parentRefs: [{name: reviews, port: 1234}]
"""


def test_producer_and_consumer_routes() -> None:
    push = load_push(MESH + ROUTES)
    svc = push.service("shop", "reviews")
    assert svc is not None
    names = lambda ns: [r.name for r in push.routes_for(svc, 9080, ns)]  # noqa: E731
    assert names("shop") == ["producer"]
    assert names("web") == ["consumer"]  # the consumer route replaces the producer's
    assert names("elsewhere") == ["producer"]
    # Same age: namespace/name order.
    assert [r.name for r in push.routes_for(svc, 1234, "shop")] == ["other-port", "producer"]


def test_policy_and_mesh_defaults() -> None:
    push = load_push(
        MESH
        + """
---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: p, namespace: shop}
spec: {service: reviews, loadBalancer: {type: ROUND_ROBIN}}
"""
    )
    svc = push.service("shop", "reviews")
    v2 = push.service("shop", "reviews-v2")
    assert svc is not None and v2 is not None
    policy = push.policy(svc)
    assert policy is not None and policy.spec.load_balancer.type == "ROUND_ROBIN"
    assert push.policy(v2) is None
    assert push.mesh.spec.trust_domain == "trellis.local"
    assert push.revision == 1


def test_empty() -> None:
    push = PushContext.empty()
    assert push.revision == 0
    assert push.all_services() == []
