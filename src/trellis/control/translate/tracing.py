"""MeshConfig `tracing` → the HttpConnectionManager's `tracing` (Envoy's shape).

`random_sampling` = `sampling` (percent); the provider is
`envoy.tracers.opentelemetry` with an OpenTelemetryConfig whose service is:
- no `otlp`: `grpc_service.envoy_grpc.cluster_name: trellis/control-plane`, the
  control plane the proxy holds its ADS stream with (its built-in receiver, same
  credentials);
- `otlp.protocol: grpc`: `grpc_service.google_grpc` (`target_uri`, ssl credentials
  with the inline CA when `tls` is set, `headers` as `initial_metadata`);
- `otlp.protocol: http/protobuf`: `http_service` (`http_uri`, headers as
  `request_headers_to_add`).
`enabled: false` states no tracing at all. The proxy side is
trellis/proxy/config/tracing.py, which refuses what it cannot honour.
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2, grpc_service_pb2, http_service_pb2, http_uri_pb2
from envoy.config.trace.v3 import http_tracer_pb2, opentelemetry_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2

from trellis.control.translate import pb
from trellis.model.mesh_config import Tracing
from trellis.wire import CONTROL_PLANE_CLUSTER, OPENTELEMETRY_TRACER

GoogleGrpc = grpc_service_pb2.GrpcService.GoogleGrpc


def hcm_tracing(setting: Tracing | None) -> hcm_pb2.HttpConnectionManager.Tracing | None:
    if setting is None or not setting.enabled:
        return None
    config = opentelemetry_pb2.OpenTelemetryConfig()
    otlp = setting.otlp
    if otlp is None:
        config.grpc_service.envoy_grpc.cluster_name = CONTROL_PLANE_CLUSTER
    elif otlp.protocol == "grpc":
        google = GoogleGrpc(target_uri=otlp.endpoint, stat_prefix="otlp")
        if otlp.tls is not None:
            ssl = GoogleGrpc.SslCredentials()
            if otlp.tls.ca_certificates:
                ssl.root_certs.inline_string = otlp.tls.ca_certificates
            google.channel_credentials.ssl_credentials.CopyFrom(ssl)
        config.grpc_service.google_grpc.CopyFrom(google)
        for key, value in sorted(otlp.headers.items()):
            config.grpc_service.initial_metadata.append(base_pb2.HeaderValue(key=key, value=value))
    else:
        config.http_service.CopyFrom(
            http_service_pb2.HttpService(
                http_uri=http_uri_pb2.HttpUri(
                    uri=otlp.endpoint, cluster="otlp", timeout=pb.seconds(5)
                ),
                request_headers_to_add=[
                    base_pb2.HeaderValueOption(header=base_pb2.HeaderValue(key=k, value=v))
                    for k, v in sorted(otlp.headers.items())
                ],
            )
        )
    return hcm_pb2.HttpConnectionManager.Tracing(
        random_sampling=percent_pb2.Percent(value=setting.sampling),
        provider=http_tracer_pb2.Tracing.Http(
            name=OPENTELEMETRY_TRACER, typed_config=pb.pack(config)
        ),
    )
