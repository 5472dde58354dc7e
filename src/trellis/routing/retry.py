"""Retry policy: RetryPolicy → `RetryPolicy` with Envoy's decisions as pure methods.

Owns which outcomes are retriable (Envoy's RetryStateImpl):
- a response status: `5xx` any 5xx; `gateway-error` 502/503/504;
  `retriable-4xx` 409; `retriable-status-codes` the listed codes;
- a gRPC status (from `grpc-status`): `cancelled` 1, `deadline-exceeded` 4,
  `resource-exhausted` 8, `internal` 13, `unavailable` 14;
- a reset: `connect-failure` for connection failures, `refused-stream` for
  refused streams, `reset-before-request` before any byte went upstream,
  `reset` always — and `5xx` / `gateway-error` count any reset as a 5xx;
  a per-try timeout is a reset too.
Defaults as in Envoy: `num_retries` 1 when unset; backoff base 25 ms, max 10x
the base. `rate_limited_retry_back_off` with a `retry-after` SECONDS reset header
sets `retry_after_max` (its max_interval). Whether non-idempotent requests are
retried is the route's (its trellis metadata, route.py). Unknown `retry_on` names
are config errors. How many attempts remain, budgets and timers belong to the
proxy's retry layer, not here.
"""

from __future__ import annotations

from typing import Any

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.pb import check_fields, positive_seconds, seconds

DEFAULT_BACKOFF_BASE = 0.025
GRPC_CODES = {
    "cancelled": 1,
    "deadline-exceeded": 4,
    "resource-exhausted": 8,
    "internal": 13,
    "unavailable": 14,
}
HTTP_CONDITIONS = frozenset(
    {
        "5xx",
        "gateway-error",
        "reset",
        "reset-before-request",
        "connect-failure",
        "envoy-ratelimited",
        "retriable-4xx",
        "refused-stream",
        "retriable-status-codes",
        "retriable-headers",
        "http3-post-connect-failure",
    }
)
KNOWN_CONDITIONS = HTTP_CONDITIONS | frozenset(GRPC_CODES)
_RESET_AS_5XX = frozenset({"5xx", "gateway-error", "reset"})


class RetryPolicy:
    __slots__ = (
        "_grpc",
        "backoff_base",
        "backoff_max",
        "non_idempotent",
        "num_retries",
        "per_try_timeout",
        "retriable_status_codes",
        "retry_after_max",
        "retry_on",
    )

    def __init__(
        self,
        retry_on: frozenset[str] = frozenset(),
        num_retries: int = 1,
        per_try_timeout: float | None = None,
        retriable_status_codes: frozenset[int] = frozenset(),
        backoff_base: float = DEFAULT_BACKOFF_BASE,
        backoff_max: float | None = None,
        non_idempotent: bool = False,
        retry_after_max: float = 0.0,
    ) -> None:
        self.retry_on = retry_on
        self.num_retries = num_retries
        self.per_try_timeout = per_try_timeout
        self.retriable_status_codes = retriable_status_codes
        self.backoff_base = backoff_base
        self.backoff_max = backoff_base * 10 if backoff_max is None else backoff_max
        # The route opts in to retrying non-idempotent methods on a status (safe retries
        # are the default: only idempotent requests are sent again once a byte may have
        # reached the upstream).
        self.non_idempotent = non_idempotent
        # Honour a response's Retry-After (seconds) up to this many seconds; 0: ignore it.
        self.retry_after_max = retry_after_max
        self._grpc = frozenset(GRPC_CODES[c] for c in retry_on if c in GRPC_CODES)

    def should_retry_status(self, status: int) -> bool:
        """Whether an upstream response with HTTP `status` is retried."""
        on = self.retry_on
        return (
            ("5xx" in on and 500 <= status <= 599)
            or ("gateway-error" in on and status in (502, 503, 504))
            or ("retriable-4xx" in on and status == 409)
            or ("retriable-status-codes" in on and status in self.retriable_status_codes)
        )

    def should_retry_grpc(self, grpc_status: int) -> bool:
        """Whether a response carrying `grpc-status: grpc_status` is retried."""
        return grpc_status in self._grpc

    def should_retry_reset(
        self, *, connect_failure: bool = False, refused_stream: bool = False, sent: bool = True
    ) -> bool:
        """Whether an upstream reset is retried.

        `connect_failure`: the connection could not be made (so nothing was
        sent); `refused_stream`: the peer refused the stream; `sent`: request
        bytes already went upstream.
        """
        on = self.retry_on
        return (
            (connect_failure and "connect-failure" in on)
            or ((connect_failure or not sent) and "reset-before-request" in on)
            or not on.isdisjoint(_RESET_AS_5XX)
            or (refused_stream and "refused-stream" in on)
        )

    def should_retry_per_try_timeout(self) -> bool:
        """A per-try timeout resets the attempt: retried like a reset after sending."""
        return self.should_retry_reset()

    def __repr__(self) -> str:
        return (
            f"RetryPolicy(retry_on={sorted(self.retry_on)}, num_retries={self.num_retries}, "
            f"per_try_timeout={self.per_try_timeout})"
        )


