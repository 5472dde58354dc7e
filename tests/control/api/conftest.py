"""The real API app served by uvicorn on a free 127.0.0.1 port, around a real SqliteStore."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.control.api.served import Api, served_api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async with served_api(tmp_path) as served:
        yield served
