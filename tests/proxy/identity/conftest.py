"""Every async test here runs on the stdlib asyncio loop and on uvloop (the sidecar runs on
uvloop; the inbound acceptor's TLS and its hand-over must behave the same on both)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

import pytest
import uvloop


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> Mapping[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
