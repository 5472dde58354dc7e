"""Registry: register, heartbeat, expiry by the sweeper, restart grace, deregister.

Runs against every store backend, on real store files.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from trellis.control.registry import Registry, UnknownWorkload
from trellis.store import Put, PutLease, Store
from trellis.store.testing import (
    BACKENDS,
    StoreBackend,
    key,
    make_backend,
    summary,
    take,
    watching,
    workload,
)

DEADLINE = 5.0  # seconds; expiry with a 0.3 s ttl and a 0.05 s sweep takes well under 1 s


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StoreBackend:
    return make_backend(request.param, tmp_path)


@pytest.fixture
async def store(backend: StoreBackend) -> AsyncIterator[Store]:
    opened = backend.open()
    yield opened
    await opened.aclose()


async def wait_until(check: Callable[[], Awaitable[bool]], deadline: float = DEADLINE) -> None:
    """Poll `check` until it is true; fail after `deadline` seconds."""
    end = time.monotonic() + deadline
    while not await check():
        if time.monotonic() > end:
            pytest.fail(f"condition not met within {deadline} s")
        await asyncio.sleep(0.02)


async def test_register_puts_workload_and_lease_in_one_revision(store: Store) -> None:
    registry = Registry(store)
    w = workload("api")
    result = await registry.register(w, ttl=10)
    assert result.revision == 1
    assert [c.action for c in result.changes] == ["created"]
    assert await store.get(key(w)) is not None
    lease = await store.get_lease(key(w))
    assert lease is not None
    assert (lease.ttl, lease.healthy) == (10, True)
    async with watching(store, 0) as events:
        assert summary(await take(events, 2)) == [(1, "PUT", "api"), (1, "LEASE_PUT", "api")]
    # Registering again (a client that restarted) changes nothing but the lease's expiry.
    again = await registry.register(w, ttl=10)
    assert again.revision == 1
    assert [c.action for c in again.changes] == ["unchanged"]


async def test_heartbeat_renews_and_reports_health(store: Store) -> None:
    registry = Registry(store)
    w = key(workload("api"))
    await registry.register(workload("api"), ttl=10)
    first = await store.get_lease(w)
    assert first is not None
    renewed = await registry.heartbeat(w)
    assert renewed.expires_at >= first.expires_at
    assert renewed.ttl == 10
    assert await store.revision() == 1  # a plain heartbeat is not a change
    sick = await registry.heartbeat(w, healthy=False)
    assert not sick.healthy
    assert await store.revision() == 2
    assert registry.statistics().heartbeats == 2


async def test_heartbeat_of_an_unknown_workload_asks_to_register(store: Store) -> None:
    registry = Registry(store)
    with pytest.raises(UnknownWorkload):
        await registry.heartbeat(key(workload("ghost")))
    # A static workload (applied without a lease) cannot heartbeat either.
    await store.apply([Put(workload("static"))])
    with pytest.raises(UnknownWorkload):
        await registry.heartbeat(key(workload("static")))
    assert await store.get_lease(key(workload("static"))) is None


async def test_sweep_deletes_expired_workloads_in_one_apply(store: Store) -> None:
    now = time.time()
    registry = Registry(store, clock=lambda: now + 20)  # 20 s in the future
    await registry.register(workload("short-a"), ttl=5)
    await registry.register(workload("short-b"), ttl=5)
    await registry.register(workload("long"), ttl=60)
    await store.apply([Put(workload("static"))])
    before = await store.revision()
    swept = await registry.sweep_once()
    assert sorted(k.name for k in swept) == ["short-a", "short-b"]
    assert await store.revision() == before + 1
    assert sorted(d.name for d in await store.list("Workload")) == ["long", "static"]
    assert [lease.key.name for lease in await store.list_leases()] == ["long"]
    assert await registry.sweep_once() == []
    assert registry.statistics().expired == 2


async def test_a_workload_that_stops_heartbeating_expires(store: Store) -> None:
    async with Registry(store, sweep_interval=0.05) as registry:
        await registry.register(workload("dies"), ttl=0.3)
        await registry.register(workload("lives"), ttl=2.0)

        async def dead_is_gone() -> bool:
            await registry.heartbeat(key(workload("lives")))
            return await store.get(key(workload("dies"))) is None

        await wait_until(dead_is_gone)
        assert await store.get_lease(key(workload("dies"))) is None
        assert await store.get(key(workload("lives"))) is not None
        with pytest.raises(UnknownWorkload):
            await registry.heartbeat(key(workload("dies")))
        # It comes back by registering again.
        await registry.register(workload("dies"), ttl=30)
        await registry.heartbeat(key(workload("dies")))


async def test_static_workloads_never_expire(store: Store) -> None:
    await store.apply([Put(workload("static"))])
    async with Registry(store, sweep_interval=0.01, clock=lambda: time.time() + 1e9) as registry:
        assert await registry.sweep_once() == []
    assert await store.get(key(workload("static"))) is not None


async def test_restart_gives_every_lease_one_more_ttl(backend: StoreBackend) -> None:
    w = key(workload("api"))
    first = backend.open()
    # Registered by a control plane that then went away for longer than the ttl.
    await first.apply([Put(workload("api")), PutLease(w, ttl=0.3, healthy=False)])
    await first.aclose()
    store = backend.open()
    try:

        async def lease_expired() -> bool:
            lease = await store.get_lease(w)
            return lease is not None and lease.expires_at < time.time()

        await wait_until(lease_expired)
        # The registry's clock stands still until the test moves it, so that a slow
        # machine cannot turn the grace into an expiry.
        now = [time.time()]
        async with Registry(store, sweep_interval=0.02, clock=lambda: now[0]) as registry:
            lease = await store.get_lease(w)
            assert lease is not None
            assert lease.expires_at >= now[0] + 0.3
            assert not lease.healthy  # health is kept, only the expiry moves
            assert await registry.sweep_once() == []
            assert await store.get(w) is not None

            # The grace is one ttl: without heartbeats it expires after all.
            now[0] = lease.expires_at

            async def gone() -> bool:
                return await store.get(w) is None

            await wait_until(gone)
    finally:
        await store.aclose()


async def test_deregister(store: Store) -> None:
    registry = Registry(store)
    w = key(workload("api"))
    await registry.register(workload("api"), ttl=30)
    result = await registry.deregister(w)
    assert [c.action for c in result.changes] == ["deleted"]
    assert await store.get(w) is None
    assert await store.get_lease(w) is None
    assert [c.action for c in (await registry.deregister(w)).changes] == ["absent"]
    with pytest.raises(UnknownWorkload):
        await registry.heartbeat(w)


async def test_exit_stops_the_sweeper(store: Store) -> None:
    async with Registry(store, sweep_interval=0.01):
        assert any(t.get_name() == "registry-sweeper" for t in asyncio.all_tasks())
    assert not any(t.get_name() == "registry-sweeper" for t in asyncio.all_tasks())


async def test_the_sweeper_survives_a_failing_store(backend: StoreBackend) -> None:
    store = backend.open()
    async with Registry(store, sweep_interval=0.01) as registry:
        await store.aclose()  # every sweep now fails

        async def failed_twice() -> bool:
            return registry.statistics().sweep_errors >= 2

        await wait_until(failed_twice)
