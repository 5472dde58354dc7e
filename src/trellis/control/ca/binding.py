"""Binding an ADS stream on the secure port to the caller's mesh certificate.

`CertificateBinding` is the xDS server's `StreamGuard` there:
- `admit`: the caller must have presented a mesh client certificate (an SVID
  with one workload SPIFFE ID) through the TLS front, else UNAUTHENTICATED;
- `bind`: the node of the first request must be that identity's: the
  namespace of `node.id` (`KIND~WORKLOAD.NAMESPACE`) and of its metadata, and
  the metadata's service account, must be the certificate's, else
  PERMISSION_DENIED. A bound stream is recorded (serial -> node id) so that
  `trellis identity show` can say which node holds which certificate.

`node_mismatch` is the pure rule; the class only reads the peer table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from trellis.control.ca.peers import PeerTable
from trellis.control.translate.node import NodeInfo
from trellis.control.xds.server import Admission, StreamRefused
from trellis.wire import SpiffeId


@dataclass(frozen=True, slots=True)
class Principal:
    spiffe_id: SpiffeId
    serial: str


def node_mismatch(spiffe_id: SpiffeId, node: NodeInfo) -> str | None:
    """Why `node` may not speak for `spiffe_id`, or None when it may."""
    id_namespace = node.id.rpartition(".")[2]
    if id_namespace != spiffe_id.namespace or node.namespace != spiffe_id.namespace:
        return (
            f"node {node.id} (namespace {node.namespace}) does not match its certificate "
            f"{spiffe_id} (namespace {spiffe_id.namespace})"
        )
    if node.service_account != spiffe_id.service_account:
        return (
            f"node {node.id} claims service account {node.service_account} but its certificate "
            f"is {spiffe_id} (service account {spiffe_id.service_account})"
        )
    return None


class CertificateBinding:
    def __init__(
        self, peers: PeerTable, on_bound: Callable[[str, str], None] | None = None
    ) -> None:
        self._peers = peers
        self._on_bound = on_bound

    def admit(self, context: grpc.aio.ServicerContext) -> Admission:
        peer = self._peers.lookup(context.peer() or "")
        if peer is None or peer.certificate is None:
            raise StreamRefused(
                grpc.StatusCode.UNAUTHENTICATED,
                "xDS on the secure port needs a mesh client certificate (an SVID from the CA's "
                "Sign with a join token); the plaintext xDS port needs none",
            )
        try:
            spiffe_id = peer.certificate.spiffe_id()
        except ValueError as e:
            raise StreamRefused(
                grpc.StatusCode.UNAUTHENTICATED, f"the client certificate is not a mesh SVID: {e}"
            ) from None
        return Admission(peer=peer.remote, principal=Principal(spiffe_id, peer.certificate.serial))

    def bind(self, admission: Admission, node: NodeInfo) -> None:
        principal = admission.principal
        assert isinstance(principal, Principal)
        reason = node_mismatch(principal.spiffe_id, node)
        if reason is not None:
            raise StreamRefused(grpc.StatusCode.PERMISSION_DENIED, reason)
        if self._on_bound is not None:
            self._on_bound(principal.serial, node.id)
