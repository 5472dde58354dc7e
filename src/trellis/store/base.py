"""The Store interface: revisioned documents, atomic multi-document writes, watch, leases.

Semantics (an etcd backend must keep them):
- One global revision, incremented once per write transaction that changes
  something. A document remembers the revision that created it
  (`metadata.creationRevision`) and the one that last changed it
  (`metadata.resourceVersion`); the store sets both, users never do.
- `apply` is all or nothing. A Put whose document equals the stored one is
  "unchanged" and does not bump the revision; a transaction of only unchanged
  operations leaves the revision as it was.
- `watch(from_revision)` yields every event with a revision greater than
  `from_revision`, in order, then waits for more; it raises `Compacted` when
  those events are no longer kept.
- A lease belongs to one Workload. Creating it, deleting it or changing its
  `healthy` flag is an event; renewing it (a heartbeat) only moves
  `expires_at` and is not. Deleting a Workload deletes its lease.
  `expires_at` is wall-clock (time.time()) so that it survives restarts.
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Literal

from trellis.model.base import Document
from trellis.model.keys import ResourceKey


@dataclass(frozen=True, slots=True)
class Put:
    doc: Document


@dataclass(frozen=True, slots=True)
class Delete:
    key: ResourceKey


@dataclass(frozen=True, slots=True)
class PutLease:
    """Create or renew the lease of Workload `key`: it expires `ttl` seconds from now."""

    key: ResourceKey
    ttl: float
    healthy: bool = True


@dataclass(frozen=True, slots=True)
class DeleteLease:
    key: ResourceKey


Op = Put | Delete | PutLease | DeleteLease


@dataclass(frozen=True, slots=True)
class Lease:
    key: ResourceKey  # the Workload's key
    ttl: float
    expires_at: float  # time.time() seconds
    healthy: bool


@dataclass(frozen=True, slots=True)
class Change:
    key: ResourceKey
    action: Literal["created", "configured", "unchanged", "deleted", "absent"]


@dataclass(frozen=True, slots=True)
class ApplyResult:
    revision: int  # the store's revision after the write (unchanged if nothing changed)
    changes: tuple[Change, ...]  # one per Put/Delete, in order (leases are not listed)


@dataclass(frozen=True, slots=True)
class Event:
    revision: int
    type: Literal["PUT", "DELETE", "LEASE_PUT", "LEASE_DELETE"]
    key: ResourceKey
    doc: Document | None = None  # the new document for PUT
    lease: Lease | None = None  # the lease for LEASE_PUT


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Every document and lease at one revision."""

    revision: int
    docs: tuple[Document, ...]
    leases: tuple[Lease, ...]


class Conflict(Exception):
    """`expect_revision` did not match the store's current revision."""


class MissingWorkload(LookupError):
    """A `PutLease` named a Workload that does not exist (nor is Put earlier in the same apply).

    The whole apply is rolled back. The registry turns it into `UnknownWorkload`:
    the client must register again.
    """


class Compacted(Exception):
    """The events a watch asked for are no longer kept: re-read a snapshot."""


class Store(abc.ABC):
    @abc.abstractmethod
    async def revision(self) -> int: ...

    @abc.abstractmethod
    async def get(self, key: ResourceKey) -> Document | None: ...

    @abc.abstractmethod
    async def list(
        self, kind: str | None = None, namespace: str | None = None
    ) -> builtins.list[Document]:
        """Documents sorted by (kind, namespace, name)."""

    @abc.abstractmethod
    async def snapshot(self) -> Snapshot: ...

    @abc.abstractmethod
    async def apply(
        self, ops: Sequence[Op], *, expect_revision: int | None = None, dry_run: bool = False
    ) -> ApplyResult:
        """Apply every op atomically (or, with dry_run, say what would change)."""

    @abc.abstractmethod
    def watch(self, from_revision: int) -> AsyncIterator[Event]: ...

    @abc.abstractmethod
    async def get_lease(self, key: ResourceKey) -> Lease | None: ...

    @abc.abstractmethod
    async def list_leases(self) -> builtins.list[Lease]: ...

    @abc.abstractmethod
    async def aclose(self) -> None: ...

    async def __aenter__(self) -> Store:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
