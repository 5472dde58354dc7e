"""The gRPC service `trellis.ca.v1.Certificates`: JSON bodies, no generated code.

- `/trellis.ca.v1.Certificates/Sign`: `{"csr": PEM, "token": "ID.SECRET"}` for a first
  certificate, `{"csr": PEM}` for a renewal over a connection that presents the
  current mesh certificate; optional `"serviceAccount"` / `"namespace"` state the
  identity the caller expects. Answer: `{"certificate": PEM (SVID then
  intermediates), "bundle": PEM (trusted roots), "expires": RFC 3339,
  "spiffeId": ..., "serial": hex}`.
- `/trellis.ca.v1.Certificates/Bundle`: `{}` -> `{"bundle": PEM}`; no credentials.

Status codes: UNAUTHENTICATED (no or bad token, no certificate for a renewal),
PERMISSION_DENIED (revoked or expired token, another identity than the
credential's, a renewal whose token was revoked), INVALID_ARGUMENT (not JSON,
no CSR, bad CSR, not ECDSA P-256). Served only on the secure port: the caller
is looked up in the front's `PeerTable`. Knows no policy: `CertificateAuthority` decides.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import grpc

from trellis.control.ca.issuer import (
    CertificateAuthority,
    InvalidArgument,
    PermissionDenied,
    Refused,
    SignRequest,
    Unauthenticated,
)
from trellis.control.ca.peers import PeerTable

log = logging.getLogger("trellis.ca")

SERVICE = "trellis.ca.v1.Certificates"
SIGN_METHOD = f"/{SERVICE}/Sign"
BUNDLE_METHOD = f"/{SERVICE}/Bundle"

_CODES: dict[type[Refused], grpc.StatusCode] = {
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
}


_NOT_JSON = object()


def _decode(data: bytes) -> Any:
    try:
        return json.loads(data or b"{}")
    except ValueError:
        return _NOT_JSON


def _encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode()


def _optional_str(body: dict[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise InvalidArgument(f"{field} must be a string")
    return value or None


def parse_sign_request(body: Any) -> SignRequest:
    if not isinstance(body, dict):
        raise InvalidArgument("the request must be a JSON object")
    csr = body.get("csr")
    if not isinstance(csr, str) or not csr:
        raise InvalidArgument("csr (a PEM certificate signing request) is required")
    return SignRequest(
        csr=csr,
        token=_optional_str(body, "token"),
        service_account=_optional_str(body, "serviceAccount"),
        namespace=_optional_str(body, "namespace"),
    )


class CertificatesService:
    def __init__(self, ca: CertificateAuthority, peers: PeerTable) -> None:
        self._ca = ca
        self._peers = peers

    def handler(self) -> grpc.GenericRpcHandler:
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Sign": grpc.unary_unary_rpc_method_handler(
                    self.sign, request_deserializer=_decode, response_serializer=_encode
                ),
                "Bundle": grpc.unary_unary_rpc_method_handler(
                    self.bundle, request_deserializer=_decode, response_serializer=_encode
                ),
            },
        )

    def register(self, server: grpc.aio.Server) -> None:
        server.add_generic_rpc_handlers((self.handler(),))

    async def sign(self, body: Any, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        peer = self._peers.lookup(context.peer() or "")
        try:
            request = parse_sign_request(body)
            issued = await self._ca.sign(request, peer.certificate if peer is not None else None)
        except Refused as e:
            await context.abort(_CODES[type(e)], str(e))
            raise AssertionError("unreachable") from None
        return {
            "certificate": issued.chain_pem.decode(),
            "bundle": issued.bundle_pem.decode(),
            "expires": issued.not_after.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "spiffeId": str(issued.spiffe_id),
            "serial": issued.serial,
        }

    async def bundle(self, body: Any, context: grpc.aio.ServicerContext) -> dict[str, Any]:
        return {"bundle": self._ca.bundle_pem().decode()}
