"""RateLimitPolicy → Envoy's local rate limit (`envoy.filters.http.local_ratelimit`).

The HTTP filter sits in every sidecar HCM, before the router, with no token
bucket of its own: it limits nothing until a route, virtual host or route
configuration carries a `typed_per_filter_config` for it (Envoy's per-route
model). A limit on a whole service is one such config on the virtual host
(its routes share one bucket: the sidecar builds one TokenBucket for all the
routes that inherit it); a limit on an HTTPRoute rule is one on each Envoy
route of that rule. `filter_enabled` and `filter_enforced` are 100% (Envoy's
defaults would be 0%: off), and the draft-03 `x-ratelimit-*` headers are on.
A bucket is `requests` tokens every `per`, holding `burst` (default
`requests`): `{max_tokens: burst, tokens_per_fill: requests, fill_interval: per}`.

Proxyless gRPC gets none of it (grpcio knows no such filter and would NACK).
"""

from __future__ import annotations

from envoy.config.core.v3 import base_pb2
from envoy.extensions.common.ratelimit.v3 import ratelimit_pb2
from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2 as lrl_pb2
from envoy.extensions.filters.network.http_connection_manager.v3 import (
    http_connection_manager_pb2 as hcm_pb2,
)
from envoy.type.v3 import percent_pb2, token_bucket_pb2
from google.protobuf import any_pb2

from trellis.control.translate import pb
from trellis.model.duration import parse_duration
from trellis.model.policies import LocalRateLimit

STAT_PREFIX = "http_local_rate_limiter"


def http_filter() -> hcm_pb2.HttpFilter:
    """The filter as the HCM lists it: no bucket, so it limits only where a route says."""
    config = lrl_pb2.LocalRateLimit(stat_prefix=STAT_PREFIX)
    return hcm_pb2.HttpFilter(name=pb.LOCAL_RATELIMIT_FILTER, typed_config=pb.pack(config))


def _always(key: str) -> base_pb2.RuntimeFractionalPercent:
    return base_pb2.RuntimeFractionalPercent(
        default_value=percent_pb2.FractionalPercent(
            numerator=100, denominator=percent_pb2.FractionalPercent.HUNDRED
        ),
        runtime_key=key,
    )


def local_rate_limit(limit: LocalRateLimit) -> lrl_pb2.LocalRateLimit:
    bucket = token_bucket_pb2.TokenBucket(
        max_tokens=limit.max_tokens, fill_interval=pb.duration(limit.per)
    )
    bucket.tokens_per_fill.value = limit.requests
    return lrl_pb2.LocalRateLimit(
        stat_prefix=STAT_PREFIX,
        token_bucket=bucket,
        filter_enabled=_always("local_rate_limit_enabled"),
        filter_enforced=_always("local_rate_limit_enforced"),
        enable_x_ratelimit_headers=ratelimit_pb2.DRAFT_VERSION_03,
    )


def per_filter_config(limit: LocalRateLimit) -> any_pb2.Any:
    return pb.pack(local_rate_limit(limit))


def describe(limit: LocalRateLimit) -> str:
    """`20 per 1s (burst 20)`, for `trellis describe`."""
    per = parse_duration(limit.per)
    return f"{limit.requests} per {per:g}s (burst {limit.max_tokens})"
