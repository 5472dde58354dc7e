"""IdentityError: the CA refused us (or could not be reached) before we had an identity."""

from __future__ import annotations


class IdentityError(Exception):
    """The CA refused us (or could not be reached) when we had no identity yet."""
