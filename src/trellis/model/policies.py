"""DestinationPolicy (Istio DestinationRule semantics) and AuthorizationPolicy."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trellis.model.base import Document, Labels, Name, Spec
from trellis.model.duration import Duration, parse_duration


class RingHash(Spec):
    header: str | None = None  # hash on this request header; else on the connection
    minimum_ring_size: int = Field(default=1024, ge=1, le=8_388_608)
    maximum_ring_size: int = Field(default=8_388_608, ge=1, le=8_388_608)


class LocalityLbSetting(Spec):
    """Istio's localityLbSetting: prefer the caller's own zone, fail over by priority
    (same zone, then same region, then elsewhere) when the preferred share falls. Off
    unless enabled: like Istio, it needs outlier detection to see a zone's endpoints fail."""

    enabled: bool = False


class LoadBalancer(Spec):
    type: Literal["LEAST_REQUEST", "ROUND_ROBIN", "RING_HASH"] = "LEAST_REQUEST"
    choice_count: int = Field(default=2, ge=2, le=16)  # P2C by default
    ring_hash: RingHash | None = None
    # Envoy's common_lb_config.healthy_panic_threshold: below this share (%) of healthy
    # endpoints, balance over all of them (ejected ones included). 0 disables panic.
    healthy_panic_threshold: int = Field(default=50, ge=0, le=100)
    locality_lb_setting: LocalityLbSetting | None = None


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


class RetryBudget(Spec):
    """Linkerd's retry budget: retries may add at most `percent` of the requests (over
    `ttl`) plus `minRetriesPerSecond`. On by default for every destination."""

    percent: int = Field(default=20, ge=0, le=1000)
    min_retries_per_second: int = Field(default=10, ge=0, le=100_000)
    ttl: Duration = "10s"

    @field_validator("ttl")
    @classmethod
    def _ttl(cls, v: str) -> str:
        seconds = parse_duration(v)
        if not 1.0 <= seconds <= 60.0:
            raise ValueError(f"ttl {v!r} must be between 1s and 60s (as Linkerd's)")
        return v


class UpstreamTLS(Spec):
    mode: Literal["MESH", "DISABLE"] = "MESH"


class DestinationPolicySpec(Spec):
    service: Name  # the Service (in this namespace) the policy is for
    load_balancer: LoadBalancer = Field(default_factory=LoadBalancer)
    connection_pool: ConnectionPool | None = None
    outlier_detection: OutlierDetection | None = None
    tls: UpstreamTLS | None = None
    retry_budget: RetryBudget = Field(default_factory=RetryBudget)


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


class LocalRateLimit(Spec):
    """A token bucket: `requests` every `per`, holding at most `burst` (default `requests`).
    Envoy's local rate limit: each proxy instance keeps its own bucket."""

    requests: int = Field(ge=1, le=1_000_000)
    per: Duration = "1s"
    burst: int | None = Field(default=None, ge=1, le=10_000_000)

    @field_validator("per")
    @classmethod
    def _per(cls, v: str) -> str:
        seconds = parse_duration(v)
        if not 0.05 <= seconds <= 86_400:
            raise ValueError(f"per {v!r} must be between 50ms (Envoy's shortest fill) and 24h")
        return v

    @property
    def max_tokens(self) -> int:
        return self.burst if self.burst is not None else self.requests


class RateLimitRouteRef(Spec):
    """An HTTPRoute attached to the service (in the policy's namespace unless `namespace`
    says), and optionally one of its rules by index; no rule: every rule of the route."""

    name: Name
    namespace: Name | None = None
    rule: int | None = Field(default=None, ge=0)


class RateLimitPolicySpec(Spec):
    service: Name  # the Service (in this namespace) whose requests are limited
    # inbound: each destination sidecar limits the requests it takes for the service;
    # outbound: each calling sidecar limits what it sends (per service, or per route).
    side: Literal["inbound", "outbound"] = "inbound"
    routes: list[RateLimitRouteRef] = Field(default_factory=list)
    local: LocalRateLimit

    @model_validator(mode="after")
    def _routes_outbound(self) -> RateLimitPolicySpec:
        if self.routes and self.side == "inbound":
            raise ValueError(
                "routes: limits per route are enforced at the outbound side (the inbound "
                "side does not evaluate HTTPRoutes): set side: outbound, or drop routes "
                "to limit the whole service"
            )
        return self


class RateLimitPolicy(Document):
    KIND = "RateLimitPolicy"
    kind: Literal["RateLimitPolicy"] = "RateLimitPolicy"
    spec: RateLimitPolicySpec
