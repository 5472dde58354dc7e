"""SPIFFE IDs of workloads: `spiffe://TRUST_DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT`. Pure.

Owns the one shape of identity the mesh issues and checks. Parsing anything
else raises ValueError with the expected shape.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")
_TRUST_DOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")


@dataclass(frozen=True, slots=True)
class SpiffeId:
    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        if not _TRUST_DOMAIN.match(self.trust_domain):
            raise ValueError(f"{self.trust_domain!r} is not a valid trust domain")
        segments = (("namespace", self.namespace), ("service account", self.service_account))
        for what, value in segments:
            if not _SEGMENT.match(value):
                raise ValueError(f"{value!r} is not a valid {what}")

    @classmethod
    def parse(cls, uri: str) -> SpiffeId:
        """The ID in `uri`; ValueError unless it is spiffe://TD/ns/NS/sa/SA."""
        rest = uri.removeprefix("spiffe://")
        parts = rest.split("/")
        if rest == uri or len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
            raise ValueError(f"{uri!r} is not a workload SPIFFE ID (spiffe://TD/ns/NS/sa/SA)")
        return cls(parts[0], parts[2], parts[4])

    def __str__(self) -> str:
        return f"spiffe://{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"
