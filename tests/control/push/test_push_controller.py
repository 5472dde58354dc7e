"""PushController against a real SqliteStore: first push, debounced pushes, resync, lease expiry."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from trellis.control.push.context import PushContext
from trellis.control.push.controller import PushController
from trellis.model.keys import ResourceKey
from trellis.model.loader import load_documents
from trellis.store.base import Put, PutLease, Store
from trellis.store.sqlite import SqliteStore


def service(name: str, port: int = 9080) -> Put:
    (doc,) = load_documents(
        f"""
apiVersion: trellis.dev/v1alpha1
kind: Service
metadata: {{name: {name}}}
spec:
  selector: {{app: {name}}}
  ports: [{{port: {port}}}]
"""
    )
    return Put(doc)


def workload(name: str, app: str, port: int = 9080) -> Put:
    (doc,) = load_documents(
        f"""
apiVersion: trellis.dev/v1alpha1
kind: Workload
metadata: {{name: {name}, labels: {{app: {app}}}}}
spec:
  address: 127.0.0.1
  ports: [{{port: {port}}}]
  proxyless: true
"""
    )
    return Put(doc)


class Recorder:
    def __init__(self) -> None:
        self.pushes: list[PushContext] = []

    def __call__(self, push: PushContext) -> None:
        self.pushes.append(push)

    async def wait_for(
        self, condition: Callable[[PushContext], bool], timeout: float = 5.0
    ) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (self.pushes and condition(self.pushes[-1])):
            assert loop.time() < deadline, f"no matching push; last: {self.pushes[-1:]}"
            await asyncio.sleep(0.005)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    s = SqliteStore(tmp_path / "state.db", poll_interval=0.05)
    yield s
    await s.aclose()


async def test_entering_pushes_the_current_snapshot(store: Store) -> None:
    result = await store.apply([service("reviews")])
    pushes = Recorder()
    async with PushController(store, pushes) as controller:
        assert len(pushes.pushes) == 1
        assert pushes.pushes[0].revision == result.revision
        assert pushes.pushes[0].service("default", "reviews") is not None
        assert controller.current is pushes.pushes[0]


async def test_a_write_is_pushed(store: Store) -> None:
    pushes = Recorder()
    async with PushController(store, pushes) as controller:
        result = await store.apply([service("ratings")])
        await pushes.wait_for(lambda p: p.revision == result.revision)
        assert pushes.pushes[-1].service("default", "ratings") is not None
        assert controller.current.revision == result.revision


async def test_a_burst_of_writes_is_merged(store: Store) -> None:
    pushes = Recorder()
    # A long quiet period makes the merge certain: the writes below take a few ms.
    async with PushController(store, pushes, quiet=0.5, max_delay=1.0):
        for i in range(10):
            last = await store.apply([service(f"s{i}")])
        await pushes.wait_for(lambda p: p.revision == last.revision)
        assert len(pushes.pushes) == 2  # the first push on entering, then one for the burst
        assert len(pushes.pushes[-1].services) == 10


async def test_compaction_rereads_the_snapshot(tmp_path: Path) -> None:
    async with SqliteStore(tmp_path / "state.db", history=1, poll_interval=0.05) as store:
        pushes = Recorder()
        async with PushController(store, pushes) as controller:
            # Three writes before the watch runs again leave it behind the kept history.
            for name in ("a", "b", "c"):
                last = await store.apply([service(name)])
            await pushes.wait_for(lambda p: p.revision == last.revision)
            assert controller.statistics()["resyncs"] >= 1
            assert {s.name for s in pushes.pushes[-1].all_services()} == {"a", "b", "c"}


async def test_an_expired_lease_is_pushed_without_a_store_event(store: Store) -> None:
    key = ResourceKey("Workload", "default", "reviews-1")
    await store.apply([service("reviews"), workload("reviews-1", "reviews")])
    await store.apply([PutLease(key, ttl=30)])
    now = [time.time()]  # the controller's wall clock, moved by hand
    pushes = Recorder()
    async with PushController(store, pushes, lease_check=0.01, clock=lambda: now[0]) as controller:
        assert ("default", "reviews-1") in pushes.pushes[-1].live
        revision = pushes.pushes[-1].revision
        now[0] += 60  # past the lease's expiry; nothing is written to the store
        await pushes.wait_for(lambda p: ("default", "reviews-1") not in p.live)
        assert pushes.pushes[-1].revision == revision
        assert controller.statistics()["lease_rebuilds"] == 1
        # A heartbeat after expiry brings it back (renewing is not a store event either).
        await store.apply([PutLease(key, ttl=120)])
        await pushes.wait_for(lambda p: ("default", "reviews-1") in p.live)
        assert controller.statistics()["lease_rebuilds"] == 2


async def test_a_failing_consumer_does_not_stop_the_controller(store: Store) -> None:
    seen: list[int] = []

    def on_push(push: PushContext) -> None:
        seen.append(push.revision)
        raise RuntimeError("consumer bug")

    async with PushController(store, on_push) as controller:
        first = await store.apply([service("a")])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while first.revision not in seen:
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
        second = await store.apply([service("b")])
        while second.revision not in seen:
            assert loop.time() < deadline
            await asyncio.sleep(0.005)
        assert controller.statistics()["errors"] >= 2
