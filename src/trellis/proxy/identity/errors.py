"""IdentityError, importable without loading `cryptography` (a sidecar without a mesh
identity never loads it: ~10 MB of RSS)."""

from __future__ import annotations


class IdentityError(Exception):
    """The CA refused us (or could not be reached) when we had no identity yet."""
