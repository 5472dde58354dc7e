"""What only the SQLite backend promises: its file, its schema, its history and wake-ups."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
import sys
from pathlib import Path

import pytest

from trellis.store import Compacted, Put, PutLease, SqliteStore
from trellis.store.sqlite import SCHEMA_VERSION, UnsupportedSchema
from trellis.store.testing import key, service, summary, take, watching, workload

WAIT = 5.0


async def test_file_is_private_wal_and_versioned(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    store = SqliteStore(path)
    try:
        await store.apply([Put(service("web"))])
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for extra in (path.with_name("state.db-wal"), path.with_name("state.db-shm")):
            assert stat.S_IMODE(extra.stat().st_mode) == 0o600
        with sqlite3.connect(path) as raw:
            assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
            assert raw.execute("SELECT max(version) FROM schema_version").fetchone()[0] == (
                SCHEMA_VERSION
            )
        raw.close()
    finally:
        await store.aclose()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await SqliteStore(path).aclose()
    raw = sqlite3.connect(path)
    with raw:
        raw.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION + 1,))
    raw.close()
    with pytest.raises(UnsupportedSchema):
        SqliteStore(path)


async def test_watch_is_woken_by_a_write_at_once_not_by_polling(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", poll_interval=3600)
    try:
        async with watching(store, 0) as events:
            pending = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0)  # the watch is now waiting
            assert not pending.done()
            await store.apply([Put(service("web"))])
            event = await asyncio.wait_for(pending, WAIT)
            assert (event.revision, event.key.name) == (1, "web")
    finally:
        await store.aclose()


async def test_watch_polls_for_writes_of_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, poll_interval=0.05)
    try:
        async with watching(store, 0) as events:
            pending = asyncio.ensure_future(anext(events))
            await asyncio.sleep(0)
            # A second process, as far as this store object can tell: its own connection.
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                "import asyncio, sys\n"
                "from trellis.store import Put, SqliteStore\n"
                "from trellis.model import parse_document\n"
                "doc = parse_document({'apiVersion': 'trellis.dev/v1alpha1', 'kind': 'Service',"
                " 'metadata': {'name': 'remote'}, 'spec': {'ports': [{'port': 80}]}})\n"
                "async def main():\n"
                "    s = SqliteStore(sys.argv[1])\n"
                "    await s.apply([Put(doc)])\n"
                "    await s.aclose()\n"
                "asyncio.run(main())\n",
                str(path),
            )
            assert await asyncio.wait_for(proc.wait(), 60) == 0
            event = await asyncio.wait_for(pending, WAIT)
            assert (event.revision, event.type, event.key.name) == (1, "PUT", "remote")
    finally:
        await store.aclose()


async def test_old_events_are_compacted(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", history=3)
    try:
        for port in range(81, 87):  # revisions 1..6
            await store.apply([Put(service("web", port=port))])
        for start in (0, 1, 2):
            async with watching(store, start) as events:
                with pytest.raises(Compacted):
                    await take(events, 1)
        async with watching(store, 3) as events:
            assert [e.revision for e in await take(events, 3)] == [4, 5, 6]
        # Documents are not history: they stay.
        doc = await store.get(key(service("web")))
        assert doc is not None
        assert doc.metadata.creation_revision == 1
    finally:
        await store.aclose()


async def test_a_watcher_that_falls_behind_history_gets_compacted(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", history=2)
    try:
        await store.apply([Put(service("a"))])
        async with watching(store, 0) as events:
            assert summary(await take(events, 1)) == [(1, "PUT", "a")]
            for port in range(81, 85):
                await store.apply([Put(service("a", port=port))])
            with pytest.raises(Compacted):
                await take(events, 1)
    finally:
        await store.aclose()


async def test_heartbeats_do_not_consume_history(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db", history=2)
    try:
        w = key(workload("w"))
        await store.apply([Put(workload("w")), PutLease(w, ttl=10)])
        for _ in range(10):
            await store.apply([PutLease(w, ttl=10)])
        async with watching(store, 0) as events:
            assert summary(await take(events, 2)) == [(1, "PUT", "w"), (1, "LEASE_PUT", "w")]
    finally:
        await store.aclose()


async def test_a_reopened_store_remembers_compaction(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = SqliteStore(path, history=1)
    for port in (81, 82, 83):
        await store.apply([Put(service("web", port=port))])
    await store.aclose()
    store = SqliteStore(path)  # a larger history does not bring old events back
    try:
        async with watching(store, 1) as events:
            with pytest.raises(Compacted):
                await take(events, 1)
        async with watching(store, 2) as events:
            assert [e.revision for e in await take(events, 1)] == [3]
    finally:
        await store.aclose()


async def test_closed_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.db")
    await store.aclose()
    with pytest.raises(RuntimeError):
        await store.apply([Put(service("web"))])
    with pytest.raises(RuntimeError):
        await store.get(key(service("web")))
