"""Mesh mTLS in xDS: who speaks it, and the TLS contexts clusters and inbound listeners carry.

- A cluster gets an UpstreamTlsContext when the client node has a mesh identity
  (`NodeInfo.secure`), every endpoint of the service port speaks mTLS (Workload
  `spec.mtls`), and no DestinationPolicy says `tls: {mode: DISABLE}`; the
  peer's SPIFFE ID must be one of the endpoints' service accounts
  (`match_subject_alt_names`, gRFC A29). A mixed or plaintext set stays
  plaintext (what Istio's auto-mTLS does per endpoint, per cluster here).
- An inbound listener of a node with an identity is STRICT (one chain with a
  DownstreamTlsContext that requires a client certificate) or PERMISSIVE (the
  same chain matched on transport protocol `tls`, and a plaintext chain matched
  on `raw_buffer`), from MeshConfig `mtls.mode` unless a Service selecting the
  workload overrides it (PERMISSIVE if any says so, else STRICT if any says so).
  A proxyless server cannot be PERMISSIVE: grpcio matches only raw_buffer
  chains, so a proxyless node always gets STRICT (see `inbound_mode`).
- Certificates come from the certificate provider instance every bootstrap
  names (`CERTIFICATE_PROVIDER`): the sidecar's own identity, grpcio's
  file_watcher for proxyless apps.

Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from envoy.config.core.v3 import base_pb2
from envoy.config.listener.v3 import listener_components_pb2
from envoy.extensions.transport_sockets.tls.v3 import common_pb2, tls_pb2
from envoy.type.matcher.v3 import string_pb2

from trellis.control.push.context import Endpoint, PushContext
from trellis.control.translate import pb
from trellis.control.translate.node import NodeInfo
from trellis.model.policies import DestinationPolicy
from trellis.wire import CERTIFICATE_PROVIDER, SpiffeId

TLS_SOCKET = "envoy.transport_sockets.tls"

InboundMode = Literal["DISABLE", "STRICT", "PERMISSIVE"]


def _common(sans: Sequence[str] = ()) -> tls_pb2.CommonTlsContext:
    validation = common_pb2.CertificateValidationContext(
        ca_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(
            instance_name=CERTIFICATE_PROVIDER, certificate_name="ROOTCA"
        ),
        match_subject_alt_names=[string_pb2.StringMatcher(exact=s) for s in sans],
    )
    return tls_pb2.CommonTlsContext(
        tls_certificate_provider_instance=common_pb2.CertificateProviderPluginInstance(
            instance_name=CERTIFICATE_PROVIDER, certificate_name="default"
        ),
        validation_context=validation,
    )


def upstream_tls(
    node: NodeInfo,
    endpoints: Iterable[Endpoint],
    trust_domain: str,
    policy: DestinationPolicy | None,
) -> base_pb2.TransportSocket | None:
    """The cluster's transport socket, or None for plaintext."""
    if not node.secure:
        return None
    if policy is not None and policy.spec.tls is not None and policy.spec.tls.mode == "DISABLE":
        return None
    members = list(endpoints)
    if not members or not all(e.mtls for e in members):
        return None
    sans = sorted(
        {
            str(SpiffeId(trust_domain, e.workload.rpartition(".")[2], e.service_account))
            for e in members
        }
    )
    context = tls_pb2.UpstreamTlsContext(common_tls_context=_common(sans))
    return base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pb.pack(context))


def inbound_mode(node: NodeInfo, push: PushContext) -> InboundMode:
    if not node.secure:
        return "DISABLE"
    if node.kind == "proxyless":
        return "STRICT"  # grpcio servers match raw_buffer chains only: no PERMISSIVE
    mode: InboundMode = push.mesh.spec.mtls.mode
    workload = push.workload(node.namespace, node.workload)
    if workload is not None:
        overrides = {s.spec.mtls.mode for s in push.services_of(workload) if s.spec.mtls}
        if "PERMISSIVE" in overrides:
            mode = "PERMISSIVE"
        elif "STRICT" in overrides:
            mode = "STRICT"
    return mode


def inbound_chains(
    mode: InboundMode, hcm_filter: listener_components_pb2.Filter
) -> list[listener_components_pb2.FilterChain]:
    """The inbound listener's filter chains for `mode`, all serving `hcm_filter`."""
    if mode == "DISABLE":
        return [listener_components_pb2.FilterChain(name="inbound", filters=[hcm_filter])]
    context = tls_pb2.DownstreamTlsContext(common_tls_context=_common())
    context.require_client_certificate.value = True
    socket = base_pb2.TransportSocket(name=TLS_SOCKET, typed_config=pb.pack(context))
    mtls = listener_components_pb2.FilterChain(
        name="inbound-mtls", filters=[hcm_filter], transport_socket=socket
    )
    if mode == "STRICT":
        return [mtls]
    mtls.filter_chain_match.transport_protocol = "tls"
    plain = listener_components_pb2.FilterChain(
        name="inbound-plaintext",
        filters=[hcm_filter],
        filter_chain_match=listener_components_pb2.FilterChainMatch(
            transport_protocol="raw_buffer"
        ),
    )
    return [mtls, plain]
