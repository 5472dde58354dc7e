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
JSON nested deeper than `MAX_JSON_DEPTH`, no CSR, bad CSR, not ECDSA P-256),
RESOURCE_EXHAUSTED (a request over `CA_MAX_REQUEST_BYTES`, refused unparsed; gRPC
itself refuses messages over the server's receive limit). Served only on the
secure port: the caller is looked up in the front's `PeerTable`. Knows no
policy: `CertificateAuthority` decides.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
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
from trellis.control.limits import (
    CA_MAX_REQUEST_BYTES,
    MAX_JSON_DEPTH,
    JsonTooDeep,
    loads_bounded,
    size_text,
)

log = logging.getLogger("trellis.ca")

SERVICE = "trellis.ca.v1.Certificates"
SIGN_METHOD = f"/{SERVICE}/Sign"
BUNDLE_METHOD = f"/{SERVICE}/Bundle"

_CODES: dict[type[Refused], grpc.StatusCode] = {
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
}


@dataclass(frozen=True, slots=True)
class BadBody:
    """A request body refused before it was parsed (or because it could not be)."""

    code: grpc.StatusCode
    message: str


_NOT_JSON = BadBody(grpc.StatusCode.INVALID_ARGUMENT, "the request must be a JSON object")


def _decode(data: bytes) -> Any:
    """The request's JSON, or a `BadBody`: too large, nested too deep, not JSON."""
    if len(data) > CA_MAX_REQUEST_BYTES:
        return BadBody(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"the request is {len(data)} bytes; the CA accepts at most "
            f"{size_text(CA_MAX_REQUEST_BYTES)}",
        )
    try:
        return loads_bounded(data or b"{}", MAX_JSON_DEPTH)
    except JsonTooDeep as e:
        return BadBody(grpc.StatusCode.INVALID_ARGUMENT, str(e))
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
        await _refuse_bad(body, context)
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
        await _refuse_bad(body, context)
        return {"bundle": self._ca.bundle_pem().decode()}


async def _refuse_bad(body: Any, context: grpc.aio.ServicerContext) -> None:
    """End the call with the body's refusal, if it was refused."""
    if isinstance(body, BadBody):
        await context.abort(body.code, body.message)
