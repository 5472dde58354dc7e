"""Errors every Store backend raises besides base.py's `Conflict` and `Compacted`.

Kept apart from base.py only because base.py is frozen for now; it is part of
the Store contract (an etcd backend raises the same).
"""

from __future__ import annotations


class MissingWorkload(LookupError):
    """A `PutLease` named a Workload that does not exist (nor is Put earlier in the same apply).

    The whole apply is rolled back. The registry turns it into `UnknownWorkload`:
    the client must register again.
    """
