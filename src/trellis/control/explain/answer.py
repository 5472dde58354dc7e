"""What the caller would be answered, and by whom: the end of every explained path.

An `Answer` is either a local answer of a sidecar (its status and Envoy response flags,
as the proxy sends them in `x-trellis-flags`), or the request reaching an app, whose
answer is the app's own (`status` None). Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

SOURCE = "source sidecar"
DESTINATION = "destination sidecar"
APP = "destination app"
OUTSIDE = "outside the mesh"


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None  # None: the request reaches `by`, which answers it
    flags: str  # Envoy's response flags of a local answer ("" when none)
    by: str  # SOURCE, DESTINATION, APP or OUTSIDE
    reason: str
    policy: str | None = None  # the RBAC policy of a 403 ("none": no ALLOW policy matched)
    location: str | None = None  # a redirect's Location

    @property
    def delivered(self) -> bool:
        """The request reaches an app (or a host outside the mesh)."""
        return self.status is None

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "flags": self.flags,
            "by": self.by,
            "reason": self.reason,
            "policy": self.policy,
            "location": self.location,
        }
