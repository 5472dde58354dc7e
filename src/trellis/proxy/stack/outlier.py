"""Outlier detection: which hosts of a cluster leave the balancing set, and when they return.
Pure: hosts and the time in, ejections and returns out (cluster.py owns the timer and
tells the world). Envoy's detector (outlier_detection_impl.cc), on the same rules:

- **Consecutive 5xx** (`consecutive_5xx`) and **consecutive gateway errors** (502, 503,
  504: `consecutive_gateway`) eject at once, when the count is reached. A connect failure
  or a reset is recorded as 503 by the request path (Envoy maps them so too); any other
  status resets both counts.
- **Failure percentage** (`failure_percentage`): at each interval, over the hosts not
  ejected with at least `failure_percentage_volume` outcomes in the interval, when at
  least `failure_percentage_min_hosts` hosts have that many: a host whose share of 5xx is
  at or above the threshold is ejected.
- **The cap**: an ejection happens only if the ejected hosts, this one included, are at
  most `max_ejection_percent` of the cluster: `100 x (ejected + 1) / hosts <= max`.
  Envoy applies this strictly (9 hosts at 10% allow none; its `always_eject_one_host`,
  off by default, would allow one — we have no such setting). A refused ejection is
  counted (`overflowed`).
- **Ejection time**: each ejection adds one to the host's back-off multiplier, as long as
  `backoff x base < max + base` (max: MAX_EJECTION_TIME, or base when larger); the host
  returns at the first interval check when `min(base x backoff, max)` has passed since
  its ejection. Each interval a host spends in service takes one off its multiplier, so
  a host that stays healthy is ejected for base again next time; one that keeps failing
  is ejected for 2 x base, 3 x base... up to the max.
"""

from __future__ import annotations

from collections.abc import Sequence

from trellis.proxy.config.resources import OutlierConfig
from trellis.proxy.stack.hosts import Host

MAX_EJECTION_TIME = 300.0  # Envoy's default max_ejection_time (seconds)

CONSECUTIVE_5XX = "consecutive_5xx"
CONSECUTIVE_GATEWAY = "consecutive_gateway"
FAILURE_PERCENTAGE = "failure_percentage"
REASONS = (CONSECUTIVE_5XX, CONSECUTIVE_GATEWAY, FAILURE_PERCENTAGE)


class OutlierEvent:
    """A host ejected (`ejected` True, with its reason) or back in service."""

    __slots__ = ("ejected", "host", "reason", "until")

    def __init__(self, host: Host, ejected: bool, reason: str, until: float) -> None:
        self.host = host
        self.ejected = ejected
        self.reason = reason
        self.until = until


class OutlierDetector:
    """One cluster's detector. `ejected` counts its hosts out of service; `recount` after
    the host set changed. Counters: `ejections` by reason, `overflowed` (ejections the cap
    refused)."""

    __slots__ = ("config", "ejected", "ejections", "overflowed")

    def __init__(self, config: OutlierConfig) -> None:
        self.config = config
        self.ejected = 0
        self.ejections: dict[str, int] = dict.fromkeys(REASONS, 0)
        self.overflowed = 0

    def recount(self, hosts: Sequence[Host]) -> None:
        self.ejected = sum(1 for h in hosts if h.ejected)

    def record(
        self, host: Host, status: int, now: float, hosts: Sequence[Host]
    ) -> OutlierEvent | None:
        """One outcome of `host` (an HTTP status; 503 for a connect failure or a reset);
        the ejection it caused, if any."""
        host.interval_requests += 1
        if status < 500:
            host.consecutive_5xx = 0
            host.consecutive_gateway = 0
            return None
        host.interval_failures += 1
        host.consecutive_5xx += 1
        if status == 502 or status == 503 or status == 504:
            host.consecutive_gateway += 1
        else:
            host.consecutive_gateway = 0
        if host.ejected:
            return None
        config = self.config
        if config.consecutive_5xx is not None and host.consecutive_5xx >= config.consecutive_5xx:
            return self.eject(host, CONSECUTIVE_5XX, now, len(hosts))
        if (
            config.consecutive_gateway is not None
            and host.consecutive_gateway >= config.consecutive_gateway
        ):
            return self.eject(host, CONSECUTIVE_GATEWAY, now, len(hosts))
        return None

    def eject(self, host: Host, reason: str, now: float, host_count: int) -> OutlierEvent | None:
        """Eject `host` if the cap allows it (None if it does not, or it is already out)."""
        if host.ejected:
            return None
        config = self.config
        if host_count == 0 or 100 * (self.ejected + 1) > config.max_ejection_percent * host_count:
            self.overflowed += 1
            return None
        base = config.base_ejection
        longest = max(MAX_EJECTION_TIME, base)
        if host.backoff * base < longest + base:
            host.backoff += 1
        host.ejected = True
        host.ejected_at = now
        host.ejected_until = now + min(base * host.backoff, longest)
        host.ejection_reason = reason
        host.ejections += 1
        host.consecutive_5xx = 0
        host.consecutive_gateway = 0
        self.ejected += 1
        self.ejections[reason] += 1
        return OutlierEvent(host, True, reason, host.ejected_until)

    def interval(self, hosts: Sequence[Host], now: float) -> list[OutlierEvent]:
        """The interval check: returns hosts whose time is over, lowers the back-off of the
        hosts in service, ejects by failure percentage, and starts a new interval."""
        events: list[OutlierEvent] = []
        for h in hosts:
            if h.ejected:
                if h.ejected_until <= now:
                    h.ejected = False
                    h.ejection_reason = ""
                    self.ejected -= 1
                    events.append(OutlierEvent(h, False, "", now))
            elif h.backoff > 0:
                h.backoff -= 1
        config = self.config
        threshold = config.failure_percentage
        if threshold is not None:
            volume = config.failure_percentage_volume
            counted = [h for h in hosts if not h.ejected and h.interval_requests >= volume]
            if counted and len(counted) >= config.failure_percentage_min_hosts:
                for h in counted:
                    if 100 * h.interval_failures >= threshold * h.interval_requests:
                        event = self.eject(h, FAILURE_PERCENTAGE, now, len(hosts))
                        if event is not None:
                            events.append(event)
        for h in hosts:
            if h.interval_requests:
                h.success_rate = 100.0 * (1 - h.interval_failures / h.interval_requests)
            else:
                h.success_rate = -1.0
            h.interval_requests = 0
            h.interval_failures = 0
        return events
