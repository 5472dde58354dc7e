"""SqliteStore: the embedded Store backend, one SQLite file in WAL mode.

Theory of operation
-------------------
Tables: `state` (one row: the global revision and the revision up to which
events were compacted), `documents` (one row per resource: its JSON without the
store-owned metadata, plus its creation and last-change revisions), `leases`
(one row per leased Workload) and `events` (the change log watchers read).

Every `apply` is one `BEGIN IMMEDIATE ... COMMIT` transaction (`ROLLBACK` on
any error, and always for a dry run). The revision is bumped at most once per
transaction, lazily, by the first operation that changes something; every
event of that transaction carries the new revision. Lease renewals that do not
change `healthy` write `expires_at` but neither bump nor log an event, so
heartbeats do not churn revisions (nor push the event history into compaction).

History: events of the last `history` revisions are kept; a watch asking for
older ones raises `Compacted` (compaction is by revision, as etcd's, so a
revision is never half-kept).

Watch: each `watch` reads the events after its cursor in one short read
transaction, yields them, then waits on an `asyncio.Event` that every write of
this store object sets, or at most `poll_interval` seconds so that writes made
by another process (or another SqliteStore object) on the same file are seen.

Blocking: SQLite calls run directly on the event loop thread. Transactions are
short (no `await` inside one, so they never interleave within a process) and a
local SQLite write takes well under a millisecond; a thread hop would cost more
than it saves. The one way to block longer is another process holding the write
lock: `busy_timeout` bounds that wait. Use a store from the thread of the event
loop that created it.

What it must not know: how documents are validated beyond `parse_document`,
what the control plane does with events, the registry's expiry policy.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from trellis.model.base import Document
from trellis.model.documents import parse_document
from trellis.model.keys import ResourceKey
from trellis.store.base import (
    ApplyResult,
    Change,
    Compacted,
    Conflict,
    Delete,
    DeleteLease,
    Event,
    Lease,
    MissingWorkload,
    Op,
    Put,
    PutLease,
    Snapshot,
    Store,
)

SCHEMA_VERSION = 1

# Schema migrations: version -> statements that bring the previous version to it.
_MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        "CREATE TABLE state ("
        " id INTEGER PRIMARY KEY CHECK (id = 1),"
        " revision INTEGER NOT NULL,"
        " compacted INTEGER NOT NULL)",
        "INSERT INTO state (id, revision, compacted) VALUES (1, 0, 0)",
        "CREATE TABLE documents ("
        " kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,"
        " json TEXT NOT NULL,"
        " creation_revision INTEGER NOT NULL,"
        " resource_version INTEGER NOT NULL,"
        " PRIMARY KEY (kind, namespace, name)) WITHOUT ROWID",
        "CREATE TABLE leases ("
        " kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,"
        " ttl REAL NOT NULL, expires_at REAL NOT NULL, healthy INTEGER NOT NULL,"
        " PRIMARY KEY (kind, namespace, name)) WITHOUT ROWID",
        "CREATE TABLE events ("
        " id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " revision INTEGER NOT NULL,"
        " type TEXT NOT NULL,"
        " kind TEXT NOT NULL, namespace TEXT NOT NULL, name TEXT NOT NULL,"
        " json TEXT)",
        "CREATE INDEX events_by_revision ON events (revision)",
    ),
}

_STORE_FIELDS = ("resourceVersion", "creationRevision")
_EventType = Literal["PUT", "DELETE", "LEASE_PUT", "LEASE_DELETE"]
_WATCH_BATCH = 500  # revisions read per watch query


class UnsupportedSchema(RuntimeError):
    """The file was written by a newer Trellis (or is not a Trellis store)."""


def _content(doc: Document) -> str:
    """The document as stored: canonical JSON without the fields the store owns."""
    raw = doc.to_dict()
    meta = raw.get("metadata")
    if isinstance(meta, dict):
        raw["metadata"] = {k: v for k, v in meta.items() if k not in _STORE_FIELDS}
    return json.dumps(raw, sort_keys=True, separators=(",", ":"))


def _with_revisions(raw: dict[str, Any], creation: int, version: int) -> str:
    meta = dict(raw["metadata"])
    meta["creationRevision"] = creation
    meta["resourceVersion"] = version
    return json.dumps({**raw, "metadata": meta}, sort_keys=True, separators=(",", ":"))


def _load_document(text: str, creation: int, version: int) -> Document:
    doc = parse_document(json.loads(text))
    meta = doc.metadata.model_copy(
        update={"creation_revision": creation, "resource_version": version}
    )
    return doc.model_copy(update={"metadata": meta})


def _load_event_document(text: str) -> Document:
    raw = json.loads(text)
    meta = raw["metadata"]
    return _load_document(text, int(meta["creationRevision"]), int(meta["resourceVersion"]))


def _lease_json(lease: Lease) -> str:
    return json.dumps({"ttl": lease.ttl, "expiresAt": lease.expires_at, "healthy": lease.healthy})


def _lease_row(row: sqlite3.Row) -> Lease:
    key = ResourceKey(row["kind"], row["namespace"], row["name"])
    return Lease(key, float(row["ttl"]), float(row["expires_at"]), bool(row["healthy"]))


def _event_row(row: sqlite3.Row) -> Event:
    key = ResourceKey(row["kind"], row["namespace"], row["name"])
    kind: _EventType = row["type"]
    text: str | None = row["json"]
    if kind == "PUT" and text is not None:
        return Event(row["revision"], kind, key, doc=_load_event_document(text))
    if kind == "LEASE_PUT" and text is not None:
        raw = json.loads(text)
        lease = Lease(key, float(raw["ttl"]), float(raw["expiresAt"]), bool(raw["healthy"]))
        return Event(row["revision"], kind, key, lease=lease)
    return Event(row["revision"], kind, key)


@dataclass(slots=True)
class _Transaction:
    """The work of one `apply` inside an open write transaction (pure SQL, no awaits)."""

    conn: sqlite3.Connection
    now: float
    current: int  # the revision before this transaction
    revision: int | None = None  # set by the first change
    changes: list[Change] = field(default_factory=list)

    def bump(self) -> int:
        if self.revision is None:
            self.revision = self.current + 1
        return self.revision

    def event(self, type_: _EventType, key: ResourceKey, text: str | None) -> None:
        self.conn.execute(
            "INSERT INTO events (revision, type, kind, namespace, name, json)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (self.bump(), type_, *key, text),
        )

    def run(self, op: Op) -> None:
        match op:
            case Put(doc):
                self.put(doc)
            case Delete(key):
                self.delete(key)
            case PutLease(key, ttl, healthy):
                self.put_lease(key, ttl, healthy)
            case DeleteLease(key):
                self.delete_lease(key)
            case _:
                raise TypeError(f"not a store operation: {op!r}")

    def put(self, doc: Document) -> None:
        key = ResourceKey(doc.kind, doc.namespace, doc.name)
        content = _content(doc)
        row = self.conn.execute(
            "SELECT json, creation_revision FROM documents"
            " WHERE kind = ? AND namespace = ? AND name = ?",
            key,
        ).fetchone()
        if row is not None and row["json"] == content:
            self.changes.append(Change(key, "unchanged"))
            return
        revision = self.bump()
        creation = revision if row is None else int(row["creation_revision"])
        self.conn.execute(
            "INSERT OR REPLACE INTO documents"
            " (kind, namespace, name, json, creation_revision, resource_version)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (*key, content, creation, revision),
        )
        self.event("PUT", key, _with_revisions(json.loads(content), creation, revision))
        self.changes.append(Change(key, "created" if row is None else "configured"))

    def delete(self, key: ResourceKey) -> None:
        cursor = self.conn.execute(
            "DELETE FROM documents WHERE kind = ? AND namespace = ? AND name = ?", key
        )
        if cursor.rowcount == 0:
            self.changes.append(Change(key, "absent"))
            return
        self.delete_lease(key)  # a Workload's lease goes with it
        self.event("DELETE", key, None)
        self.changes.append(Change(key, "deleted"))

    def put_lease(self, key: ResourceKey, ttl: float, healthy: bool) -> None:
        exists = self.conn.execute(
            "SELECT 1 FROM documents WHERE kind = ? AND namespace = ? AND name = ?", key
        ).fetchone()
        if exists is None:
            raise MissingWorkload(f"no {key} to lease")
        row = self.conn.execute(
            "SELECT healthy FROM leases WHERE kind = ? AND namespace = ? AND name = ?", key
        ).fetchone()
        lease = Lease(key, ttl, self.now + ttl, healthy)
        self.conn.execute(
            "INSERT OR REPLACE INTO leases (kind, namespace, name, ttl, expires_at, healthy)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (*key, ttl, lease.expires_at, int(healthy)),
        )
        if row is None or bool(row["healthy"]) != healthy:
            self.event("LEASE_PUT", key, _lease_json(lease))

    def delete_lease(self, key: ResourceKey) -> None:
        cursor = self.conn.execute(
            "DELETE FROM leases WHERE kind = ? AND namespace = ? AND name = ?", key
        )
        if cursor.rowcount:
            self.event("LEASE_DELETE", key, None)


def _check_op(op: Op) -> None:
    if isinstance(op, PutLease | DeleteLease) and op.key.kind != "Workload":
        raise ValueError(f"only Workloads have leases, not {op.key}")
    if isinstance(op, PutLease) and not op.ttl > 0:
        raise ValueError(f"lease ttl must be positive, got {op.ttl!r}")


class SqliteStore(Store):
    """A Store in one SQLite file (created with mode 0600 when absent).

    `history`: how many revisions of events are kept for watchers.
    `poll_interval`: how often an idle watch looks for writes of other processes.
    `busy_timeout`: how long a write waits for another process's write lock.
    """

    def __init__(
        self,
        path: Path,
        *,
        history: int = 10_000,
        poll_interval: float = 0.25,
        busy_timeout: float = 5.0,
    ) -> None:
        if history < 1:
            raise ValueError("history must keep at least one revision")
        self.path = Path(path)
        self._history = history
        self._poll_interval = poll_interval
        self._changed = asyncio.Event()
        self._closed = False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        os.chmod(self.path, 0o600)
        self._conn = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._conn.row_factory = sqlite3.Row
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    # -- setup ---------------------------------------------------------------------

    def _migrate(self) -> None:
        with self._write():
            self._conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER)")
            row = self._conn.execute("SELECT max(version) AS v FROM schema_version").fetchone()
            version = int(row["v"] or 0)
            if version > SCHEMA_VERSION:
                raise UnsupportedSchema(
                    f"{self.path} has schema version {version}; this Trellis knows up to "
                    f"{SCHEMA_VERSION}"
                )
            for target in range(version + 1, SCHEMA_VERSION + 1):
                for statement in _MIGRATIONS[target]:
                    self._conn.execute(statement)
                self._conn.execute("INSERT INTO schema_version (version) VALUES (?)", (target,))

    # -- transactions ----------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, or ROLLBACK on any error."""
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query inside sees the same revision."""
        if self._closed:
            raise RuntimeError("the store is closed")
        self._conn.execute("BEGIN")
        try:
            yield self._conn
        finally:
            self._conn.execute("COMMIT")

    def _rollback(self) -> None:
        if self._conn.in_transaction:  # SQLite may have rolled back by itself on some errors
            self._conn.execute("ROLLBACK")

    def _state(self, conn: sqlite3.Connection) -> tuple[int, int]:
        row = conn.execute("SELECT revision, compacted FROM state").fetchone()
        return int(row["revision"]), int(row["compacted"])

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    # -- reads -----------------------------------------------------------------------

    async def revision(self) -> int:
        with self._read() as conn:
            return self._state(conn)[0]

    async def get(self, key: ResourceKey) -> Document | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT json, creation_revision, resource_version FROM documents"
                " WHERE kind = ? AND namespace = ? AND name = ?",
                tuple(key),
            ).fetchone()
        if row is None:
            return None
        return _load_document(row["json"], row["creation_revision"], row["resource_version"])

    async def list(self, kind: str | None = None, namespace: str | None = None) -> list[Document]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT json, creation_revision, resource_version FROM documents"
                " WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR namespace = ?2)"
                " ORDER BY kind, namespace, name",
                (kind, namespace),
            ).fetchall()
        return [
            _load_document(r["json"], r["creation_revision"], r["resource_version"]) for r in rows
        ]

    async def snapshot(self) -> Snapshot:
        with self._read() as conn:
            revision, _ = self._state(conn)
            docs = conn.execute(
                "SELECT json, creation_revision, resource_version FROM documents"
                " ORDER BY kind, namespace, name"
            ).fetchall()
            leases = conn.execute("SELECT * FROM leases ORDER BY kind, namespace, name").fetchall()
        return Snapshot(
            revision,
            tuple(
                _load_document(r["json"], r["creation_revision"], r["resource_version"])
                for r in docs
            ),
            tuple(_lease_row(r) for r in leases),
        )

    async def get_lease(self, key: ResourceKey) -> Lease | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT * FROM leases WHERE kind = ? AND namespace = ? AND name = ?", tuple(key)
            ).fetchone()
        return None if row is None else _lease_row(row)

    async def list_leases(self) -> builtins.list[Lease]:
        with self._read() as conn:
            rows = conn.execute("SELECT * FROM leases ORDER BY kind, namespace, name").fetchall()
        return [_lease_row(r) for r in rows]

    # -- writes ----------------------------------------------------------------------

    async def apply(
        self, ops: Sequence[Op], *, expect_revision: int | None = None, dry_run: bool = False
    ) -> ApplyResult:
        """Apply every op atomically (or, with dry_run, say what would change).

        Raises `Conflict` when `expect_revision` is not the current revision,
        `MissingWorkload` for a lease of a Workload that does not exist,
        `ValueError` for a malformed op; in every case nothing is written. A dry
        run reports the changes a real apply would make and the current revision.
        """
        if self._closed:
            raise RuntimeError("the store is closed")
        for op in ops:
            _check_op(op)
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            current, compacted = self._state(self._conn)
            if expect_revision is not None and expect_revision != current:
                raise Conflict(f"expected revision {expect_revision}, the store is at {current}")
            txn = _Transaction(self._conn, time.time(), current)
            for op in ops:
                txn.run(op)
            if txn.revision is not None:
                self._finish(txn.revision, compacted)
            if dry_run:
                self._rollback()
                return ApplyResult(current, tuple(txn.changes))
            self._conn.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if txn.revision is not None:
            self._notify()
        return ApplyResult(txn.revision or current, tuple(txn.changes))

    def _finish(self, revision: int, compacted: int) -> None:
        """Record the new revision and drop events older than the kept history."""
        drop_through = revision - self._history
        if drop_through > compacted:
            self._conn.execute("DELETE FROM events WHERE revision <= ?", (drop_through,))
            compacted = drop_through
        self._conn.execute("UPDATE state SET revision = ?, compacted = ?", (revision, compacted))

    # -- watch -----------------------------------------------------------------------

    async def watch(self, from_revision: int) -> AsyncIterator[Event]:
        """Every event after `from_revision`, in order, then each new one as it happens.

        Raises `Compacted` when events after `from_revision` are no longer kept
        (also later, if a slow consumer falls behind the kept history). Ends
        when the store is closed.
        """
        after = from_revision
        while not self._closed:
            wake = self._changed  # taken before reading, so no write is missed
            with self._read() as conn:
                _, compacted = self._state(conn)
                if after < compacted:
                    raise Compacted(
                        f"events after revision {after} are gone (kept from {compacted + 1})"
                    )
                rows = conn.execute(
                    "SELECT * FROM events WHERE revision > ? AND revision <= ? ORDER BY id",
                    (after, after + _WATCH_BATCH),
                ).fetchall()
            if rows:
                for row in rows:
                    yield _event_row(row)
                after = int(rows[-1]["revision"])
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), self._poll_interval)

    # -- lifetime --------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close the file; watches end at their next step. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._conn.close()
        self._notify()
