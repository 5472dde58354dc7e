"""MeshConfig: the mesh-wide singleton (cluster-scoped, named `mesh`)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from trellis.model.base import Document, ObjectMeta, Spec
from trellis.model.duration import Duration
from trellis.model.routes import HTTPRetry, Timeouts

MESH_CONFIG_NAME = "mesh"


class MTLS(Spec):
    mode: Literal["STRICT", "PERMISSIVE"] = "STRICT"


class OutboundTrafficPolicy(Spec):
    mode: Literal["ALLOW_ANY", "REGISTRY_ONLY"] = "ALLOW_ANY"


class OtlpTls(Spec):
    """TLS to the collector: the system's roots, or `caCertificates` (PEM) when given."""

    ca_certificates: str | None = None

    @field_validator("ca_certificates")
    @classmethod
    def _pem(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import ssl

        try:
            ssl.create_default_context(cadata=v)
        except (ssl.SSLError, ValueError) as e:
            raise ValueError(f"not PEM CA certificates: {e}") from None
        return v


_HEADER_NAME = re.compile(r"^[a-z0-9][a-z0-9\-_.]{0,63}$")


class Otlp(Spec):
    """Where sidecars send spans (OTLP protobuf). `grpc`: `endpoint` is HOST:PORT;
    `http/protobuf`: an http(s) URL (usually ending /v1/traces). No `otlp`: the control
    plane's built-in receiver."""

    endpoint: str
    protocol: Literal["grpc", "http/protobuf"] = "grpc"
    headers: dict[str, str] = Field(default_factory=dict)
    tls: OtlpTls | None = None  # grpc: TLS on (http: the URL's scheme decides)

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 32:
            raise ValueError("at most 32 headers")
        for key, value in v.items():
            if not _HEADER_NAME.match(key):
                raise ValueError(f"{key!r} is not a lower-case header name")
            if not value.isprintable() or len(value) > 4096:
                raise ValueError(f"the value of {key!r} is not printable text (or too long)")
        return v

    @model_validator(mode="after")
    def _endpoint(self) -> Otlp:
        endpoint = self.endpoint
        if self.protocol == "grpc":
            host, sep, port = endpoint.rpartition(":")
            if "/" in endpoint or not sep or not host or not port.isdigit():
                raise ValueError(f"endpoint: {endpoint!r} is not HOST:PORT (protocol grpc)")
            if not 0 < int(port) < 65536:
                raise ValueError(f"endpoint: port {port} out of range")
        else:
            scheme, sep, rest = endpoint.partition("://")
            if scheme not in ("http", "https") or not sep or not rest or rest.startswith("/"):
                raise ValueError(
                    f"endpoint: {endpoint!r} is not an http(s) URL (protocol http/protobuf)"
                )
            if self.tls is not None:
                raise ValueError("tls: for http/protobuf, the URL's scheme says (https)")
        return self


class Tracing(Spec):
    """Sidecar tracing (docs/design/data-plane.md, Tracing). `enabled: false` turns it off
    (requests pass untouched: no context read or written)."""

    enabled: bool = True
    sampling: float = Field(default=1.0, ge=0, le=100)  # percent of requests
    otlp: Otlp | None = None  # None: the control plane's built-in receiver


class RouteDefaults(Spec):
    timeouts: Timeouts | None = None
    retry: HTTPRetry | None = None


class PathNormalization(Spec):
    """How sidecars normalize request paths before routing and authorization, and what
    they forward: Istio's `meshConfig.pathNormalization` levels (NONE, BASE,
    MERGE_SLASHES, DECODE_AND_MERGE_SLASHES). Unlike Istio, BASE and MERGE_SLASHES
    refuse `%2F` and `%5C` (400) unless `escapedSlashes: KEEP`."""

    normalization: Literal["NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES"] = (
        "MERGE_SLASHES"
    )
    escaped_slashes: Literal["REJECT", "KEEP"] | None = None  # None: REJECT

    @model_validator(mode="after")
    def _escaped_slashes(self) -> PathNormalization:
        if self.escaped_slashes is not None and self.normalization not in (
            "BASE",
            "MERGE_SLASHES",
        ):
            raise ValueError(
                f"escapedSlashes applies to BASE and MERGE_SLASHES only: {self.normalization} "
                + ("decodes them" if self.normalization != "NONE" else "leaves paths as sent")
            )
        return self


class MeshConfigSpec(Spec):
    trust_domain: str = "trellis.local"
    mtls: MTLS = Field(default_factory=MTLS)
    certificate_ttl: Duration = Field(default="24h", alias="certificateTTL")
    defaults: RouteDefaults = Field(default_factory=RouteDefaults)
    outbound_traffic_policy: OutboundTrafficPolicy = Field(default_factory=OutboundTrafficPolicy)
    tracing: Tracing = Field(default_factory=Tracing)
    path_normalization: PathNormalization = Field(default_factory=PathNormalization)

    @field_validator("trust_domain")
    @classmethod
    def _trust_domain(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", v):
            raise ValueError(f"{v!r} is not a valid trust domain (lower-case DNS name)")
        return v


class MeshConfig(Document):
    KIND = "MeshConfig"
    CLUSTER_SCOPED = True
    kind: Literal["MeshConfig"] = "MeshConfig"
    metadata: ObjectMeta = Field(default_factory=lambda: ObjectMeta(name=MESH_CONFIG_NAME))
    spec: MeshConfigSpec = Field(default_factory=MeshConfigSpec)

    @field_validator("metadata")
    @classmethod
    def _singleton(cls, v: ObjectMeta) -> ObjectMeta:
        if v.name != MESH_CONFIG_NAME:
            raise ValueError(f"name: the MeshConfig is a singleton named {MESH_CONFIG_NAME!r}")
        return v.model_copy(update={"namespace": "default"})
