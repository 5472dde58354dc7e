"""Join tokens: their format, and what is stored of them. Pure.

A token is `ID.SECRET`: the ID (12 hex digits) is public (listed, revoked by
it); the secret (256 random bits, URL-safe base64) is shown once and only its
SHA-256 is stored. Checking compares digests in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

ID_BYTES = 6
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A join token as the CA stores it: scoped to one service account in one namespace."""

    id: str
    sha256: str  # of the secret, hex
    service_account: str
    namespace: str
    created: float  # time.time()
    expires: float
    revoked_at: float | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def expired(self, now: float) -> bool:
        return now >= self.expires

    def matches(self, secret: str) -> bool:
        return hmac.compare_digest(digest(secret), self.sha256)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token() -> tuple[str, str]:
    """(id, the full token `ID.SECRET`)."""
    token_id = secrets.token_hex(ID_BYTES)
    return token_id, f"{token_id}.{secrets.token_urlsafe(SECRET_BYTES)}"


def split(token: str) -> tuple[str, str]:
    """(id, secret) of `ID.SECRET`; ValueError for anything else."""
    token_id, dot, secret = token.strip().partition(".")
    if not dot or not token_id or not secret:
        raise ValueError("a join token looks like ID.SECRET")
    return token_id, secret
