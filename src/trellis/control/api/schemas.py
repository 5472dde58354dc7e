"""Request and response bodies of the REST API, as pydantic models (they make the OpenAPI).

Documents travel as plain JSON objects: the mesh model validates them with
its own error paths, so these models do not re-describe every kind.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trellis.control.limits import API_MAX_DOCUMENTS


class Body(BaseModel):
    model_config = ConfigDict(populate_by_name=True)


class ErrorBody(Body):
    error: str
    problems: list[dict[str, Any]] | None = None


class Health(Body):
    status: Literal["ok"]
    revision: int


class Info(Body):
    """Where the control plane's other ports are, for `trellis run` and proxies."""

    xds: str  # HOST:PORT of the ADS server, as a local client reaches it
    revision: int
    secure: str | None = None  # HOST:PORT of the secure port (TLS: CA service + ADS)


class ItemList(Body):
    items: list[dict[str, Any]]
    revision: int


class ChangeOut(Body):
    key: str
    kind: str
    namespace: str
    name: str
    action: str


class WriteResult(Body):
    revision: int
    changes: list[ChangeOut]
    dry_run: bool = Field(alias="dryRun")


class ApplyRequest(Body):
    documents: list[dict[str, Any]] = Field(max_length=API_MAX_DOCUMENTS)
    source: str | None = None


class DeleteRequest(Body):
    documents: list[dict[str, Any]] = Field(max_length=API_MAX_DOCUMENTS)


class RegisterRequest(Body):
    workload: dict[str, Any]
    ttl_seconds: float = Field(alias="ttlSeconds", gt=0)


class RevisionOut(Body):
    revision: int


class HeartbeatRequest(Body):
    namespace: str = "default"
    name: str
    healthy: bool = True


class HeartbeatOut(Body):
    expires_at: float | None = Field(alias="expiresAt")


class WorkloadRef(Body):
    namespace: str = "default"
    name: str


class StatusOut(Body):
    nodes: list[dict[str, Any]]
    revision: int


class EndpointOut(Body):
    workload: str
    address: str
    port: int
    service_port: int = Field(alias="servicePort")
    healthy: bool
    expires_at: float | None = Field(alias="expiresAt")
    static: bool


class DescribeService(Body):
    service: dict[str, Any]
    routes: list[dict[str, Any]]
    endpoints: list[EndpointOut]
    subscribers: list[str]
    policy: dict[str, Any] = {}  # resilience settings in force (describe.in_force)


class DeregisterOut(Body):
    revision: int
    action: str  # "deleted", or "absent" when it was not registered


# -- identity: join tokens, the CA, issued certificates ------------------------------------


class TokenCreate(Body):
    service_account: str = Field(alias="serviceAccount", min_length=1)
    namespace: str = "default"
    ttl_seconds: float = Field(default=86400.0, alias="ttlSeconds", gt=0)


class TokenCreated(Body):
    """The secret `token` appears in this answer only."""

    id: str
    token: str
    expires: str  # RFC 3339
    service_account: str = Field(alias="serviceAccount")
    namespace: str


class TokenOut(Body):
    id: str
    service_account: str = Field(alias="serviceAccount")
    namespace: str
    created: str
    expires: str
    expired: bool
    revoked: bool
    revoked_at: str | None = Field(alias="revokedAt")
    certificates: int  # unexpired certificates descending from it


class TokenList(Body):
    items: list[TokenOut]


class CertificateInfo(Body):
    subject: str
    serial: str
    not_before: str = Field(alias="notBefore")
    not_after: str = Field(alias="notAfter")
    fingerprint: str  # SHA-256 of the DER


class CaOut(Body):
    mode: Literal["self-signed", "intermediate"]
    trust_domain: str = Field(alias="trustDomain")
    certificate_ttl_seconds: float = Field(alias="certificateTTLSeconds")
    signing: CertificateInfo
    roots: list[CertificateInfo]  # the trust bundle, current root first
    rotating: bool  # more than one root is trusted: `trellis ca rotate --finish` ends it
    secure: str  # HOST:PORT of the secure port


class RotateRequest(Body):
    finish: bool = False


class IssuedOut(Body):
    serial: str
    spiffe_id: str = Field(alias="spiffeId")
    namespace: str
    service_account: str = Field(alias="serviceAccount")
    token_id: str = Field(alias="tokenId")
    not_before: str = Field(alias="notBefore")
    not_after: str = Field(alias="notAfter")
    node: str | None  # the xDS node that presented it (or an earlier one of its lineage)


class IssuedList(Body):
    items: list[IssuedOut]


class IdentityOut(Body):
    workload: str
    namespace: str
    service_account: str = Field(alias="serviceAccount")
    spiffe_id: str = Field(alias="spiffeId")
    certificates: list[IssuedOut]  # the current certificate of every proxy of this identity
