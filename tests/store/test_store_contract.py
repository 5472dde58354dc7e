"""The Store contract (base.py), run against every backend through the `store` fixture."""

from __future__ import annotations

import asyncio
import time

import pytest

from trellis.model import ResourceKey
from trellis.store import (
    Change,
    Conflict,
    Delete,
    DeleteLease,
    MissingWorkload,
    Op,
    Put,
    PutLease,
    Store,
)
from trellis.store.testing import (
    StoreBackend,
    content,
    key,
    mesh_config,
    service,
    summary,
    take,
    watching,
    workload,
)

WAIT = 5.0  # seconds a test waits for something that should happen at once


# -- revisions and documents ---------------------------------------------------------------


async def test_empty_store(store: Store) -> None:
    assert await store.revision() == 0
    assert await store.list() == []
    assert await store.get(ResourceKey("Service", "default", "nope")) is None
    snap = await store.snapshot()
    assert (snap.revision, snap.docs, snap.leases) == (0, (), ())


async def test_create_configure_delete_bump_revisions(store: Store) -> None:
    result = await store.apply([Put(service("web"))])
    assert result.revision == 1
    assert result.changes == (Change(key(service("web")), "created"),)
    got = await store.get(key(service("web")))
    assert got is not None
    assert (got.metadata.creation_revision, got.metadata.resource_version) == (1, 1)
    assert content(got) == content(service("web"))

    result = await store.apply([Put(service("web", port=8080))])
    assert result.revision == 2
    assert result.changes[0].action == "configured"
    got = await store.get(key(service("web")))
    assert got is not None
    assert (got.metadata.creation_revision, got.metadata.resource_version) == (1, 2)
    assert content(got) == content(service("web", port=8080))

    result = await store.apply([Delete(key(service("web")))])
    assert (result.revision, result.changes[0].action) == (3, "deleted")
    assert await store.get(key(service("web"))) is None
    assert await store.revision() == 3


async def test_unchanged_put_and_absent_delete_do_not_bump(store: Store) -> None:
    await store.apply([Put(service("web"))])
    stored = await store.get(key(service("web")))
    assert stored is not None
    # The same content, fresh or as read back (with the store's fields set), is unchanged.
    for doc in (service("web"), stored):
        result = await store.apply([Put(doc)])
        assert result.revision == 1
        assert result.changes[0].action == "unchanged"
    result = await store.apply([Delete(ResourceKey("Service", "default", "ghost"))])
    assert result.revision == 1
    assert result.changes[0].action == "absent"
    assert await store.revision() == 1
    async with watching(store, 0) as events:
        assert summary(await take(events, 1)) == [(1, "PUT", "web")]
        await store.apply([Put(service("other"))])
        # The next event is the next real change, not an unchanged put.
        assert summary(await take(events, 1)) == [(2, "PUT", "other")]


async def test_one_apply_bumps_once(store: Store) -> None:
    result = await store.apply(
        [Put(service("a")), Put(service("b")), Put(service("a")), Put(mesh_config())]
    )
    assert result.revision == 1
    assert [c.action for c in result.changes] == ["created", "created", "unchanged", "created"]
    docs = await store.list()
    assert [d.metadata.resource_version for d in docs] == [1, 1, 1]


async def test_list_sorted_and_filtered(store: Store) -> None:
    await store.apply(
        [
            Put(workload("w1")),
            Put(service("b", namespace="shop")),
            Put(service("a", namespace="shop")),
            Put(service("z")),
            Put(mesh_config()),
        ]
    )
    names = [(d.kind, d.namespace, d.name) for d in await store.list()]
    assert names == [
        ("MeshConfig", "", "mesh"),
        ("Service", "default", "z"),
        ("Service", "shop", "a"),
        ("Service", "shop", "b"),
        ("Workload", "default", "w1"),
    ]
    assert [d.name for d in await store.list("Service")] == ["z", "a", "b"]
    assert [d.name for d in await store.list("Service", "shop")] == ["a", "b"]
    assert [d.name for d in await store.list(namespace="default")] == ["z", "w1"]
    assert await store.get(ResourceKey("MeshConfig", "", "mesh")) is not None


# -- atomicity, conflicts, dry run -------------------------------------------------------------


async def test_expect_revision_conflict_changes_nothing(store: Store) -> None:
    await store.apply([Put(service("web"))])
    with pytest.raises(Conflict):
        await store.apply([Put(service("web", port=81)), Put(service("api"))], expect_revision=0)
    assert await store.revision() == 1
    assert content(await store.get(key(service("web")))) == content(service("web"))
    assert await store.get(key(service("api"))) is None
    result = await store.apply([Put(service("api"))], expect_revision=1)
    assert result.revision == 2


