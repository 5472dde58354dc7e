"""Where mesh resources and workload leases live: an interface and its backends.

`Store` (base.py) is what the control plane uses; `SqliteStore` is the
embedded default. An etcd backend implements the same interface later.
"""

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
from trellis.store.sqlite import SqliteStore

__all__ = [
    "ApplyResult",
    "Change",
    "Compacted",
    "Conflict",
    "Delete",
    "DeleteLease",
    "Event",
    "Lease",
    "MissingWorkload",
    "Op",
    "Put",
    "PutLease",
    "Snapshot",
    "SqliteStore",
    "Store",
]
