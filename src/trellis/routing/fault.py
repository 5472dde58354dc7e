"""Fault injection: the `envoy.filters.http.fault` per-route config → `FaultPolicy`.

Owns the decisions of Envoy's HTTPFault filter (gRFC A33) as pure functions
of a uniform draw r in [0, 1): a delay of `fixed_delay` when r < its
fraction, an abort when r < its fraction. Percentages are FractionalPercent
(HUNDRED / TEN_THOUSAND / MILLION), unset meaning 0 as in Envoy. A gRPC abort
answers HTTP 200 with `grpc-status` = `abort_grpc_status` (`abort_for` returns
200 for it). The config may be the HTTPFault itself or wrapped in a
`FilterConfig` (`disabled: true` turns an inherited fault off). Header-driven
delays/aborts, header/node/cluster conditions and rate limits are not
supported and are config errors. Sleeping and answering belong to the proxy.
"""

from __future__ import annotations

from typing import Any

from envoy.extensions.filters.http.fault.v3 import fault_pb2

from trellis.routing.errors import RouteConfigError, field
from trellis.routing.pb import check_fields, fraction, per_filter_config, seconds, unpack
from trellis.wire import FAULT_FILTER as FAULT_FILTER

_IGNORED = ("max_active_faults", "disable_downstream_cluster_stats")


class FaultPolicy:
    __slots__ = (
        "abort_fraction",
        "abort_grpc_status",
        "abort_http_status",
        "delay",
        "delay_fraction",
        "max_active_faults",
    )

    def __init__(
        self,
        *,
        delay: float | None = None,
        delay_fraction: float = 0.0,
        abort_http_status: int | None = None,
        abort_grpc_status: int | None = None,
        abort_fraction: float = 0.0,
        max_active_faults: int | None = None,
    ) -> None:
        self.delay = delay
        self.delay_fraction = delay_fraction
        self.abort_http_status = abort_http_status
        self.abort_grpc_status = abort_grpc_status
        self.abort_fraction = abort_fraction
        self.max_active_faults = max_active_faults

    def delay_for(self, r: float) -> float | None:
        """Seconds to delay the request for draw `r`, or None."""
        if self.delay is not None and r < self.delay_fraction:
            return self.delay
        return None

    def abort_for(self, r: float) -> int | None:
        """The HTTP status to abort with for draw `r` (200 for a gRPC abort), or None."""
        if r >= self.abort_fraction:
            return None
        if self.abort_http_status is not None:
            return self.abort_http_status
        return 200 if self.abort_grpc_status is not None else None

    def __repr__(self) -> str:
        return (
            f"FaultPolicy(delay={self.delay}@{self.delay_fraction}, "
            f"abort={self.abort_http_status or self.abort_grpc_status}@{self.abort_fraction})"
        )


class Disabled:
    """A FilterConfig with `disabled: true`: no fault here, whatever a wider level says."""


DISABLED = Disabled()


def compile_fault(packed: Any, path: str) -> FaultPolicy | Disabled | None:
    """The packed per-filter config; None when it injects nothing."""
    unwrapped = per_filter_config(packed, path)
    if unwrapped is None:
        return DISABLED
    packed, path = unwrapped
    fault = fault_pb2.HTTPFault()
    unpack(packed, fault, path)
    check_fields(fault, path, applied=("delay", "abort"), ignored=_IGNORED)
    policy = FaultPolicy(
        max_active_faults=fault.max_active_faults.value
        if fault.HasField("max_active_faults")
        else None
    )
    if fault.HasField("delay"):
        where = field(path, "delay")
        delay = fault.delay
        check_fields(delay, where, applied=("fixed_delay", "percentage"))
        if not delay.HasField("fixed_delay"):
            raise RouteConfigError(where, "a delay needs fixed_delay")
        policy.delay = seconds(delay.fixed_delay, field(where, "fixed_delay"))
        policy.delay_fraction = fraction(delay.percentage, field(where, "percentage"))
    if fault.HasField("abort"):
        where = field(path, "abort")
        abort = fault.abort
        check_fields(abort, where, applied=("http_status", "grpc_status", "percentage"))
        kind = abort.WhichOneof("error_type")
        if kind == "http_status":
            if not 200 <= abort.http_status < 600:
                raise RouteConfigError(
                    field(where, "http_status"), f"{abort.http_status} is not in [200, 600)"
                )
            policy.abort_http_status = abort.http_status
        elif kind == "grpc_status":
            policy.abort_grpc_status = abort.grpc_status
        else:
            raise RouteConfigError(where, "an abort needs http_status or grpc_status")
        policy.abort_fraction = fraction(abort.percentage, field(where, "percentage"))
    if (
        policy.delay is None
        and policy.abort_http_status is None
        and policy.abort_grpc_status is None
    ):
        return None
    return policy
