"""Decoding Envoy's local rate limit per-filter config into Route.rate_limit: which level
wins, which routes share a bucket, and the config errors (NACK reasons) for what the
sidecar cannot honour."""

from __future__ import annotations

from typing import Any

import pytest
from envoy.extensions.filters.http.local_ratelimit.v3 import (  # noqa: F401  (registers the type)
    local_rate_limit_pb2,
)
from tests.routing.routing_support import compile_doc, forward, only, route_error, vhost

from trellis.routing.ratelimit import TokenBucket

FILTER = "envoy.filters.http.local_ratelimit"
LRL = "type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit"
FILTER_CONFIG = "type.googleapis.com/envoy.config.route.v3.FilterConfig"
ALWAYS = {"default_value": {"numerator": 100, "denominator": "HUNDRED"}}


def config(tokens: int = 20, per: str = "1s", **extra: Any) -> dict[str, Any]:
    return {
        FILTER: {
            "@type": LRL,
            "stat_prefix": "http_local_rate_limiter",
            "token_bucket": {"max_tokens": tokens, "tokens_per_fill": tokens, "fill_interval": per},
            "filter_enabled": ALWAYS,
            "filter_enforced": ALWAYS,
            "enable_x_ratelimit_headers": "DRAFT_VERSION_03",
            **extra,
        }
    }


def limited(route: dict[str, Any], cfg: dict[str, Any]) -> dict[str, Any]:
    return {**route, "typed_per_filter_config": cfg}


def test_a_route_limit_is_a_token_bucket() -> None:
    route = only(limited(forward(), config(5, "0.5s")))
    bucket = route.rate_limit
    assert isinstance(bucket, TokenBucket)
    assert (bucket.max_tokens, bucket.tokens_per_fill, bucket.fill_interval) == (5, 5, 0.5)
    assert bucket.take(0.0) and only(forward()).rate_limit is None


def test_a_vhost_limit_is_one_bucket_for_all_its_routes_and_a_route_may_override() -> None:
    lifted = {FILTER: {"@type": FILTER_CONFIG, "disabled": True}}
    table = compile_doc(
        {
            "name": "rc",
            "virtual_hosts": [
                vhost(
                    forward({"prefix": "/a"}, name="a"),
                    forward({"prefix": "/b"}, name="b"),
                    limited(forward({"prefix": "/own"}, name="own"), config(3)),
                    limited(forward({"prefix": "/free"}, name="free"), lifted),
                    typed_per_filter_config=config(20),
                ),
                {"name": "other", "domains": ["other"], "routes": [forward(name="c")]},
            ],
            "typed_per_filter_config": config(50),
        }
    )
    a, b, own, free = table.virtual_hosts[0].routes
    assert a.rate_limit is b.rate_limit  # one bucket: the limit is per service
    assert isinstance(a.rate_limit, TokenBucket) and a.rate_limit.max_tokens == 20
    assert own.rate_limit is not None and own.rate_limit.max_tokens == 3
    assert free.rate_limit is None
    (c,) = table.virtual_hosts[1].routes
    assert c.rate_limit is not None and c.rate_limit.max_tokens == 50  # from the config
    # Taking from one route drains the bucket of the other.
    for _ in range(20):
        assert a.rate_limit.take(1.0)
    assert b.rate_limit is not None and not b.rate_limit.take(1.0)


def test_not_enabled_means_no_limit() -> None:
    cfg = config()
    del cfg[FILTER]["filter_enabled"]
    assert only(limited(forward(), cfg)).rate_limit is None


@pytest.mark.parametrize(
    ("change", "where", "reason"),
    [
        ({"status": {"code": "ServiceUnavailable"}}, "status", "only 429"),
        ({"filter_enforced": {}}, "filter_enforced", "shadow mode"),
        (
            {"filter_enabled": {"default_value": {"numerator": 50}}},
            "filter_enabled",
            "only 0% or 100%",
        ),
        (
            {"token_bucket": {"max_tokens": 5, "fill_interval": "0.010s"}},
            "token_bucket.fill_interval",
            "at least 50ms",
        ),
        (
            {"token_bucket": {"max_tokens": 0, "fill_interval": "1s"}},
            "token_bucket.max_tokens",
            "at least 1",
        ),
        ({"token_bucket": None}, "token_bucket", "needs a bucket"),
        ({"local_rate_limit_per_downstream_connection": True}, "local_rate_limit_per", ""),
        ({"descriptors": [{"entries": [{"key": "k", "value": "v"}]}]}, "descriptors", ""),
    ],
)
def test_what_the_sidecar_cannot_honour_is_a_config_error(
    change: dict[str, Any], where: str, reason: str
) -> None:
    cfg = config()
    for key, value in change.items():
        if value is None:
            del cfg[FILTER][key]
        else:
            cfg[FILTER][key] = value
    error = str(route_error(limited(forward(), cfg)))
    assert f"typed_per_filter_config[{FILTER}].{where}" in error and reason in error, error
    assert error.startswith("virtual_hosts[0].routes[0].")
