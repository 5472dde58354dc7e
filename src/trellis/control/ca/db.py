"""`ca.db`: the CA's bookkeeping in SQLite: join tokens and the certificates they issued.

Tables:
- `tokens`: id, SHA-256 of the secret, service account, namespace, created,
  expires, revoked_at (NULL while valid). Tokens are never deleted: a revoked
  token must stay known so that its certificates cannot renew.
- `certificates`: one row per issued SVID: serial (hex), SPIFFE ID, namespace,
  service account, the token it descends from, its lineage (the serial of the
  first certificate of a renewal chain: one lineage per proxy), validity, and
  the node that last presented it on the secure xDS port. Rows expired for more
  than a day are pruned when new ones are written.

Every call is one short transaction on the event-loop thread (as the state
store does). Knows nothing of X.509, gRPC or HTTP. sqlite3 errors propagate.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from trellis.control.ca.tokens import TokenRecord

PRUNE_AFTER_SECONDS = 86400.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL,
    service_account TEXT NOT NULL,
    namespace TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY,
    spiffe_id TEXT NOT NULL,
    namespace TEXT NOT NULL,
    service_account TEXT NOT NULL,
    token_id TEXT NOT NULL REFERENCES tokens(id),
    lineage TEXT NOT NULL,
    not_before REAL NOT NULL,
    not_after REAL NOT NULL,
    issued REAL NOT NULL,
    node TEXT
);
CREATE INDEX IF NOT EXISTS certificates_identity ON certificates(namespace, service_account);
CREATE INDEX IF NOT EXISTS certificates_expiry ON certificates(not_after);
"""


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    serial: str
    spiffe_id: str
    namespace: str
    service_account: str
    token_id: str
    lineage: str  # serial of the first certificate this one renews (itself when first)
    not_before: float
    not_after: float
    issued: float
    node: str | None = None  # the xDS node that last presented it


class CaDb:
    def __init__(self, path: Path) -> None:
        new = not path.exists()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        if new:
            os.chmod(path, 0o600)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    # -- tokens ---------------------------------------------------------------------------

    def add_token(self, token: TokenRecord) -> None:
        with self._db:
            self._db.execute(
                "INSERT INTO tokens VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    token.id,
                    token.sha256,
                    token.service_account,
                    token.namespace,
                    token.created,
                    token.expires,
                    token.revoked_at,
                ),
            )

    def token(self, token_id: str) -> TokenRecord | None:
        row = self._db.execute("SELECT * FROM tokens WHERE id = ?", (token_id,)).fetchone()
        return None if row is None else TokenRecord(*row)

    def tokens(self) -> list[TokenRecord]:
        rows = self._db.execute("SELECT * FROM tokens ORDER BY created, id").fetchall()
        return [TokenRecord(*row) for row in rows]

    def revoke_token(self, token_id: str, now: float) -> TokenRecord | None:
        """Mark it revoked (the first revocation time is kept); None when unknown."""
        with self._db:
            self._db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (now, token_id),
            )
        return self.token(token_id)

    def issued_by_token(self, token_id: str, now: float) -> int:
        """How many unexpired certificates descend from the token."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM certificates WHERE token_id = ? AND not_after > ?",
            (token_id, now),
        ).fetchone()
        return int(row[0])

    # -- certificates ---------------------------------------------------------------------

    def add_certificate(self, cert: CertificateRecord) -> None:
        with self._db:
            self._db.execute(
                "DELETE FROM certificates WHERE not_after < ?",
                (cert.issued - PRUNE_AFTER_SECONDS,),
            )
            self._db.execute(
                "INSERT INTO certificates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cert.serial,
                    cert.spiffe_id,
                    cert.namespace,
                    cert.service_account,
                    cert.token_id,
                    cert.lineage,
                    cert.not_before,
                    cert.not_after,
                    cert.issued,
                    cert.node,
                ),
            )

    def certificate(self, serial: str) -> CertificateRecord | None:
        row = self._db.execute("SELECT * FROM certificates WHERE serial = ?", (serial,)).fetchone()
        return None if row is None else CertificateRecord(*row)

    def record_node(self, serial: str, node: str) -> None:
        """The node `node` presented certificate `serial` (its lineage's later ones inherit it)."""
        with self._db:
            self._db.execute("UPDATE certificates SET node = ? WHERE serial = ?", (node, serial))

    def current(
        self, now: float, namespace: str | None = None, service_account: str | None = None
    ) -> list[CertificateRecord]:
        """The newest unexpired certificate of every lineage, optionally of one identity.

        A proxy renews before expiry, so the newest certificate of its lineage is
        the one it uses; older ones are superseded.
        """
        where = ["c.not_after > ?"]
        args: list[object] = [now]
        if namespace is not None:
            where.append("c.namespace = ?")
            args.append(namespace)
        if service_account is not None:
            where.append("c.service_account = ?")
            args.append(service_account)
        rows = self._db.execute(
            f"""
            SELECT c.serial, c.spiffe_id, c.namespace, c.service_account, c.token_id, c.lineage,
                   c.not_before, c.not_after, c.issued,
                   (SELECT n.node FROM certificates n WHERE n.lineage = c.lineage
                      AND n.node IS NOT NULL ORDER BY n.rowid DESC LIMIT 1)
            FROM certificates c
            WHERE {" AND ".join(where)}
              AND c.rowid = (SELECT MAX(l.rowid) FROM certificates l WHERE l.lineage = c.lineage)
            ORDER BY c.namespace, c.service_account, c.not_after
            """,
            args,
        ).fetchall()
        return [CertificateRecord(*row) for row in rows]