async def test_failure_mid_transaction_rolls_back_everything(store: Store) -> None:
    await store.apply([Put(service("web"))])
    # The first two ops succeed inside the transaction, the third fails: none must stay.
    ops: list[Op] = [
        Put(service("web", port=81)),
        Put(service("api")),
        PutLease(ResourceKey("Workload", "default", "ghost"), ttl=10),
    ]
    with pytest.raises(MissingWorkload):
        await store.apply(ops)
    assert await store.revision() == 1
    assert [d.name for d in await store.list()] == ["web"]
    assert content(await store.get(key(service("web")))) == content(service("web"))
    assert await store.list_leases() == []
    # A later write gets the next revision: nothing of the failed one leaked.
    assert (await store.apply([Put(service("api"))])).revision == 2
    async with watching(store, 0) as events:
        assert summary(await take(events, 2)) == [(1, "PUT", "web"), (2, "PUT", "api")]


async def test_malformed_ops_are_refused(store: Store) -> None:
    await store.apply([Put(service("web"))])
    with pytest.raises(ValueError):
        await store.apply([Put(service("x")), PutLease(key(service("web")), ttl=10)])
    await store.apply([Put(workload("w"))])
    with pytest.raises(ValueError):
        await store.apply([PutLease(key(workload("w")), ttl=0)])
    assert await store.revision() == 2
    assert await store.get(key(service("x"))) is None


async def test_dry_run_reports_without_writing(store: Store) -> None:
    await store.apply([Put(service("web")), Put(service("old"))])
    before = await store.snapshot()
    result = await store.apply(
        [
            Put(service("web", port=81)),
            Put(service("new")),
            Put(service("old")),
            Delete(key(service("old"))),
            Delete(ResourceKey("Service", "default", "ghost")),
        ],
        dry_run=True,
    )
    assert [c.action for c in result.changes] == [
        "configured",
        "created",
        "unchanged",
        "deleted",
        "absent",
    ]
    assert result.revision == 1
    assert await store.snapshot() == before
    with pytest.raises(Conflict):
        await store.apply([Put(service("new"))], expect_revision=7, dry_run=True)
    with pytest.raises(MissingWorkload):
        await store.apply([PutLease(ResourceKey("Workload", "default", "x"), 5)], dry_run=True)
    # A real write after the dry run takes the very next revision.
    assert (await store.apply([Put(service("new"))])).revision == 2


# -- watch ---------------------------------------------------------------------------------


async def test_watch_replays_in_order_then_follows(store: Store) -> None:
    await store.apply([Put(service("a")), Put(service("b"))])
    await store.apply([Put(service("a", port=81))])
    await store.apply([Delete(key(service("b")))])
    async with watching(store, 0) as events:
        got = await take(events, 4)
        assert summary(got) == [
            (1, "PUT", "a"),
            (1, "PUT", "b"),
            (2, "PUT", "a"),
            (3, "DELETE", "b"),
        ]
        assert got[2].doc is not None
        assert got[2].doc.metadata.resource_version == 2
        assert got[2].doc.metadata.creation_revision == 1
        assert content(got[2].doc) == content(service("a", port=81))
        assert got[3].doc is None
        # Then it waits for new writes.
        pending = asyncio.ensure_future(anext(events))
        await asyncio.sleep(0)
        assert not pending.done()
        await store.apply([Put(service("c"))])
        event = await asyncio.wait_for(pending, WAIT)
        assert (event.revision, event.type, event.key.name) == (4, "PUT", "c")


async def test_watch_from_a_revision_skips_older_events(store: Store) -> None:
    for port in (81, 82, 83):
        await store.apply([Put(service("a", port=port))])
    async with watching(store, 2) as events:
        assert summary(await take(events, 1)) == [(3, "PUT", "a")]
    async with watching(store, 3) as events:
        with pytest.raises(TimeoutError):
            await take(events, 1, timeout=0.2)


async def test_watch_sees_writes_of_a_second_client(backend: StoreBackend, store: Store) -> None:
    other = backend.open()
    try:
        async with watching(store, 0) as events:
            await other.apply([Put(service("from-other"))])
            assert summary(await take(events, 1)) == [(1, "PUT", "from-other")]
            await other.apply([Put(workload("w")), PutLease(key(workload("w")), 30)])
            assert summary(await take(events, 2)) == [(2, "PUT", "w"), (2, "LEASE_PUT", "w")]
        assert await store.revision() == 2
        # And the other way round.
        async with watching(other, 2) as events:
            await store.apply([Delete(key(service("from-other")))])
            assert summary(await take(events, 1)) == [(3, "DELETE", "from-other")]
    finally:
        await other.aclose()


async def test_concurrent_watchers_see_the_same_order(store: Store) -> None:
    async def collect(n: int) -> list[tuple[int, str, str]]:
        async with watching(store, 0) as events:
            return summary(await take(events, n))

    watchers = [asyncio.ensure_future(collect(6)) for _ in range(3)]
    for i in range(3):
        await store.apply([Put(service(f"s{i}")), Put(workload(f"w{i}"))])
        await asyncio.sleep(0)
    results = await asyncio.gather(*watchers)
    expected = [(r, t, f"{p}{r - 1}") for r in (1, 2, 3) for t, p in (("PUT", "s"), ("PUT", "w"))]
    assert all(r == expected for r in results)