_APPLIED = (
    "retry_on",
    "num_retries",
    "per_try_timeout",
    "retriable_status_codes",
    "retry_back_off",
    "rate_limited_retry_back_off",
)
RETRY_AFTER = "retry-after"
DEFAULT_RETRY_AFTER_MAX = 300.0  # Envoy's default max_interval
_SECONDS_FORMAT = 0  # envoy.config.route.v3.RetryPolicy.ResetHeaderFormat.SECONDS
# Tuning that changes no retry decision this layer makes (host selection, idle timers, ...).
_IGNORED = (
    "per_try_idle_timeout",
    "retry_priority",
    "retry_host_predicate",
    "retry_options_predicates",
    "host_selection_retry_max_attempts",
)


def compile_retry(policy: Any, path: str) -> RetryPolicy:
    """An envoy.config.route.v3.RetryPolicy."""
    check_fields(policy, path, applied=_APPLIED, ignored=_IGNORED)
    names = [n.strip() for n in policy.retry_on.split(",")]
    retry_on = frozenset(n for n in names if n)
    unknown = sorted(retry_on - KNOWN_CONDITIONS)
    if unknown:
        raise RouteConfigError(field(path, "retry_on"), f"unknown retry condition(s) {unknown}")
    codes = frozenset(policy.retriable_status_codes)
    bad = sorted(c for c in codes if not 100 <= c <= 599)
    if bad:
        raise RouteConfigError(field(path, "retriable_status_codes"), f"not HTTP statuses: {bad}")
    base, top = DEFAULT_BACKOFF_BASE, None
    if policy.HasField("retry_back_off"):
        where = field(path, "retry_back_off")
        back_off = policy.retry_back_off
        check_fields(back_off, where, applied=("base_interval", "max_interval"))
        base = seconds(back_off.base_interval, field(where, "base_interval"))
        if base <= 0:
            raise RouteConfigError(field(where, "base_interval"), "must be positive")
        if back_off.HasField("max_interval"):
            top = seconds(back_off.max_interval, field(where, "max_interval"))
            if top < base:
                raise RouteConfigError(
                    field(where, "max_interval"), "must not be shorter than base_interval"
                )
    retry_after_max = 0.0
    if policy.HasField("rate_limited_retry_back_off"):
        retry_after_max = _retry_after_max(
            policy.rate_limited_retry_back_off, field(path, "rate_limited_retry_back_off")
        )
    return RetryPolicy(
        retry_on=retry_on,
        num_retries=policy.num_retries.value if policy.HasField("num_retries") else 1,
        per_try_timeout=positive_seconds(policy, "per_try_timeout", path),
        retriable_status_codes=codes,
        backoff_base=base,
        backoff_max=top,
        retry_after_max=retry_after_max,
    )


def _retry_after_max(back_off: Any, path: str) -> float:
    """`rate_limited_retry_back_off`: the longest `Retry-After` honoured (its max_interval,
    Envoy's 300 s when unset), when its reset headers name `retry-after` in SECONDS; 0
    (ignored) when they name only headers this proxy does not read."""
    check_fields(back_off, path, applied=("reset_headers", "max_interval"))
    if not back_off.reset_headers:
        raise RouteConfigError(field(path, "reset_headers"), "at least one reset header")
    top = DEFAULT_RETRY_AFTER_MAX
    if back_off.HasField("max_interval"):
        top = seconds(back_off.max_interval, field(path, "max_interval"))
        if top <= 0:
            raise RouteConfigError(field(path, "max_interval"), "must be positive")
    for i, header in enumerate(back_off.reset_headers):
        if not header.name:
            raise RouteConfigError(f"{field(path, 'reset_headers')}[{i}].name", "empty")
        if header.name.lower() == RETRY_AFTER and header.format == _SECONDS_FORMAT:
            return top
    return 0.0


def with_non_idempotent(policy: RetryPolicy) -> RetryPolicy:
    """A copy of `policy` that also retries non-idempotent methods."""
    return RetryPolicy(
        retry_on=policy.retry_on,
        num_retries=policy.num_retries,
        per_try_timeout=policy.per_try_timeout,
        retriable_status_codes=policy.retriable_status_codes,
        backoff_base=policy.backoff_base,
        backoff_max=policy.backoff_max,
        non_idempotent=True,
        retry_after_max=policy.retry_after_max,
    )
