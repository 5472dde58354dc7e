"""Request and response bodies of the REST API, as pydantic models (they make the OpenAPI).

Documents travel as plain JSON objects: the mesh model validates them with
its own error paths, so these models do not re-describe every kind.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
    documents: list[dict[str, Any]]
    source: str | None = None


class DeleteRequest(Body):
    documents: list[dict[str, Any]]


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


class DeregisterOut(Body):
    revision: int
    action: str  # "deleted", or "absent" when it was not registered
