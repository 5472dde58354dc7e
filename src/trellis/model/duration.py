"""Durations as Gateway API spells them (GEP-2257): `1h30m`, `500ms`, `0s`."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator

from trellis.model.errors import describe_value

_GEP2257 = re.compile(r"^([0-9]{1,5}(h|m|s|ms)){1,4}$")
_PART = re.compile(r"([0-9]{1,5})(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in a GEP-2257 duration; raises ValueError with the rule on bad input."""
    if not _GEP2257.match(text):
        raise ValueError(
            f"invalid duration {text!r}: expected GEP-2257 form such as '10s', '1m30s', '250ms'"
        )
    return sum(int(n) * _UNIT_SECONDS[u] for n, u in _PART.findall(text))


def _text(value: Any) -> Any:
    """A duration is a string, never a number: `10` means nothing without a unit."""
    if not isinstance(value, str):
        raise ValueError(
            f"a duration is a string such as '10s' or '1m30s' (GEP-2257), "
            f"got {describe_value(value)}"
        )
    return value


def _check(text: str) -> str:
    parse_duration(text)
    return text


Duration = Annotated[str, BeforeValidator(_text), AfterValidator(_check)]
