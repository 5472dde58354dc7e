"""Small protobuf helpers shared by the builders: Any, Duration, percentages, config sources.

Only message plumbing lives here; no mesh semantics.
"""

from __future__ import annotations

from envoy.config.core.v3 import config_source_pb2
from envoy.type.v3 import percent_pb2
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message

from trellis.model.duration import parse_duration
from trellis.wire import FAULT_FILTER as FAULT_FILTER
from trellis.wire import HCM_FILTER as HCM_FILTER
from trellis.wire import LOCAL_RATELIMIT_FILTER as LOCAL_RATELIMIT_FILTER
from trellis.wire import RBAC_FILTER as RBAC_FILTER
from trellis.wire import ROUTER_FILTER as ROUTER_FILTER


def pack(message: Message) -> any_pb2.Any:
    """Deterministic bytes (map entries sorted), so equal configs get equal content versions."""
    out = any_pb2.Any()
    out.Pack(message, deterministic=True)
    return out


def seconds(value: float) -> duration_pb2.Duration:
    out = duration_pb2.Duration()
    out.FromNanoseconds(round(value * 1e9))
    return out


def duration(text: str) -> duration_pb2.Duration:
    """A GEP-2257 duration (`1m30s`) as a protobuf Duration."""
    return seconds(parse_duration(text))


def ads() -> config_source_pb2.ConfigSource:
    """`{ads: {}, resource_api_version: V3}`: the only config source grpcio accepts."""
    return config_source_pb2.ConfigSource(
        ads=config_source_pb2.AggregatedConfigSource(),
        resource_api_version=config_source_pb2.ApiVersion.V3,
    )


def per_million(percent: float) -> percent_pb2.FractionalPercent:
    return percent_pb2.FractionalPercent(
        numerator=round(percent * 10_000),
        denominator=percent_pb2.FractionalPercent.DenominatorType.MILLION,
    )
