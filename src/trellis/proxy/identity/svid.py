"""SVIDs as data: what an issued identity says (SPIFFE IDs: `trellis.wire`). Pure, and free of
`cryptography`: a sidecar keeps its memory small by doing the X.509 work (key, CSR,
reading certificates) in a short-lived child process (`keygen`), or in `x509` when the
caller does not mind loading the library (the CA, tests).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Svid:
    """An issued identity: the chain (leaf first) and key as PEM, plus what it says."""

    chain_pem: bytes
    key_pem: bytes
    bundle_pem: bytes  # the trusted roots
    spiffe_id: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime

    @classmethod
    def parse(cls, chain_pem: bytes, key: bytes, bundle_pem: bytes) -> Svid:
        """Read an SVID in this process (loads `cryptography`); ValueError when it is not
        exactly one SPIFFE ID for this key."""
        from trellis.proxy.identity.crypto import parse_svid

        return parse_svid(chain_pem, key, bundle_pem)

    def renew_at(self) -> dt.datetime:
        """Half-way through its validity (DESIGN §5)."""
        return self.not_before + (self.not_after - self.not_before) / 2

    def seconds_left(self, now: dt.datetime) -> float:
        return (self.not_after - now).total_seconds()
