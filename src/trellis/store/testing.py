"""Store backends and helpers for tests: one suite runs against every backend in BACKENDS.

A `StoreBackend` is one shared state (a SQLite file; later an etcd prefix) that
tests can open several clients on, to see what a second control plane sharing
it sees, or what a restarted one finds. Also sample documents and watch
helpers that the store and registry tests share. It knows nothing about pytest.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path

from trellis.model.base import API_VERSION, Document
from trellis.model.documents import parse_document
from trellis.model.keys import ResourceKey
from trellis.model.workload import Workload
from trellis.store.base import Event, Store
from trellis.store.sqlite import SqliteStore

BACKENDS = ("sqlite",)


class StoreBackend(abc.ABC):
    name: str

    @abc.abstractmethod
    def open(self) -> Store:
        """A new client on this backend's shared state (the caller closes it)."""


class SqliteBackend(StoreBackend):
    name = "sqlite"

    def __init__(self, path: Path, *, poll_interval: float = 0.05) -> None:
        self.path = path
        self.poll_interval = poll_interval

    def open(self) -> Store:
        return SqliteStore(self.path, poll_interval=self.poll_interval)


def make_backend(name: str, workdir: Path) -> StoreBackend:
    """The backend called `name` (one of BACKENDS), keeping its files under `workdir`."""
    if name == "sqlite":
        return SqliteBackend(workdir / "state.db")
    raise ValueError(f"unknown store backend {name!r}; known: {', '.join(BACKENDS)}")


# -- sample documents ----------------------------------------------------------------------


def service(name: str, port: int = 80, namespace: str = "default") -> Document:
    """A Service selecting `app=NAME`, with one port."""
    return parse_document(
        {
            "apiVersion": API_VERSION,
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"selector": {"app": name}, "ports": [{"port": port}]},
        }
    )


def workload(name: str, address: str = "127.0.0.1", namespace: str = "default") -> Workload:
    """A proxyless Workload labelled `app=NAME`, listening on 50051."""
    doc = parse_document(
        {
            "apiVersion": API_VERSION,
            "kind": "Workload",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
            "spec": {"address": address, "proxyless": True, "ports": [{"port": 50051}]},
        }
    )
    assert isinstance(doc, Workload)
    return doc


def mesh_config() -> Document:
    return parse_document(
        {"apiVersion": API_VERSION, "kind": "MeshConfig", "metadata": {"name": "mesh"}}
    )


def key(doc: Document) -> ResourceKey:
    return ResourceKey(doc.kind, doc.namespace, doc.name)


def content(doc: Document | None) -> dict[str, object]:
    """A document as the user wrote it: without the fields the store sets."""
    assert doc is not None, "no document"
    raw = doc.to_dict()
    meta = raw["metadata"]
    assert isinstance(meta, dict)
    raw["metadata"] = {
        k: v for k, v in meta.items() if k not in ("resourceVersion", "creationRevision")
    }
    return raw


# -- watching ----------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def watching(store: Store, from_revision: int) -> AsyncIterator[AsyncIterator[Event]]:
    """`store.watch(from_revision)`, closed on exit."""
    events = store.watch(from_revision)
    try:
        yield events
    finally:
        if isinstance(events, AsyncGenerator):
            await events.aclose()


async def take(events: AsyncIterator[Event], n: int, timeout: float = 5.0) -> list[Event]:
    """The next `n` events; TimeoutError when one takes longer than `timeout` seconds."""
    return [await asyncio.wait_for(anext(events), timeout) for _ in range(n)]


def summary(events: list[Event]) -> list[tuple[int, str, str]]:
    """(revision, type, name) of each event: short to compare."""
    return [(e.revision, e.type, e.key.name) for e in events]
