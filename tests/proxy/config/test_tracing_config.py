"""MeshConfig `tracing` → the HCM's `tracing` (control/translate/tracing.py) → the proxy's
TracingConfig (proxy/config/tracing.py), and what the proxy refuses (a NACK naming the
field and why)."""

from __future__ import annotations

import pytest
from envoy.config.core.v3 import base_pb2, grpc_service_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2, zipkin_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2
from google.protobuf import empty_pb2
from pydantic import ValidationError

from trellis.control.translate import pb
from trellis.control.translate.listeners import outbound_listener
from trellis.control.translate.tracing import hcm_tracing
from trellis.model.mesh_config import MeshConfigSpec, Tracing
from trellis.proxy.config.resources import ConfigError, decode_listener
from trellis.proxy.config.tracing import CONTROL_PLANE, TracingConfigError, decode_tracing


def tracing(**spec: object) -> Tracing:
    return MeshConfigSpec.model_validate({"tracing": spec}).tracing


def round_trip(setting: Tracing) -> object:
    manager = hcm_pb2.HttpConnectionManager()
    t = hcm_tracing(setting)
    if t is not None:
        manager.tracing.CopyFrom(t)
    return decode_tracing(manager, "l")


def test_default_is_one_percent_to_the_control_plane() -> None:
    config = round_trip(MeshConfigSpec().tracing)
    assert config is not None
    assert config.sampling == 1.0  # type: ignore[attr-defined]
    assert config.target == CONTROL_PLANE  # type: ignore[attr-defined]


def test_disabled_states_no_tracing() -> None:
    assert hcm_tracing(tracing(enabled=False)) is None
    assert round_trip(tracing(enabled=False)) is None


def test_grpc_collector_with_tls_and_headers() -> None:
    pem = _ca_pem()
    config = round_trip(
        tracing(
            sampling=25,
            otlp={
                "endpoint": "otel:4317",
                "headers": {"x-tenant": "a"},
                "tls": {"caCertificates": pem},
            },
        )
    )
    target = config.target  # type: ignore[attr-defined]
    assert config.sampling == 25  # type: ignore[attr-defined]
    assert (target.protocol, target.endpoint, target.tls) == ("grpc", "otel:4317", True)
    assert target.headers == (("x-tenant", "a"),)
    assert target.root_certs == pem.encode()


def test_http_collector() -> None:
    config = round_trip(
        tracing(otlp={"endpoint": "https://otel:4318/v1/traces", "protocol": "http/protobuf"})
    )
    target = config.target  # type: ignore[attr-defined]
    assert (target.protocol, target.endpoint, target.tls) == (
        "http",
        "https://otel:4318/v1/traces",
        True,
    )


def test_the_listener_carries_it_and_the_proxy_reads_it() -> None:
    listener = outbound_listener("web:80", "web:80", None, tracing(sampling=50))
    _, config = decode_listener(pb.pack(listener))
    assert config.tracing is not None and config.tracing.sampling == 50
    plain = outbound_listener("web:80", "web:80")
    assert decode_listener(pb.pack(plain))[1].tracing is None


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"sampling": 150}, "sampling"),
        ({"otlp": {"endpoint": "http://x:4317"}}, "HOST:PORT"),
        ({"otlp": {"endpoint": "x:99999"}}, "out of range"),
        ({"otlp": {"endpoint": "x:1", "protocol": "http/protobuf"}}, "http(s) URL"),
        ({"otlp": {"endpoint": "ftp://x/", "protocol": "http/protobuf"}}, "http(s) URL"),
        ({"otlp": {"endpoint": "x:1", "headers": {"Upper": "v"}}}, "header name"),
        ({"otlp": {"endpoint": "x:1", "headers": {"a": "line\nbreak"}}}, "printable"),
        ({"otlp": {"endpoint": "x:1", "tls": {"caCertificates": "junk"}}}, "PEM"),
        (
            {
                "otlp": {
                    "endpoint": "https://x/v1/traces",
                    "protocol": "http/protobuf",
                    "tls": {},
                }
            },
            "scheme",
        ),
        ({"otlp": {"endpoint": "x:1", "other": 1}}, "other"),
    ],
)
def test_invalid_mesh_config_is_refused_with_the_reason(
    spec: dict[str, object], field: str
) -> None:
    with pytest.raises(ValidationError) as info:
        MeshConfigSpec.model_validate({"tracing": spec})
    assert field in str(info.value)


