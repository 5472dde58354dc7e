"""The admin token: made once, stored only as a SHA-256 digest (0600), checked on every write."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from trellis.control.api.auth import TOKEN_FILE, load_or_create
from trellis.control.config import HostPort


def test_first_start_makes_a_random_token_and_stores_only_its_digest(tmp_path: Path) -> None:
    setup = load_or_create(tmp_path)
    assert setup.new_token is not None and len(setup.new_token) >= 32
    stored = (tmp_path / TOKEN_FILE).read_text().strip()
    assert stored == hashlib.sha256(setup.new_token.encode()).hexdigest()
    assert (tmp_path / TOKEN_FILE).stat().st_mode & 0o777 == 0o600
    assert setup.verifier.verify(setup.new_token)
    assert not setup.verifier.verify(setup.new_token + "x")
    assert not setup.verifier.verify("") and not setup.verifier.verify(None)
    (tmp_path / "other").mkdir()
    assert load_or_create(tmp_path / "other").new_token != setup.new_token


def test_later_starts_keep_the_stored_token_whatever_the_preset(tmp_path: Path) -> None:
    first = load_or_create(tmp_path, preset="chosen")
    assert first.new_token == "chosen"
    again = load_or_create(tmp_path, preset="different")
    assert again.new_token is None
    assert again.verifier.verify("chosen") and not again.verifier.verify("different")


def test_a_corrupt_token_file_is_an_error_not_an_open_door(tmp_path: Path) -> None:
    (tmp_path / TOKEN_FILE).write_text("garbage\n")
    with pytest.raises(ValueError, match="SHA-256"):
        load_or_create(tmp_path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:7070", HostPort("127.0.0.1", 7070)),
        (":15010", HostPort("0.0.0.0", 15010)),
        ("[::1]:0", HostPort("::1", 0)),
    ],
)
def test_listen_addresses(text: str, expected: HostPort) -> None:
    assert HostPort.parse(text) == expected
    assert HostPort.parse(str(expected)) == expected


@pytest.mark.parametrize("text", ["7070", "host:", "host:99999", "host:http"])
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match="HOST:PORT"):
        HostPort.parse(text)
