"""A loop clock for cluster tests: `time()` the test moves, `call_later` timers that fire
when the test advances the clock past them (ClusterRuntime's outlier interval); pools
for Hosts that never connect."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from trellis.proxy.stack.pool import HostPool, PoolCounters


class FakeTimer:
    def __init__(self, when: float, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.when = when
        self.callback = callback
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.timers: list[FakeTimer] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., Any], *args: Any) -> FakeTimer:
        timer = FakeTimer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def advance(self, seconds: float) -> None:
        """Move the clock, firing every timer due on the way, in time order."""
        target = self.now + seconds
        while True:
            due = [t for t in self.timers if not t.cancelled and t.when <= target]
            if not due:
                break
            timer = min(due, key=lambda t: t.when)
            self.timers.remove(timer)
            self.now = max(self.now, timer.when)
            timer.callback(*timer.args)
        self.now = target


def unused_pool(address: str, port: int = 80) -> HostPool:
    """A real pool that a test never connects with (Hosts for the pure modules: the compiled
    Host takes nothing else). Sync tests have no current loop: it gets a closed one."""
    try:
        return HostPool(address, port, PoolCounters())
    except RuntimeError:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            return HostPool(address, port, PoolCounters())
        finally:
            asyncio.set_event_loop(None)
            loop.close()
