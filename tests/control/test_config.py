"""`trellis control` settings parsed from text (trellis.control.config)."""

from __future__ import annotations

import pytest

from trellis.control.config import parse_size


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("67108864", 64 * 2**20),
        ("64MiB", 64 * 2**20),
        ("64M", 64 * 2**20),
        ("512KiB", 2**19),
        ("1gib", 2**30),
        ("10 B", 10),
    ],
)
def test_store_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "64 MB extra", "-1", "1.5MiB", "64TiB", "MiB"])
def test_not_store_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size"):
        parse_size(text)
