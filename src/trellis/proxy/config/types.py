"""xDS type URLs and the filter names the proxy understands."""

from __future__ import annotations

LISTENER_TYPE = "type.googleapis.com/envoy.config.listener.v3.Listener"
ROUTE_TYPE = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
CLUSTER_TYPE = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINT_TYPE = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
ALL_TYPES = (LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE)
SHORT = {LISTENER_TYPE: "LDS", ROUTE_TYPE: "RDS", CLUSTER_TYPE: "CDS", ENDPOINT_TYPE: "EDS"}

HCM_FILTER = "envoy.filters.network.http_connection_manager"
ROUTER_FILTER = "envoy.filters.http.router"
FAULT_FILTER = "envoy.filters.http.fault"
RBAC_FILTER = "envoy.filters.http.rbac"
LOCAL_RATELIMIT_FILTER = "envoy.filters.http.local_ratelimit"

# The listener every sidecar asks for at start: what to do with hosts outside the
# registry (MeshConfig outboundTrafficPolicy), as Istio's virtual outbound listener.
OUTBOUND_DEFAULT_LISTENER = "trellis/outbound"
PASSTHROUGH_CLUSTER = "PassthroughCluster"
BLACKHOLE_CLUSTER = "BlackHoleCluster"

# The certificate provider instance every node's bootstrap names (gRFC A29): the proxy's
# own identity for sidecars, grpcio's file_watcher for proxyless apps.
CERTIFICATE_PROVIDER = "trellis"

# Tracing (HCM `tracing`): the one provider sidecars speak, and the envoy_grpc cluster name
# that means "the control plane this proxy is connected to" (its OTLP receiver).
OPENTELEMETRY_TRACER = "envoy.tracers.opentelemetry"
CONTROL_PLANE_CLUSTER = "trellis/control-plane"
