"""DestinationPolicy (Istio DestinationRule semantics) and AuthorizationPolicy."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from trellis.model.base import Document, Labels, Name, Spec
from trellis.model.duration import Duration


class RingHash(Spec):
    header: str | None = None  # hash on this request header; else on the connection
    minimum_ring_size: int = Field(default=1024, ge=1, le=8_388_608)
    maximum_ring_size: int = Field(default=8_388_608, ge=1, le=8_388_608)


class LoadBalancer(Spec):
    type: Literal["LEAST_REQUEST", "ROUND_ROBIN", "RING_HASH"] = "LEAST_REQUEST"
    choice_count: int = Field(default=2, ge=2, le=16)  # P2C by default
    ring_hash: RingHash | None = None


class ConnectionPool(Spec):
    max_connections: int | None = Field(default=None, ge=1)
    max_pending_requests: int | None = Field(default=None, ge=1)
    max_requests: int | None = Field(default=None, ge=1)
    max_retries: int | None = Field(default=None, ge=0)
    idle_timeout: Duration | None = None


class OutlierDetection(Spec):
    consecutive_5xx_errors: int | None = Field(default=None, ge=0, alias="consecutive5xxErrors")
    consecutive_gateway_errors: int | None = Field(default=None, ge=0)
    interval: Duration = "10s"
    base_ejection_time: Duration = "30s"
    max_ejection_percent: int = Field(default=10, ge=0, le=100)
    # success-rate / failure-percentage ejection (what gRPC clients implement, gRFC A50)
    failure_percentage_threshold: int | None = Field(default=None, ge=0, le=100)
    failure_percentage_minimum_hosts: int = Field(default=5, ge=0)
    failure_percentage_request_volume: int = Field(default=50, ge=0)


class UpstreamTLS(Spec):
    mode: Literal["MESH", "DISABLE"] = "MESH"


class DestinationPolicySpec(Spec):
    service: Name  # the Service (in this namespace) the policy is for
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: UpstreamTLS | None = None


class DestinationPolicy(Document):
    KIND = "DestinationPolicy"
    kind: Literal["DestinationPolicy"] = "DestinationPolicy"
    spec: DestinationPolicySpec


_PRINCIPAL = re.compile(r"^(\*|\*?[^*]+\*?)$")


def _check_wildcards(values: list[str], what: str) -> None:
    for v in values:
        if not _PRINCIPAL.match(v):
            raise ValueError(f"{what} {v!r}: '*' is allowed only as a prefix or suffix wildcard")


class Source(Spec):
    principals: list[str] = Field(default_factory=list)
    not_principals: list[str] = Field(default_factory=list)
    namespaces: list[str] = Field(default_factory=list)
    not_namespaces: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _wildcards(self) -> Source:
        _check_wildcards(self.principals + self.not_principals, "principal")
        _check_wildcards(self.namespaces + self.not_namespaces, "namespace")
        return self


class Operation(Spec):
    methods: list[str] = Field(default_factory=list)
    not_methods: list[str] = Field(default_factory=list)
    paths: list[str] = Field(default_factory=list)
    not_paths: list[str] = Field(default_factory=list)
    ports: list[int] = Field(default_factory=list)

    @model_validator(mode="after")
    def _wildcards(self) -> Operation:
        _check_wildcards(self.paths + self.not_paths, "path")
        return self


class RuleFrom(Spec):
    source: Source


class RuleTo(Spec):
    operation: Operation


class Condition(Spec):
    key: str = Field(pattern=r"^request\.headers\[[^\]]+\]$|^source\.(namespace|principal)$")
    values: list[str] = Field(default_factory=list)
    not_values: list[str] = Field(default_factory=list)


class AuthorizationRule(Spec):
    from_: list[RuleFrom] = Field(default_factory=list, alias="from")
    to: list[RuleTo] = Field(default_factory=list)
    when: list[Condition] = Field(default_factory=list)


class WorkloadSelector(Spec):
    match_labels: Labels = Field(default_factory=dict)


class AuthorizationPolicySpec(Spec):
    selector: WorkloadSelector | None = None  # none: every workload of the namespace
    action: Literal["ALLOW", "DENY"] = "ALLOW"
    dry_run: bool = False
    rules: list[AuthorizationRule] = Field(default_factory=list)


class AuthorizationPolicy(Document):
    KIND = "AuthorizationPolicy"
    kind: Literal["AuthorizationPolicy"] = "AuthorizationPolicy"
    spec: AuthorizationPolicySpec
