"""The push controller: turns store changes into debounced PushContexts for the ADS server.

Theory of operation:
- Entering reads a snapshot, builds the first PushContext and hands it to
  `on_push` before returning, so the ADS server never serves an empty mesh
  by accident. Then three tasks run in a TaskGroup:
  - the watcher follows `store.watch()` from the snapshot's revision and
    records each event in a `Debouncer`; on `Compacted` it re-reads a
    snapshot, pushes it and watches again from there;
  - the pusher sleeps until the debouncer's deadline (quiet period or max
    delay), then re-reads a snapshot and pushes;
  - the lease checker looks every `lease_check` seconds whether the set of
    expired leases differs from the one the current PushContext was built
    with (a lease expiring is not a store event), and rebuilds if so.
- Debouncing runs on the event loop's monotonic clock; `clock` (wall time,
  as lease expiry times are) is the `now` that decides which leases expired.
- Every build re-reads a whole snapshot rather than patching the last one:
  lease renewals are not events, so only a fresh read has current expiry
  times. Builds are serialised, so pushes go out in revision order.
- Errors from the store are logged and retried after a short pause; an
  exception from `on_push` is logged and does not stop the controller.
- Exiting cancels the tasks and waits for them.

Knows nothing of xDS or gRPC: `on_push` is whatever consumes PushContexts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from trellis.control.push.context import PushContext
from trellis.control.push.debounce import Debouncer, expired_leases
from trellis.model.keys import ResourceKey
from trellis.store.base import Compacted, Store

log = logging.getLogger("trellis.push")

_RETRY_PAUSE = 0.5  # seconds between attempts when the store fails


class PushController:
    def __init__(
        self,
        store: Store,
        on_push: Callable[[PushContext], None],
        *,
        quiet: float = 0.02,
        max_delay: float = 0.1,
        clock: Callable[[], float] = time.time,
        lease_check: float = 1.0,
    ) -> None:
        self._store = store
        self._on_push = on_push
        self._clock = clock
        self._lease_check = lease_check
        self._debouncer = Debouncer(quiet=quiet, max_delay=max_delay)
        self._wake = asyncio.Event()
        self._build_lock = asyncio.Lock()
        self._current = PushContext.empty()
        self._expired: frozenset[ResourceKey] = frozenset()
        self._group: asyncio.TaskGroup | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._stats = {"pushes": 0, "events": 0, "resyncs": 0, "lease_rebuilds": 0, "errors": 0}

    @property
    def current(self) -> PushContext:
        """The PushContext most recently handed to `on_push`."""
        return self._current

    def statistics(self) -> dict[str, Any]:
        return {**self._stats, "revision": self._current.revision}

    # -- lifetime -------------------------------------------------------------------------

    async def __aenter__(self) -> PushController:
        revision = await self._rebuild("start")
        group = asyncio.TaskGroup()
        await group.__aenter__()
        self._group = group
        self._tasks = [
            group.create_task(self._watch(revision), name="push-watch"),
            group.create_task(self._debounce(), name="push-debounce"),
            group.create_task(self._check_leases(), name="push-leases"),
        ]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        if self._group is not None:
            group, self._group = self._group, None
            await group.__aexit__(None, None, None)

    # -- tasks ----------------------------------------------------------------------------

    async def _watch(self, revision: int) -> None:
        while True:
            try:
                async for event in self._store.watch(revision):
                    revision = event.revision
                    self._stats["events"] += 1
                    self._debouncer.event(asyncio.get_running_loop().time())
                    self._wake.set()
                return  # the store was closed
            except Compacted as exc:
                log.warning("store watch compacted (%s): re-reading a snapshot", exc)
                self._stats["resyncs"] += 1
                revision = await self._rebuild_retrying("resync")
            except Exception:
                log.exception("store watch failed; retrying from revision %d", revision)
                self._stats["errors"] += 1
                await asyncio.sleep(_RETRY_PAUSE)

    async def _debounce(self) -> None:
        while True:
            deadline = self._debouncer.deadline()
            if deadline is None:
                await self._wake.wait()
                self._wake.clear()
                continue
            delay = deadline - asyncio.get_running_loop().time()
            if delay > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), delay)
                continue
            self._debouncer.fire()  # events during the build start the next burst
            await self._rebuild_retrying("store changed")

    async def _check_leases(self) -> None:
        while True:
            await asyncio.sleep(self._lease_check)
            try:
                leases = await self._store.list_leases()
            except Exception:
                log.exception("reading leases failed")
                self._stats["errors"] += 1
                continue
            if expired_leases(leases, self._clock()) != self._expired:
                self._stats["lease_rebuilds"] += 1
                await self._rebuild_retrying("lease expiry")

    # -- building -------------------------------------------------------------------------

    async def _rebuild_retrying(self, why: str) -> int:
        while True:
            try:
                return await self._rebuild(why)
            except Exception:
                log.exception("building a PushContext (%s) failed; retrying", why)
                self._stats["errors"] += 1
                await asyncio.sleep(_RETRY_PAUSE)

    async def _rebuild(self, why: str) -> int:
        """Read a snapshot, build a PushContext, hand it over; returns the snapshot's revision."""
        async with self._build_lock:
            snapshot = await self._store.snapshot()
            now = self._clock()
            push = PushContext.build(snapshot, now)
            self._current = push
            self._expired = expired_leases(snapshot.leases, now)
            self._stats["pushes"] += 1
            log.debug("push revision %d (%s)", snapshot.revision, why)
            try:
                self._on_push(push)
            except Exception:
                log.exception("on_push failed for revision %d", snapshot.revision)
                self._stats["errors"] += 1
            return snapshot.revision
