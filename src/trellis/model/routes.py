"""HTTPRoute and GRPCRoute: the Gateway API shapes with GAMMA semantics.

A route attaches to a Service through `parentRefs`. A route in the service's
namespace (producer) applies to every client; one in another namespace
(consumer) only to clients in that namespace. Trellis extensions, documented
in docs/design/resources.md: `fault` on rules of both kinds, and `timeouts` /
`retry` on GRPCRoute rules (the standard has them on HTTPRoute only).
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from trellis.model.base import Document, Name, Spec
from trellis.model.duration import Duration, parse_duration
from trellis.model.errors import describe_value
from trellis.routing.regex import regex_problem, shown


def _check_regex(value: str) -> str:
    """Valid for RE2, the engine of every client (Envoy, grpcio, our sidecar), and within
    the program-size limit our sidecars enforce: a regex they refuse would be translated
    and NACKed everywhere."""
    problem = regex_problem(value)
    if problem is not None:
        raise ValueError(f"invalid regular expression {shown(value)}: {problem}")
    return value


def _check_derived(regex: str, what: str) -> None:
    """A regex the translator derives from a value (control/translate/rules.py) must fit
    the limit too, or the whole route config would be NACKed."""
    problem = regex_problem(regex)
    if problem is not None:
        raise ValueError(f"{what} too long: clients match the regex {shown(regex)}: {problem}")


class ParentRef(Spec):
    group: str = ""
    kind: Literal["Service"] = "Service"
    name: Name
    namespace: Name | None = None  # defaults to the route's namespace
    port: int | None = Field(default=None, ge=1, le=65535)


class BackendRef(Spec):
    group: str = ""
    kind: Literal["Service"] = "Service"
    name: Name
    namespace: Name | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    weight: int = Field(default=1, ge=0, le=1_000_000)


class PathMatch(Spec):
    type: Literal["Exact", "PathPrefix", "RegularExpression"] = "PathPrefix"
    value: str = "/"

    @model_validator(mode="after")
    def _value(self) -> PathMatch:
        if self.type == "RegularExpression":
            _check_regex(self.value)
        elif not self.value.startswith("/"):
            raise ValueError("value: a path must start with '/'")
        elif self.type == "PathPrefix" and (prefix := self.value.rstrip("/")):
            # Whole segments: `/foo` is the regex `/foo(/.*)?` (rules.py _segment_prefix).
            _check_derived(f"{re.escape(prefix)}(/.*)?", "value: path prefix")
        return self


class HeaderMatch(Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9!#$%&'*+\-.^_`|~:]+$")
    value: str

    @model_validator(mode="after")
    def _value(self) -> HeaderMatch:
        if self.type == "RegularExpression":
            _check_regex(self.value)
        return self


class QueryParamMatch(HeaderMatch):
    pass


Method = Literal["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"]


class HTTPRouteMatch(Spec):
    path: PathMatch | None = None
    headers: list[HeaderMatch] = Field(default_factory=list)
    query_params: list[QueryParamMatch] = Field(default_factory=list)
    method: Method | None = None


class HeaderValue(Spec):
    name: str = Field(min_length=1)
    value: str


class HeaderModifier(Spec):
    set: list[HeaderValue] = Field(default_factory=list)
    add: list[HeaderValue] = Field(default_factory=list)
    remove: list[str] = Field(default_factory=list)


class PathModifier(Spec):
    type: Literal["ReplaceFullPath", "ReplacePrefixMatch"]
    replace_full_path: str | None = None
    replace_prefix_match: str | None = None

    @model_validator(mode="after")
    def _one(self) -> PathModifier:
        want = "replace_full_path" if self.type == "ReplaceFullPath" else "replace_prefix_match"
        if getattr(self, want) is None:
            raise ValueError(f"{self.type} needs {want.replace('_f', 'F').replace('_p', 'P')}")
        return self


class RequestRedirect(Spec):
    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    path: PathModifier | None = None
    port: int | None = Field(default=None, ge=1, le=65535)
    status_code: Literal[301, 302, 303, 307, 308] = 302

    @field_validator("status_code", mode="before")
    @classmethod
    def _integer(cls, v: Any) -> Any:
        # pydantic's literal check takes 301.0 for 301, even strict; the field is an integer.
        if isinstance(v, float):
            raise ValueError(f"must be an integer, got {describe_value(v)}")
        return v


class URLRewrite(Spec):
    hostname: str | None = None
    path: PathModifier | None = None


class RequestMirror(Spec):
    backend_ref: BackendRef
    percent: int = Field(default=100, ge=0, le=100)


# filter type -> the field that carries its settings (attribute name, YAML name)
_FILTER_FIELDS = {
    "RequestHeaderModifier": ("request_header_modifier", "requestHeaderModifier"),
    "ResponseHeaderModifier": ("response_header_modifier", "responseHeaderModifier"),
    "RequestRedirect": ("request_redirect", "requestRedirect"),
    "URLRewrite": ("url_rewrite", "urlRewrite"),
    "RequestMirror": ("request_mirror", "requestMirror"),
}


def _require_filter_field(obj: object, filter_type: str) -> None:
    attr, yaml_name = _FILTER_FIELDS[filter_type]
    if getattr(obj, attr) is None:
        raise ValueError(f"type {filter_type} needs its {yaml_name} field")


class HTTPRouteFilter(Spec):
    type: Literal[
        "RequestHeaderModifier",
        "ResponseHeaderModifier",
        "RequestRedirect",
        "URLRewrite",
        "RequestMirror",
    ]
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: URLRewrite | None = None
    request_mirror: RequestMirror | None = None

    @model_validator(mode="after")
    def _matches_type(self) -> HTTPRouteFilter:
        _require_filter_field(self, self.type)
        return self


class Timeouts(Spec):
    """GEP-1742: `request` bounds the whole exchange, `backendRequest` each attempt."""

    request: Duration | None = None
    backend_request: Duration | None = None

    @model_validator(mode="after")
    def _order(self) -> Timeouts:
        if self.request and self.backend_request:
            req, per_try = parse_duration(self.request), parse_duration(self.backend_request)
            if req != 0 and (per_try == 0 or per_try > req):
                raise ValueError(
                    f"backendRequest ({self.backend_request}) must not be longer than request "
                    f"({self.request})"
                )
        return self


class HTTPRetry(Spec):
    """GEP-1731: retry on these HTTP status codes, `attempts` retries, `backoff` base interval."""

    codes: list[int] = Field(default_factory=list)
    attempts: int = Field(default=1, ge=0, le=10)
    backoff: Duration | None = None
    # Trellis extension: also retry non-idempotent methods (POST, PATCH, ...) on `codes`.
    # Off by default (safe retries): a request that may have reached the upstream is sent
    # again only when its method is idempotent. Sidecars only (gRPC calls are retried on
    # gRPC codes by grpcio's own rules).
    non_idempotent: bool = False

    @field_validator("codes")
    @classmethod
    def _codes(cls, v: list[int]) -> list[int]:
        for c in v:
            if not 400 <= c <= 599:
                raise ValueError(f"retry code {c} is not an HTTP error status (400-599)")
        return v


class FaultDelay(Spec):
    fixed_delay: Duration
    percent: float = Field(default=100, ge=0, le=100)


class FaultAbort(Spec):
    http_status: int | None = Field(default=None, ge=200, le=599)
    grpc_status: int | None = Field(default=None, ge=0, le=16)
    percent: float = Field(default=100, ge=0, le=100)

    @model_validator(mode="after")
    def _one(self) -> FaultAbort:
        if (self.http_status is None) == (self.grpc_status is None):
            raise ValueError("set exactly one of httpStatus or grpcStatus")
        return self


class Fault(Spec):
    """Trellis extension: inject delays and aborts (Envoy HTTPFault, gRFC A33)."""

    delay: FaultDelay | None = None
    abort: FaultAbort | None = None


class HTTPRouteRule(Spec):
    name: str | None = None
    matches: list[HTTPRouteMatch] = Field(default_factory=lambda: [HTTPRouteMatch()])
    filters: list[HTTPRouteFilter] = Field(default_factory=list)
    backend_refs: list[BackendRef] = Field(default_factory=list)
    timeouts: Timeouts | None = None
    retry: HTTPRetry | None = None
    fault: Fault | None = None


class HTTPRouteSpec(Spec):
    parent_refs: list[ParentRef] = Field(min_length=1)
    hostnames: list[str] = Field(default_factory=list)
    rules: list[HTTPRouteRule] = Field(default_factory=lambda: [HTTPRouteRule()], max_length=64)


class HTTPRoute(Document):
    KIND = "HTTPRoute"
    kind: Literal["HTTPRoute"] = "HTTPRoute"
    spec: HTTPRouteSpec


GrpcCode = Literal[
    "CANCELLED",
    "DEADLINE_EXCEEDED",
    "INTERNAL",
    "RESOURCE_EXHAUSTED",
    "UNAVAILABLE",
]


class GRPCMethodMatch(Spec):
    type: Literal["Exact", "RegularExpression"] = "Exact"
    service: str | None = None
    method: str | None = None

    @model_validator(mode="after")
    def _check(self) -> GRPCMethodMatch:
        if not self.service and not self.method:
            raise ValueError("set service, method or both")
        if self.type == "RegularExpression":
            for v in (self.service, self.method):
                if v:
                    _check_regex(v)
            # As rules.py _grpc_path composes them: `/(?:service)/(?:method)`.
            svc = f"(?:{self.service})" if self.service else "[^/]+"
            meth = f"(?:{self.method})" if self.method else "[^/]+"
            _check_derived(f"/{svc}/{meth}", "service and method")
        else:
            if self.service and not re.match(
                r"^[A-Za-z_][A-Za-z_0-9]*(\.[A-Za-z_][A-Za-z_0-9]*)*$", self.service
            ):
                raise ValueError(f"service: {self.service!r} is not a gRPC service name")
            if self.method and not re.match(r"^[A-Za-z_][A-Za-z_0-9]*$", self.method):
                raise ValueError(f"method: {self.method!r} is not a gRPC method name")
            if self.method and not self.service:
                _check_derived(f"/[^/]+/{re.escape(self.method)}", "method")
        return self


class GRPCRouteMatch(Spec):
    method: GRPCMethodMatch | None = None
    headers: list[HeaderMatch] = Field(default_factory=list)


def _default_grpc_retry_codes() -> list[GrpcCode]:
    return ["UNAVAILABLE"]


class GRPCRetry(Spec):
    """Trellis extension (GEP-1731 shape): retry on these gRPC status codes."""

    codes: list[GrpcCode] = Field(default_factory=lambda: _default_grpc_retry_codes())
    attempts: int = Field(default=1, ge=0, le=4)  # gRFC A44: at most 5 attempts in all
    backoff: Duration | None = None


class GRPCRouteFilter(Spec):
    type: Literal["RequestHeaderModifier", "ResponseHeaderModifier", "RequestMirror"]
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_mirror: RequestMirror | None = None

    @model_validator(mode="after")
    def _matches_type(self) -> GRPCRouteFilter:
        _require_filter_field(self, self.type)
        return self


class GRPCRouteRule(Spec):
    name: str | None = None
    matches: list[GRPCRouteMatch] = Field(default_factory=lambda: [GRPCRouteMatch()])
    filters: list[GRPCRouteFilter] = Field(default_factory=list)
    backend_refs: list[BackendRef] = Field(default_factory=list)
    timeouts: Timeouts | None = None
    retry: GRPCRetry | None = None
    fault: Fault | None = None


class GRPCRouteSpec(Spec):
    parent_refs: list[ParentRef] = Field(min_length=1)
    hostnames: list[str] = Field(default_factory=list)
    rules: list[GRPCRouteRule] = Field(default_factory=lambda: [GRPCRouteRule()], max_length=64)


class GRPCRoute(Document):
    KIND = "GRPCRoute"
    kind: Literal["GRPCRoute"] = "GRPCRoute"
    spec: GRPCRouteSpec