# -- leases --------------------------------------------------------------------------------


async def test_lease_events_only_on_create_health_change_and_delete(store: Store) -> None:
    w = key(workload("w"))
    await store.apply([Put(workload("w"))])
    t0 = time.time()
    result = await store.apply([PutLease(w, ttl=30)])
    assert result.revision == 2
    assert result.changes == ()  # leases are not listed in changes
    lease = await store.get_lease(w)
    assert lease is not None
    assert (lease.key, lease.ttl, lease.healthy) == (w, 30, True)
    assert t0 + 30 <= lease.expires_at <= time.time() + 30

    # A renewal moves expires_at only: no revision, no event.
    renewed = await store.apply([PutLease(w, ttl=60)])
    assert renewed.revision == 2
    lease2 = await store.get_lease(w)
    assert lease2 is not None
    assert lease2.expires_at > lease.expires_at
    assert lease2.ttl == 60

    assert (await store.apply([PutLease(w, ttl=60, healthy=False)])).revision == 3
    assert (await store.apply([PutLease(w, ttl=60, healthy=False)])).revision == 3
    assert (await store.apply([DeleteLease(w)])).revision == 4
    assert (await store.apply([DeleteLease(w)])).revision == 4  # absent: nothing
    assert await store.get_lease(w) is None
    assert await store.get(w) is not None  # the workload stays

    async with watching(store, 1) as events:
        got = await take(events, 3)
    assert summary(got) == [(2, "LEASE_PUT", "w"), (3, "LEASE_PUT", "w"), (4, "LEASE_DELETE", "w")]
    assert got[0].lease is not None and got[0].lease.healthy
    assert got[1].lease is not None and not got[1].lease.healthy
    assert got[2].lease is None


async def test_deleting_a_workload_deletes_its_lease(store: Store) -> None:
    w = key(workload("w"))
    result = await store.apply([Put(workload("w")), PutLease(w, ttl=30)])
    assert result.revision == 1
    assert [c.action for c in result.changes] == ["created"]
    result = await store.apply([Delete(w)])
    assert result.revision == 2
    assert await store.get_lease(w) is None
    assert await store.list_leases() == []
    async with watching(store, 0) as events:
        got = summary(await take(events, 4))
    assert got == [
        (1, "PUT", "w"),
        (1, "LEASE_PUT", "w"),
        (2, "LEASE_DELETE", "w"),
        (2, "DELETE", "w"),
    ]


async def test_lease_needs_its_workload(store: Store) -> None:
    w = ResourceKey("Workload", "default", "w")
    with pytest.raises(MissingWorkload):
        await store.apply([PutLease(w, ttl=5)])
    # Deleted earlier in the same apply: also missing.
    await store.apply([Put(workload("w"))])
    with pytest.raises(MissingWorkload):
        await store.apply([Delete(w), PutLease(w, ttl=5)])
    assert await store.get(w) is not None
    assert await store.revision() == 1


async def test_list_leases_sorted(store: Store) -> None:
    names = ["c", "a", "b"]
    await store.apply([Put(workload(n)) for n in names])
    await store.apply([PutLease(ResourceKey("Workload", "default", n), ttl=10) for n in names])
    assert [lease.key.name for lease in await store.list_leases()] == ["a", "b", "c"]


# -- snapshot and persistence --------------------------------------------------------------------


async def test_snapshot_holds_docs_and_leases_at_one_revision(store: Store) -> None:
    w = key(workload("w"))
    await store.apply([Put(service("web")), Put(workload("w")), PutLease(w, ttl=30)])
    await store.apply([Put(service("api"))])
    snap = await store.snapshot()
    assert snap.revision == 2
    assert [d.name for d in snap.docs] == ["api", "web", "w"]
    assert [d.metadata.resource_version for d in snap.docs] == [2, 1, 1]
    assert [lease.key for lease in snap.leases] == [w]


async def test_reopen_keeps_documents_leases_and_revision(backend: StoreBackend) -> None:
    w = key(workload("w"))
    first = backend.open()
    await first.apply([Put(service("web")), Put(workload("w")), PutLease(w, ttl=30, healthy=False)])
    await first.apply([Put(service("web", port=81))])
    lease = await first.get_lease(w)
    before = await first.snapshot()
    await first.aclose()

    second = backend.open()
    try:
        assert await second.snapshot() == before
        assert await second.get_lease(w) == lease
        assert (await second.apply([Put(service("api"))])).revision == 3
        async with watching(second, 0) as events:
            assert [e.revision for e in await take(events, 4)] == [1, 1, 1, 2]
    finally:
        await second.aclose()


async def test_watch_ends_when_the_store_closes(backend: StoreBackend) -> None:
    store = backend.open()
    events = store.watch(0)
    pending = asyncio.ensure_future(anext(events))
    await asyncio.sleep(0)
    await store.aclose()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(pending, WAIT)
    await store.aclose()  # idempotent
