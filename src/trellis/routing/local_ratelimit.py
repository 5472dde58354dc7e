"""Decode Envoy's local rate limit (`envoy.filters.http.local_ratelimit`) per-filter config
into the TokenBucket (ratelimit.py) of the routes it covers. Config time only: never on the
request path.

Where the config sits says what shares a bucket, as in Envoy: one on a virtual host (or
the route configuration) is one TokenBucket object shared by every route that inherits it
(a limit per destination service); one on a route is that route's own bucket. The most
specific level wins; a `FilterConfig` with `disabled: true` lifts an inherited limit.
Only what the proxy honours is accepted: a token bucket, enabled and enforced for 100% of
requests (or 0%: no limit), status 429, draft-03 headers or none; descriptors, shadow
mode (enforced below enabled), per-connection buckets and the like are config errors.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.http.local_ratelimit.v3 import local_rate_limit_pb2

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.fault import DISABLED, Disabled
from trellis.routing.pb import check_fields, fraction, per_filter_config, seconds, unpack
from trellis.routing.ratelimit import TokenBucket
from trellis.wire import LOCAL_RATELIMIT_FILTER

_APPLIED = (
    "stat_prefix",
    "status",
    "token_bucket",
    "filter_enabled",
    "filter_enforced",
    "enable_x_ratelimit_headers",
)
_IGNORED = ("response_headers_to_add", "request_headers_to_add_when_not_enforced", "stage")
MIN_FILL_INTERVAL = 0.05  # Envoy's: a shorter fill_interval is refused

Limit = TokenBucket | Disabled | None


def _share(runtime: Any, path: str) -> float:
    check_fields(runtime, path, applied=("default_value", "runtime_key"))
    return fraction(runtime.default_value, field(path, "default_value"))


def compile_local_rate_limit(packed: Any, path: str) -> Limit:
    """The packed per-filter config at `path`: a new TokenBucket, DISABLED (a FilterConfig
    that turns the filter off here), or None (enabled for no request: no limit)."""
    unwrapped = per_filter_config(packed, path)
    if unwrapped is None:
        return DISABLED
    packed, path = unwrapped
    config = local_rate_limit_pb2.LocalRateLimit()
    unpack(packed, config, path)
    check_fields(config, path, applied=_APPLIED, ignored=_IGNORED)
    if config.HasField("status") and config.status.code not in (0, 429):
        raise RouteConfigError(field(path, "status"), "only 429 is supported")
    if config.enable_x_ratelimit_headers not in (0, 1):  # OFF, DRAFT_VERSION_03
        raise RouteConfigError(field(path, "enable_x_ratelimit_headers"), "unknown version")
    # Envoy: unset filter_enabled / filter_enforced mean 0% (the filter does nothing).
    enabled = _share(config.filter_enabled, field(path, "filter_enabled"))
    enforced = _share(config.filter_enforced, field(path, "filter_enforced"))
    for name, share in (("filter_enabled", enabled), ("filter_enforced", enforced)):
        if share not in (0.0, 1.0):
            raise RouteConfigError(field(path, name), "only 0% or 100% is supported")
    if enabled == 0.0:
        return None
    if enforced == 0.0:
        raise RouteConfigError(
            field(path, "filter_enforced"), "shadow mode (enabled, not enforced) is not supported"
        )
    if not config.HasField("token_bucket"):
        raise RouteConfigError(field(path, "token_bucket"), "an enabled limit needs a bucket")
    where = field(path, "token_bucket")
    bucket = config.token_bucket
    check_fields(bucket, where, applied=("max_tokens", "tokens_per_fill", "fill_interval"))
    interval = seconds(bucket.fill_interval, field(where, "fill_interval"))
    if interval < MIN_FILL_INTERVAL:
        raise RouteConfigError(field(where, "fill_interval"), "must be at least 50ms")
    if bucket.max_tokens < 1:
        raise RouteConfigError(field(where, "max_tokens"), "must be at least 1")
    per_fill = bucket.tokens_per_fill.value if bucket.HasField("tokens_per_fill") else 1
    if per_fill < 1:
        raise RouteConfigError(field(where, "tokens_per_fill"), "must be at least 1")
    return TokenBucket(bucket.max_tokens, per_fill, interval)


def per_filter_rate_limit(message: Any, path: str, inherited: Limit) -> Limit:
    """The limit of `message` (route, vhost or config), else what it inherits (the same
    object: inherited buckets are shared)."""
    configs = message.typed_per_filter_config
    if LOCAL_RATELIMIT_FILTER not in configs:
        return inherited
    return compile_local_rate_limit(
        configs[LOCAL_RATELIMIT_FILTER],
        field(path, f"typed_per_filter_config[{LOCAL_RATELIMIT_FILTER}]"),
    )


def filter_level(packed: Any, path: str) -> None:
    """The HCM's own config of the filter: a listener-wide bucket is not supported (our
    control plane puts limits on virtual hosts and routes); an empty one is fine."""
    config = local_rate_limit_pb2.LocalRateLimit()
    unpack(packed, config, path)
    check_fields(config, path, applied=_APPLIED, ignored=_IGNORED)
    if config.HasField("token_bucket"):
        raise RouteConfigError(
            field(path, "token_bucket"),
            "a listener-wide bucket is not supported: set it per virtual host or route",
        )
