"""Fixtures: every async test here runs on the stdlib asyncio loop and on uvloop.

The proxy runs on uvloop and grpc.aio must behave the same there; the tests
are cheap enough to run twice (STYLE.md habit 9).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path

import pytest
import uvloop
from tests.proxy.xds.control_plane import MESH, ControlPlane, workload


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture
async def control_plane(tmp_path: Path) -> AsyncIterator[ControlPlane]:
    """A running control plane with the `reviews` Service and one sidecar Workload."""
    cp = ControlPlane(tmp_path / "data")
    cp.data_dir.mkdir()
    await cp.start()
    try:
        await cp.apply(MESH + "---" + workload("reviews-1", "127.0.0.1", 15006))
        yield cp
    finally:
        await cp.stop(wait_streams=2.0)
