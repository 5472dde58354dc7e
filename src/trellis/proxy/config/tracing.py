"""The HttpConnectionManager's `tracing` → the proxy's TracingConfig, or a ConfigError (NACK).

What the proxy honours, Envoy's way:
- `random_sampling` (percent, 0-100; unset: 100 as in Envoy);
- `provider`: `envoy.tracers.opentelemetry` with an `OpenTelemetryConfig`:
  - `grpc_service.envoy_grpc.cluster_name: trellis/control-plane`: the control
    plane this proxy holds its ADS stream with, over the same credentials (its
    built-in OTLP receiver), the default;
  - `grpc_service.google_grpc`: `target_uri` HOST:PORT, `channel_credentials`
    none (plaintext) or `ssl_credentials` (optional `root_certs` inline), and
    `initial_metadata` as request headers;
  - `http_service`: `http_uri.uri` http(s)://..., `request_headers_to_add`;
  - `service_name`: the resource's service.name (else the workload's canonical
    service).
Refused with the field and why: another provider, `sampler`, `custom_tags`,
`overall_sampling` below 100, an envoy_grpc cluster other than the control
plane's, other credentials, a URI or target that is not one.

Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

from envoy.config.trace.v3 import opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)

from trellis.wire import CONTROL_PLANE_CLUSTER, OPENTELEMETRY_TRACER


class TracingConfigError(ValueError):
    """`field: reason` (resources.py makes it the listener's ConfigError)."""


ConfigError = TracingConfigError
_MAX_HEADERS = 32


@dataclass(frozen=True, slots=True)
class OtlpTarget:
    """Where spans go: the control plane (`protocol` "control-plane"), a gRPC target, or
    an OTLP/HTTP URL."""

    protocol: str  # "control-plane" | "grpc" | "http"
    endpoint: str = ""  # grpc: HOST:PORT; http: the URL
    headers: tuple[tuple[str, str], ...] = ()
    tls: bool = False  # grpc: TLS (http: the URL's scheme says)
    root_certs: bytes = b""  # grpc TLS: trust these (else the system's)


CONTROL_PLANE = OtlpTarget("control-plane")


@dataclass(frozen=True, slots=True)
class TracingConfig:
    sampling: float  # percent
    target: OtlpTarget
    service_name: str = ""


def decode_tracing(hcm: hcm_pb2.HttpConnectionManager, where: str) -> TracingConfig | None:
    """None when the HCM states no tracing (the proxy then traces nothing)."""
    if not hcm.HasField("tracing"):
        return None
    tracing = hcm.tracing
    where = f"{where}.tracing"
    sampling = tracing.random_sampling.value if tracing.HasField("random_sampling") else 100.0
    if not 0.0 <= sampling <= 100.0:
        raise ConfigError(f"{where}.random_sampling: {sampling} is not a percentage (0-100)")
    if tracing.HasField("overall_sampling") and tracing.overall_sampling.value < 100.0:
        raise ConfigError(f"{where}.overall_sampling: not supported (only 100)")
    if tracing.custom_tags:
        raise ConfigError(f"{where}.custom_tags: not supported")
    if not tracing.HasField("provider"):
        raise ConfigError(f"{where}.provider: required (envoy.tracers.opentelemetry)")
    provider = tracing.provider
    config = opentelemetry_pb2.OpenTelemetryConfig()
    if provider.name != OPENTELEMETRY_TRACER or not provider.typed_config.Unpack(config):
        raise ConfigError(
            f"{where}.provider: only {OPENTELEMETRY_TRACER} with an OpenTelemetryConfig is "
            f"supported, not {provider.name!r} ({provider.typed_config.TypeName() or 'empty'})"
        )
    where = f"{where}.provider.typed_config"
    if config.HasField("sampler"):
        raise ConfigError(f"{where}.sampler: not supported (use random_sampling)")
    if config.resource_detectors:
        raise ConfigError(f"{where}.resource_detectors: not supported")
    if config.HasField("grpc_service"):
        target = _grpc_target(config, f"{where}.grpc_service")
    elif config.HasField("http_service"):
        target = _http_target(config, f"{where}.http_service")
    else:
        raise ConfigError(f"{where}: neither grpc_service nor http_service")
    return TracingConfig(sampling, target, config.service_name)


def _headers(pairs: list[tuple[str, str]], where: str) -> tuple[tuple[str, str], ...]:
    if len(pairs) > _MAX_HEADERS:
        raise ConfigError(f"{where}: at most {_MAX_HEADERS} headers")
    for i, (key, value) in enumerate(pairs):
        if not key or key != key.lower() or not all(c.isalnum() or c in "-_." for c in key):
            raise ConfigError(f"{where}[{i}].key: {key!r} is not a lower-case header name")
        if not value.isprintable():
            raise ConfigError(f"{where}[{i}].value: not printable text")
    return tuple(pairs)


def _grpc_target(config: opentelemetry_pb2.OpenTelemetryConfig, where: str) -> OtlpTarget:
    service = config.grpc_service
    if service.HasField("envoy_grpc"):
        cluster = service.envoy_grpc.cluster_name
        if cluster != CONTROL_PLANE_CLUSTER:
            raise ConfigError(
                f"{where}.envoy_grpc.cluster_name: only {CONTROL_PLANE_CLUSTER!r} (the "
                f"control plane), not {cluster!r}"
            )
        if service.initial_metadata:
            raise ConfigError(f"{where}.initial_metadata: not with the control plane")
        return CONTROL_PLANE
    if not service.HasField("google_grpc"):
        raise ConfigError(f"{where}: neither envoy_grpc nor google_grpc")
    google = service.google_grpc
    uri = google.target_uri
    host, sep, port = uri.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{where}.google_grpc.target_uri: {uri!r} is not HOST:PORT")
    if google.call_credentials:
        raise ConfigError(f"{where}.google_grpc.call_credentials: not supported")
    tls = False
    roots = b""
    if google.HasField("channel_credentials"):
        creds = google.channel_credentials
        if not creds.HasField("ssl_credentials"):
            raise ConfigError(
                f"{where}.google_grpc.channel_credentials: only ssl_credentials is supported"
            )
        ssl = creds.ssl_credentials
        if ssl.HasField("private_key") or ssl.HasField("cert_chain"):
            raise ConfigError(
                f"{where}.google_grpc.channel_credentials.ssl_credentials: client "
                "certificates are not supported"
            )
        tls = True
        if ssl.HasField("root_certs"):
            if ssl.root_certs.WhichOneof("specifier") != "inline_string":
                raise ConfigError(
                    f"{where}.google_grpc.channel_credentials.ssl_credentials.root_certs: "
                    "only inline_string"
                )
            roots = ssl.root_certs.inline_string.encode()
    headers = _headers(
        [(h.key, h.value) for h in service.initial_metadata], f"{where}.initial_metadata"
    )
    return OtlpTarget("grpc", uri, headers, tls, roots)


def _http_target(config: opentelemetry_pb2.OpenTelemetryConfig, where: str) -> OtlpTarget:
    service = config.http_service
    uri = service.http_uri.uri
    scheme, sep, rest = uri.partition("://")
    if scheme not in ("http", "https") or not sep or not rest or rest.startswith("/"):
        raise ConfigError(f"{where}.http_uri.uri: {uri!r} is not an http(s) URL")
    pairs = [(h.header.key, h.header.value) for h in service.request_headers_to_add]
    headers = _headers(pairs, f"{where}.request_headers_to_add")
    return OtlpTarget("http", uri, headers, scheme == "https")