def _hcm(tracing: hcm_pb2.HttpConnectionManager.Tracing) -> hcm_pb2.HttpConnectionManager:
    return hcm_pb2.HttpConnectionManager(tracing=tracing)


def _otel(
    config: opentelemetry_pb2.OpenTelemetryConfig, **kw: object
) -> hcm_pb2.HttpConnectionManager:
    return _hcm(
        hcm_pb2.HttpConnectionManager.Tracing(
            provider=http_tracer_pb2.Tracing.Http(
                name="envoy.tracers.opentelemetry", typed_config=pb.pack(config)
            ),
            **kw,  # type: ignore[arg-type]
        )
    )


def _envoy_grpc(cluster: str) -> opentelemetry_pb2.OpenTelemetryConfig:
    config = opentelemetry_pb2.OpenTelemetryConfig()
    config.grpc_service.envoy_grpc.cluster_name = cluster
    return config


GoogleGrpc = grpc_service_pb2.GrpcService.GoogleGrpc


@pytest.mark.parametrize(
    ("manager", "reason"),
    [
        (
            _hcm(
                hcm_pb2.HttpConnectionManager.Tracing(
                    provider=http_tracer_pb2.Tracing.Http(
                        name="envoy.tracers.zipkin", typed_config=pb.pack(zipkin_pb2.ZipkinConfig())
                    )
                )
            ),
            "tracing.provider: only envoy.tracers.opentelemetry",
        ),
        (_hcm(hcm_pb2.HttpConnectionManager.Tracing()), "tracing.provider: required"),
        (_otel(_envoy_grpc("otel-collector")), "envoy_grpc.cluster_name: only"),
        (_otel(opentelemetry_pb2.OpenTelemetryConfig()), "neither grpc_service nor http_service"),
        (
            _otel(
                _envoy_grpc("trellis/control-plane"), random_sampling=percent_pb2.Percent(value=120)
            ),
            "random_sampling: 120",
        ),
        (
            _otel(
                _envoy_grpc("trellis/control-plane"), overall_sampling=percent_pb2.Percent(value=50)
            ),
            "overall_sampling",
        ),
        (
            _otel(
                opentelemetry_pb2.OpenTelemetryConfig(
                    grpc_service=grpc_service_pb2.GrpcService(
                        google_grpc=GoogleGrpc(target_uri="no-port")
                    )
                )
            ),
            "target_uri: 'no-port' is not HOST:PORT",
        ),
        (
            _otel(
                opentelemetry_pb2.OpenTelemetryConfig(
                    grpc_service=grpc_service_pb2.GrpcService(
                        google_grpc=GoogleGrpc(
                            target_uri="x:1",
                            channel_credentials=GoogleGrpc.ChannelCredentials(
                                google_default=empty_pb2.Empty()
                            ),
                        )
                    )
                )
            ),
            "only ssl_credentials",
        ),
        (
            _otel(
                opentelemetry_pb2.OpenTelemetryConfig(
                    grpc_service=grpc_service_pb2.GrpcService(
                        google_grpc=GoogleGrpc(target_uri="x:1"),
                        initial_metadata=[base_pb2.HeaderValue(key="Bad Key", value="v")],
                    )
                )
            ),
            "initial_metadata[0].key",
        ),
    ],
)
def test_what_the_proxy_cannot_honour_is_refused(
    manager: hcm_pb2.HttpConnectionManager, reason: str
) -> None:
    with pytest.raises(TracingConfigError) as info:
        decode_tracing(manager, "listener")
    assert reason in str(info.value)


def test_a_refused_tracing_nacks_the_listener() -> None:
    listener = outbound_listener("web:80", "web:80")
    manager = hcm_pb2.HttpConnectionManager()
    listener.api_listener.api_listener.Unpack(manager)
    manager.tracing.CopyFrom(
        hcm_pb2.HttpConnectionManager.Tracing(
            provider=http_tracer_pb2.Tracing.Http(name="envoy.tracers.opentelemetry")
        )
    )
    listener.api_listener.api_listener.CopyFrom(pb.pack(manager))
    with pytest.raises(ConfigError) as info:
        decode_listener(pb.pack(listener))
    assert "web:80: api_listener.tracing.provider" in str(info.value)


def _ca_pem() -> str:
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test ca")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()
