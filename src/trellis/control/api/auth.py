"""The admin token: created on first start, stored only as its SHA-256, checked in constant time.

Owns the token file (`DATA_DIR/admin-token.sha256`, mode 0600). Knows nothing
about HTTP: the API turns `AdminToken.verify` into a FastAPI dependency.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

TOKEN_FILE = "admin-token.sha256"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class AdminToken:
    """Checks bearer tokens against the stored digest."""

    sha256_hex: str

    def verify(self, token: str | None) -> bool:
        if not token:
            return False
        return hmac.compare_digest(_digest(token), self.sha256_hex)

    @classmethod
    def of(cls, token: str) -> AdminToken:
        return cls(_digest(token))


@dataclass(frozen=True, slots=True)
class TokenSetup:
    """The verifier, and the plain token when it was created by this start (else None)."""

    verifier: AdminToken
    new_token: str | None


def load_or_create(data_dir: Path, preset: str | None = None) -> TokenSetup:
    """Read the stored digest; on first start store one for `preset` or a fresh random token.

    `preset` (the control plane's `TRELLIS_TOKEN`) only matters on first start:
    afterwards the stored digest wins, whatever the environment says.
    """
    path = data_dir / TOKEN_FILE
    if path.exists():
        digest = path.read_text().strip()
        if len(digest) != 64:
            raise ValueError(
                f"{path} does not hold a SHA-256 hex digest; delete it to make a new token"
            )
        return TokenSetup(AdminToken(digest), None)
    token = preset or secrets.token_urlsafe(32)
    verifier = AdminToken.of(token)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(verifier.sha256_hex + "\n")
    return TokenSetup(verifier, token)
