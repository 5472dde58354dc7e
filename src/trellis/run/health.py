"""Is the app serving? A TCP connect to its port, or an HTTP GET of its health path.

`wait_serving` polls until the app answers (or exits, or the deadline
passes) before the workload is registered, so an endpoint never appears
before its app can take traffic. `HealthWatch` keeps checking afterwards and
reports changes; the registration heartbeats carry them to the control plane,
which takes an unhealthy workload out of the endpoints. As Kubernetes' probes
do by default, it takes three failed checks in a row to call an app unhealthy
(one slow answer on a busy host must not take it out of the endpoints) and one
good check to call it healthy again.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable


async def probe(port: int, path: str | None, timeout: float = 1.0) -> bool:
    """One check: `path` answered 2xx/3xx, or (no path) the port accepts connections."""
    if path is None:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout)
        except (OSError, TimeoutError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True
    try:
        return await asyncio.wait_for(_get_status(port, path), timeout) < 400
    except (OSError, TimeoutError, ValueError):
        return False


async def _get_status(port: int, path: str) -> int:
    """The status code of `GET path` on the app (the standard library only: the sidecar's
    memory, run/api.py)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("latin-1"))
        status_line = await reader.readline()
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise ValueError(f"not an HTTP/1 status line: {status_line[:80]!r}")
    return int(parts[1])


async def wait_serving(
    port: int, path: str | None, timeout: float, gone: Callable[[], bool], interval: float = 0.05
) -> bool:
    """True once the app serves; False if it exits (`gone()`) or `timeout` passes first."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if gone():
            return False
        if await probe(port, path):
            return True
        await asyncio.sleep(interval)
    return False


class HealthWatch:
    """Checks every `interval`; calls `changed(healthy)` when the answer flips: to unhealthy
    after `failure_threshold` failed checks in a row, back after one good check."""

    def __init__(
        self,
        port: int,
        path: str | None,
        changed: Callable[[bool], None],
        interval: float = 2.0,
        failure_threshold: int = 3,
        healthy: bool = True,
    ) -> None:
        self.port = port
        self.path = path
        self.changed = changed
        self.interval = interval
        self.failure_threshold = failure_threshold
        self.healthy = healthy  # as registered: an app that never came up starts unhealthy
        self.failures = 0  # failed checks in a row
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.check()

    async def check(self) -> bool:
        """One check of the app; the health it leads to (reported if it changed)."""
        passed = await probe(self.port, self.path)
        self.failures = 0 if passed else self.failures + 1
        healthy = passed or (self.healthy and self.failures < self.failure_threshold)
        if healthy != self.healthy:
            self.healthy = healthy
            self.changed(healthy)
        return healthy

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
