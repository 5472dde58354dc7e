"""xDS type URLs and the filter names the proxy understands.

Every value is the wire contract's (`trellis.wire`, shared with the control plane),
named here for the proxy's config modules.
"""

from __future__ import annotations

from trellis.wire import BLACKHOLE_CLUSTER as BLACKHOLE_CLUSTER
from trellis.wire import CERTIFICATE_PROVIDER as CERTIFICATE_PROVIDER
from trellis.wire import CLUSTER_TYPE as CLUSTER_TYPE
from trellis.wire import CONTROL_PLANE_CLUSTER as CONTROL_PLANE_CLUSTER
from trellis.wire import ENDPOINT_TYPE as ENDPOINT_TYPE
from trellis.wire import FAULT_FILTER as FAULT_FILTER
from trellis.wire import HCM_FILTER as HCM_FILTER
from trellis.wire import LISTENER_TYPE as LISTENER_TYPE
from trellis.wire import LOCAL_RATELIMIT_FILTER as LOCAL_RATELIMIT_FILTER
from trellis.wire import OPENTELEMETRY_TRACER as OPENTELEMETRY_TRACER
from trellis.wire import OUTBOUND_DEFAULT_LISTENER as OUTBOUND_DEFAULT_LISTENER
from trellis.wire import PASSTHROUGH_CLUSTER as PASSTHROUGH_CLUSTER
from trellis.wire import RBAC_FILTER as RBAC_FILTER
from trellis.wire import ROUTE_TYPE as ROUTE_TYPE
from trellis.wire import ROUTER_FILTER as ROUTER_FILTER
from trellis.wire import SHORT_NAMES

ALL_TYPES = (LISTENER_TYPE, ROUTE_TYPE, CLUSTER_TYPE, ENDPOINT_TYPE)
SHORT = SHORT_NAMES  # LDS, RDS, CDS, EDS
