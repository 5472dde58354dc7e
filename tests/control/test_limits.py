"""`json_depth` (the scan that bounds JSON before it is parsed) against Python's own parser."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trellis.control.limits import (
    JsonTooDeep,
    check_json_depth,
    json_depth,
    loads_bounded,
    size_text,
)


def depth_of(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth_of(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth_of(v) for v in value), default=0)
    return 0


# Strings full of what the scan must not be fooled by: brackets, quotes, backslashes.
tricky = st.text(alphabet='[]{}"\\ab\n', max_size=8)
values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(tricky, inner, max_size=4),
    max_leaves=40,
)


@given(values, st.booleans())
def test_json_depth_is_the_nesting_depth(value: Any, ascii_only: bool) -> None:
    data = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert json_depth(data) == depth_of(value)


@pytest.mark.parametrize(
    ("text", "depth"),
    [
        (b"1", 0),
        (b"{}", 1),
        (b'{"a": "[[[["}', 1),
        (b'["\\"[[[", [[1]]]', 3),
        (b'["\\\\", [1]]', 2),  # an escaped backslash does not escape the closing quote
        (b'["\\\\\\"[", [1]]', 2),
        (b"[" * 5000 + b"]" * 5000, 5000),
    ],
)
def test_json_depth_examples(text: bytes, depth: int) -> None:
    assert json_depth(text) == depth


def test_too_deep_is_refused_before_the_parser_recurses() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    with pytest.raises(JsonTooDeep, match="JSON nested 100000 levels deep; at most 32"):
        loads_bounded(deep)
    check_json_depth(b"[" * 32 + b"]" * 32)
    assert loads_bounded(b'{"a": [1]}') == {"a": [1]}
    with pytest.raises(ValueError):
        loads_bounded(b"not json")


def test_size_text() -> None:
    assert size_text(16 * 1024 * 1024) == "16 MiB (16777216 bytes)"
    assert size_text(65536) == "64 KiB (65536 bytes)"
    assert size_text(1000) == "1000 bytes"
