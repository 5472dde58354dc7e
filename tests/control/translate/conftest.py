"""Translator tests: the `--update-golden` switch and shared fixtures."""

from __future__ import annotations

import contextlib

import pytest
from tests.control.translate.translate_support import FIXTURE, load_push

from trellis.control.push.context import PushContext


def pytest_addoption(parser: pytest.Parser) -> None:
    # The suite may already register it (tests/conftest.py); register it only once.
    with contextlib.suppress(ValueError):
        parser.addoption(
            "--update-golden",
            action="store_true",
            default=False,
            help="rewrite golden files from the current output instead of comparing",
        )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden", default=False))


@pytest.fixture(scope="session")
def fixture_push() -> PushContext:
    return load_push(FIXTURE.read_text())
