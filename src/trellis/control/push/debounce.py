"""When to push: merging bursts of store events, and noticing leases that expired silently.

Pure logic with an explicit `now`: no clock, no tasks, no store. The push
controller feeds it and sleeps until `deadline()`.

A burst is merged into one push that fires when the store has been quiet
for `quiet` seconds, or `max_delay` seconds after the burst's first event,
whichever comes first: a steady trickle of writes still gets pushed every
`max_delay`.

A lease that expires is not a store event (it only becomes one when the
registry sweeps it), so the controller compares the set of expired leases
now with the set the last PushContext was built with (`expired_leases`).
"""

from __future__ import annotations

from collections.abc import Iterable

from trellis.model.keys import ResourceKey
from trellis.store.base import Lease


class Debouncer:
    """The state of one burst of events: when it started, when it last grew."""

    __slots__ = ("_first", "_last", "max_delay", "quiet")

    def __init__(self, *, quiet: float, max_delay: float) -> None:
        if quiet < 0 or max_delay < quiet:
            raise ValueError("need 0 <= quiet <= max_delay")
        self.quiet = quiet
        self.max_delay = max_delay
        self._first: float | None = None
        self._last = 0.0

    @property
    def pending(self) -> bool:
        """Whether events arrived since the last `fire()`."""
        return self._first is not None

    def event(self, now: float) -> None:
        """Record one event at `now`."""
        if self._first is None:
            self._first = now
        self._last = max(self._last, now)

    def deadline(self) -> float | None:
        """When the pending burst must be pushed; None when nothing is pending."""
        if self._first is None:
            return None
        return min(self._last + self.quiet, self._first + self.max_delay)

    def due(self, now: float) -> bool:
        deadline = self.deadline()
        return deadline is not None and now >= deadline

    def fire(self) -> None:
        """The burst is being pushed: events from now on start a new one."""
        self._first = None
        self._last = 0.0


def expired_leases(leases: Iterable[Lease], now: float) -> frozenset[ResourceKey]:
    """Keys of the leases that have expired at `now` (PushContext keeps `expires_at >= now`)."""
    return frozenset(lease.key for lease in leases if lease.expires_at < now)
