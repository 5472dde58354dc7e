"""The scrape token: the one credential a Prometheus needs for the whole mesh.

Prometheus sends it (`authorization: {credentials_file: ...}`) both to the control
plane's HTTP service discovery and to every proxy's metrics listener. The control plane
holds the token itself, in `DATA_DIR/scrape-token` (mode 0600, beside the CA key), so the
admin can hand it to Prometheus (`trellis metrics token`); proxies get only its SHA-256
(`trellis run` asks for it with the admin token; `trellis proxy --metrics-token-sha256`),
so a proxy's host, flags or memory never hold a credential for its peers' metrics.

Made on first start: from `TRELLIS_SCRAPE_TOKEN` when set, else random. Rotating it:
delete the file and restart the control plane, then restart the proxies (each learns
the new digest when `trellis run` starts it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

SCRAPE_TOKEN_FILE = "scrape-token"


@dataclass(frozen=True, slots=True)
class ScrapeToken:
    token: str
    path: Path | None = None  # where it is kept (what Prometheus's credentials_file can name)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.token.encode()).hexdigest()

    def verify(self, token: str | None) -> bool:
        if not token:
            return False
        digest = hashlib.sha256(token.encode()).hexdigest()
        return hmac.compare_digest(digest, self.sha256)


def load_or_create(data_dir: Path, preset: str | None = None) -> ScrapeToken:
    """The stored token; on first start, `preset` or a fresh random one, stored 0600."""
    path = data_dir / SCRAPE_TOKEN_FILE
    if path.exists():
        token = path.read_text().strip()
        if not token or any(c.isspace() for c in token):
            raise ValueError(f"{path} does not hold a scrape token; delete it to make a new one")
        return ScrapeToken(token, path)
    token = preset or secrets.token_urlsafe(32)
    if any(c.isspace() for c in token):
        raise ValueError("TRELLIS_SCRAPE_TOKEN must not contain white space")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return ScrapeToken(token, path)
