"""Store backends for tests: one suite runs against every backend named in BACKENDS.

A `StoreBackend` is one shared state (a SQLite file; later an etcd prefix) that
tests can open several clients on, to see what a second control plane sharing
it sees, or what a restarted one finds. It knows nothing about pytest.
"""

from __future__ import annotations

import abc
from pathlib import Path

from trellis.store.base import Store
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
