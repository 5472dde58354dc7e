"""Content versions for xDS responses: a short hash of what one node gets for one type.

The same resources (and the same not-found names) always give the same
version, whatever their order, so a push that changes nothing for a node
yields the version it already has and the ADS server sends nothing. Knows
nothing of streams, nonces or gRPC.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Mapping

from google.protobuf import any_pb2

VERSION_LENGTH = 12  # hex digits: 48 bits, plenty to tell one node's successive snapshots apart


def content_version(resources: Mapping[str, any_pb2.Any], errors: Collection[str] = ()) -> str:
    """Hash the packed resources (by name) and the not-found names into a short hex string."""
    digest = hashlib.sha256()
    for name in sorted(resources):
        packed = resources[name]
        for part in (b"R", name.encode(), packed.type_url.encode(), packed.value):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    for name in sorted(errors):
        encoded = name.encode()
        digest.update(b"E" + len(encoded).to_bytes(8, "big") + encoded)
    return digest.hexdigest()[:VERSION_LENGTH]
