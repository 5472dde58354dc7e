"""Fixtures shared by the store tests: every test runs once per backend in BACKENDS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from trellis.store import Store
from trellis.store.testing import BACKENDS, StoreBackend, make_backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    return make_backend(request.param, tmp_path)


@pytest.fixture
async def store(backend: StoreBackend) -> AsyncIterator[Store]:
    opened = backend.open()
    yield opened
    await opened.aclose()
