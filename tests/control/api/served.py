"""Serving the real API app with uvicorn on a free 127.0.0.1 port, around a real SqliteStore."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn

from trellis.control.api import AdminToken, ApiState, create_app
from trellis.control.api.serving import ApiServer, api_config, listen_tcp
from trellis.control.config import HostPort
from trellis.control.registry import Registry
from trellis.control.xds.server import AdsServer
from trellis.store.sqlite import SqliteStore

TOKEN = "test-admin-token"


@dataclass
class Api:
    client: httpx.AsyncClient  # sends the admin token
    anonymous: httpx.AsyncClient  # sends none
    store: SqliteStore
    ads: AdsServer


async def wait_started(
    server: uvicorn.Server, task: asyncio.Task[None], deadline: float = 10.0
) -> None:
    end = time.monotonic() + deadline
    while not server.started:
        if task.done():
            task.result()
            raise AssertionError("the API server stopped before it started")
        if time.monotonic() > end:
            raise AssertionError("the API server did not start in time")
        await asyncio.sleep(0.005)


@asynccontextmanager
async def served_api(tmp_path: Path) -> AsyncIterator[Api]:
    store = SqliteStore(tmp_path / "state.db")
    try:
        async with Registry(store, sweep_interval=0.05) as registry:
            ads = AdsServer()
            app = create_app(ApiState(store, registry, ads, AdminToken.of(TOKEN)))
            sock = listen_tcp(HostPort("127.0.0.1", 0))
            port = sock.getsockname()[1]
            server = ApiServer(api_config(app, access_log=False))
            task = asyncio.create_task(server.serve(sockets=[sock]))
            try:
                await wait_started(server, task)
                base = f"http://127.0.0.1:{port}"
                headers = {"Authorization": f"Bearer {TOKEN}"}
                async with (
                    httpx.AsyncClient(base_url=base, headers=headers) as client,
                    httpx.AsyncClient(base_url=base) as anonymous,
                ):
                    yield Api(client, anonymous, store, ads)
            finally:
                server.should_exit = True
                await task
                sock.close()
    finally:
        await store.aclose()
