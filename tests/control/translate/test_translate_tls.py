"""Mesh mTLS in generated xDS: clusters carry an UpstreamTlsContext (with the endpoints'
SPIFFE IDs) only for a client with an identity and endpoints that speak mTLS; inbound
listeners are STRICT, PERMISSIVE (two chains) or plaintext; proxyless servers are never
PERMISSIVE; and the sidecar accepts every variant it is sent."""

from __future__ import annotations

from dataclasses import replace

import pytest
from envoy.extensions.transport_sockets.tls.v3 import tls_pb2
from tests.control.translate.translate_support import load_push, node, one

from trellis.control.translate import CLUSTER_TYPE, LISTENER_TYPE
from trellis.control.translate.node import NodeInfo
from trellis.proxy.config.resources import decode_cluster, decode_listener

TD = "trellis.local"


def mesh(*, mtls_b: bool = True, mode: str = "STRICT", override: str = "", dr: str = "") -> str:
    service_override = f"\n  mtls: {{mode: {override}}}" if override else ""
    return f"""
apiVersion: trellis.dev/v1alpha1
kind: MeshConfig
metadata: {{name: mesh}}
spec: {{mtls: {{mode: {mode}}}}}
---
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: shop, namespace: web}}
spec:
  selector: {{app: shop}}
  ports: [{{name: http, port: 9080, targetPort: http}}]{service_override}
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: shop-a, namespace: web, labels: {{app: shop}}}}
spec:
  address: 10.0.0.1
  ports: [{{name: http, port: 8080}}]
  inbound: {{port: 15006}}
  serviceAccount: shop
  mtls: true
---
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: shop-b, namespace: web, labels: {{app: shop}}}}
spec:
  address: 10.0.0.2
  ports: [{{name: http, port: 8080}}]
  inbound: {{port: 15006}}
  serviceAccount: shop-canary
  mtls: {str(mtls_b).lower()}
{dr}"""


CLUSTER = "outbound|9080||shop.web.svc.mesh"
DISABLE = """---
apiVersion: trellis.dev/v1alpha1
kind: DestinationPolicy
metadata: {name: shop, namespace: web}
spec: {service: shop, tls: {mode: DISABLE}}
"""


def secure(kind: str = "sidecar", workload: str = "client") -> NodeInfo:
    return replace(node(kind, "web", workload), secure=True)


def tls_of(cluster: object) -> tls_pb2.UpstreamTlsContext | None:
    if not cluster.HasField("transport_socket"):  # type: ignore[attr-defined]
        return None
    out = tls_pb2.UpstreamTlsContext()
    cluster.transport_socket.typed_config.Unpack(out)  # type: ignore[attr-defined]
    return out


def test_clusters_use_mtls_only_when_both_sides_have_identities() -> None:
    push = load_push(mesh())
    context = tls_of(one(secure(), push, CLUSTER_TYPE, CLUSTER))
    assert context is not None
    validation = context.common_tls_context.validation_context
    assert [m.exact for m in validation.match_subject_alt_names] == [
        f"spiffe://{TD}/ns/web/sa/shop",
        f"spiffe://{TD}/ns/web/sa/shop-canary",
    ]
    assert context.common_tls_context.tls_certificate_provider_instance.instance_name == "trellis"
    _, config = decode_cluster(_packed(one(secure(), push, CLUSTER_TYPE, CLUSTER)))
    assert config.tls is not None and config.tls.allows(f"spiffe://{TD}/ns/web/sa/shop")
    assert not config.tls.allows(f"spiffe://{TD}/ns/web/sa/impostor")

    assert tls_of(one(node("sidecar", "web"), push, CLUSTER_TYPE, CLUSTER)) is None  # no identity
    assert tls_of(one(secure(), load_push(mesh(mtls_b=False)), CLUSTER_TYPE, CLUSTER)) is None
    assert tls_of(one(secure(), load_push(mesh(dr=DISABLE)), CLUSTER_TYPE, CLUSTER)) is None
    proxyless = tls_of(one(secure("proxyless"), push, CLUSTER_TYPE, CLUSTER))
    assert proxyless is not None  # grpcio's A29 format, the same shape


@pytest.mark.parametrize(
    ("kind", "text", "want"),
    [
        ("sidecar", mesh(), "STRICT"),
        ("sidecar", mesh(mode="PERMISSIVE"), "PERMISSIVE"),
        ("sidecar", mesh(override="PERMISSIVE"), "PERMISSIVE"),
        ("sidecar", mesh(mode="PERMISSIVE", override="STRICT"), "STRICT"),
        ("proxyless", mesh(mode="PERMISSIVE"), "STRICT"),  # grpcio cannot be PERMISSIVE
    ],
)
def test_inbound_modes(kind: str, text: str, want: str) -> None:
    push = load_push(text)
    name = "trellis/inbound?address=10.0.0.1:15006"
    listener = one(secure(kind, "shop-a"), push, LISTENER_TYPE, name)
    chains = listener.filter_chains
    assert len(chains) == (2 if want == "PERMISSIVE" else 1)
    if kind == "sidecar":
        _, config = decode_listener(_packed(listener))
        assert config.tls == want
    plain = one(node(kind, "web", "shop-a"), push, LISTENER_TYPE, name)
    assert len(plain.filter_chains) == 1 and not plain.filter_chains[0].HasField("transport_socket")


def _packed(message: object) -> object:
    from google.protobuf import any_pb2

    out = any_pb2.Any()
    out.Pack(message)  # type: ignore[arg-type]
    return out
