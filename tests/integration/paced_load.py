"""Paced load for the chaos and incident tests: idempotent GETs at a fixed rate through a
client sidecar, every outcome kept with its status, flags and time, and a report of the
failures that names each by status and flag.

`traffic.Load` calls back to back (as fast as the client goes); this one holds a rate, so
a phase of N seconds is N x rate calls whatever the machine's speed, and a stall shows
as lateness (`behind`) rather than as fewer calls. Each worker thread has its slots
(every `workers / rate` seconds, staggered); a worker that falls behind skips the slots
it missed instead of bursting to catch up.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

from tests.integration.traffic import FLAGS, Outcome


@dataclass
class PacedLoad:
    """GET `url` through `client` at `rate` calls per second in `workers` threads, until
    stopped (a context manager). httpx clients are thread-safe."""

    client: httpx.Client
    url: str | Callable[[int], str]  # or: call number -> URL
    rate: float = 200.0
    workers: int = 8
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: int = 0  # slots a late worker passed over
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __enter__(self) -> PacedLoad:
        start = time.monotonic()
        period = self.workers / self.rate
        for i in range(self.workers):
            first = start + i * period / self.workers
            thread = threading.Thread(target=self._run, args=(first, period), daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)

    def _next_url(self) -> str:
        if isinstance(self.url, str):
            return self.url
        with self._lock:
            self._calls += 1
            n = self._calls
        return self.url(n)

    def _run(self, slot: float, period: float) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if slot > now:
                if self._stop.wait(slot - now):
                    return
            elif now - slot > period:  # late by more than a slot: skip, do not burst
                missed = int((now - slot) / period)
                with self._lock:
                    self.skipped += missed
                slot += missed * period
            slot += period
            self.outcomes.append(self._call())

    def _call(self) -> Outcome:
        started = time.monotonic()
        try:
            r = self.client.get(self._next_url())
        except httpx.HTTPError as e:
            return Outcome(time.monotonic(), 0, error=repr(e), started=started)
        name = ""
        if r.status_code == 200:
            try:
                name = str(r.json().get("name", ""))
            except ValueError:
                name = ""
        return Outcome(time.monotonic(), r.status_code, name, r.headers.get(FLAGS, ""), "", started)

    # -- reading the outcomes ---------------------------------------------------------------

    def since(self, t: float) -> list[Outcome]:
        """Outcomes of calls sent at or after monotonic time `t`."""
        return [o for o in list(self.outcomes) if o.started >= t]

    def count(self, predicate: Callable[[Outcome], bool]) -> int:
        return sum(1 for o in list(self.outcomes) if predicate(o))

    def failures(self) -> list[Outcome]:
        return [o for o in list(self.outcomes) if o.status != 200]

    def report(self, origin: float | None = None) -> str:
        """The failures by (status, flags, error), and the first ten with their times
        (seconds since `origin`, default the first call)."""
        outcomes = list(self.outcomes)
        if not outcomes:
            return "no calls"
        origin = origin if origin is not None else outcomes[0].started
        failed = [o for o in outcomes if o.status != 200]
        kinds = Counter(
            (o.status, o.flags or "-", o.error.split("(")[0] if o.error else "") for o in failed
        )
        lines = [
            f"{len(failed)} failed of {len(outcomes)} calls "
            f"({self.skipped} slots skipped by late workers)"
        ]
        lines += [f"  {n} x status {s} flags {f} {e}".rstrip() for (s, f, e), n in kinds.items()]
        for o in failed[:10]:
            lines.append(
                f"  sent +{o.started - origin:.3f}s ended +{o.t - origin:.3f}s: status {o.status}"
                f" flags {o.flags or '-'} {o.error}".rstrip()
            )
        return "\n".join(lines)
