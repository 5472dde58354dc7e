"""Protobuf plumbing for the compilers: field checks, durations, fractions, typed configs.

Owns the rule that a set field the proxy does not know is an error (a NACK)
rather than silently ignored, so every compiler states, per message, which
fields it applies and which it may safely ignore. No routing semantics here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from envoy.config.route.v3 import route_components_pb2
from google.protobuf.message import DecodeError

from trellis.routing.errors import RouteConfigError, field

_DENOMINATORS = {0: 100, 1: 10_000, 2: 1_000_000}  # HUNDRED, TEN_THOUSAND, MILLION


def check_fields(
    message: Any, path: str, applied: Iterable[str], ignored: Iterable[str] = ()
) -> None:
    """Raise for the first set field of `message` that is neither applied nor ignorable."""
    known = set(applied) | set(ignored)
    for descriptor, _ in message.ListFields():
        if descriptor.name not in known:
            raise RouteConfigError(
                field(path, descriptor.name), "not supported by the Trellis proxy"
            )


def seconds(duration: Any, path: str) -> float:
    """A google.protobuf.Duration in seconds; negative durations are errors."""
    value = duration.seconds + duration.nanos / 1e9
    if value < 0:
        raise RouteConfigError(path, "a duration must not be negative")
    return float(value)


def positive_seconds(message: Any, name: str, path: str) -> float | None:
    """The Duration field `name` of `message` in seconds; None when unset or zero."""
    if not message.HasField(name):
        return None
    value = seconds(getattr(message, name), field(path, name))
    return value if value > 0 else None


def fraction(percent: Any, path: str) -> float:
    """An envoy.type.v3.FractionalPercent as a fraction in [0, 1] (capped, as Envoy does)."""
    denominator = _DENOMINATORS.get(percent.denominator)
    if denominator is None:
        raise RouteConfigError(
            field(path, "denominator"), f"unknown denominator {percent.denominator}"
        )
    return min(1.0, float(percent.numerator) / denominator)


def unpack(packed: Any, message: Any, path: str) -> None:
    """Unpack an Any into `message`, or raise naming the type that was expected."""
    expected = message.DESCRIPTOR.full_name
    if packed.TypeName() != expected:
        got = packed.TypeName() or "nothing"
        raise RouteConfigError(path, f"expected {expected}, got {got}")
    try:
        packed.Unpack(message)
    except DecodeError as e:
        raise RouteConfigError(path, f"cannot decode {expected}: {e}") from None


_FILTER_CONFIG = route_components_pb2.FilterConfig.DESCRIPTOR.full_name


def per_filter_config(packed: Any, path: str) -> tuple[Any, str] | None:
    """A `typed_per_filter_config` value, unwrapped from Envoy's FilterConfig when it is
    one: (the filter's own config, its path), or None when the FilterConfig turns the
    filter off here (`disabled: true`)."""
    if packed.TypeName() != _FILTER_CONFIG:
        return packed, path
    wrapper = route_components_pb2.FilterConfig()
    unpack(packed, wrapper, path)
    if wrapper.disabled:
        return None
    return wrapper.config, field(path, "config")
