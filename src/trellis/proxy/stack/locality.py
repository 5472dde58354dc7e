"""Priorities and localities: which subset of a cluster's hosts the balancer chooses from.
Pure: hosts, their health and a random number in, the candidate hosts out.

Envoy's rules (load_balancer_impl.cc), which Istio's locality failover builds on: EDS
gives each endpoint a priority (0 is preferred: the caller's own zone; then 1, 2...)
and the weight of its locality.

- **Priority load.** A priority's health is its healthy share times the
  overprovisioning factor 1.4, at most 100%: priority 0 takes min(100, health) % of the
  requests, the rest spills to priority 1, and so on. When the healths add up to less
  than 100%, the loads are scaled up in proportion (every request still goes somewhere);
  when no host is healthy anywhere, priority 0 takes everything.
- **Panic, per priority.** When the healths add up to less than 100% and a priority's
  healthy share is below the cluster's panic threshold, that priority balances over all
  its hosts, ejected ones included (Envoy's panic mode). A threshold of 0 turns panic off.
- **Locality weights** (`locality_weighted`): within a priority, a locality is chosen
  with probability in proportion to its weight times its health (healthy share x 1.4,
  at most 1), then the host by the cluster's balancer among that locality's healthy
  hosts. A locality with weight 0 takes nothing while another has weight.

A cluster whose endpoints all have priority 0 and (or without locality weighting) one
locality never gets here: cluster.py keeps its single-level fast path.
"""

from __future__ import annotations

from collections.abc import Sequence

from trellis.proxy.stack.hosts import Host

OVERPROVISIONING = 1.4


def health(healthy: int, total: int) -> float:
    """A group's health in percent: its healthy share x 1.4, at most 100."""
    if total == 0:
        return 0.0
    return min(100.0, 100.0 * OVERPROVISIONING * healthy / total)


def priority_loads(healths: Sequence[float]) -> list[float]:
    """The share of requests (percent) each priority takes, given their healths."""
    if not healths:
        return []
    total = sum(healths)
    if total <= 0:
        return [100.0] + [0.0] * (len(healths) - 1)
    if total < 100.0:
        return [100.0 * h / total for h in healths]
    loads = []
    remaining = 100.0
    for h in healths:
        load = min(remaining, h)
        loads.append(load)
        remaining -= load
    return loads


class LocalityGroup:
    """The hosts of one locality within one priority, and the locality's EDS weight."""

    __slots__ = ("hosts", "name", "weight")

    def __init__(self, name: str, weight: int, hosts: list[Host]) -> None:
        self.name = name
        self.weight = weight
        self.hosts = hosts


class PriorityLevel:
    __slots__ = ("hosts", "localities", "priority")

    def __init__(self, priority: int, hosts: list[Host], localities: list[LocalityGroup]) -> None:
        self.priority = priority
        self.hosts = hosts
        self.localities = localities


def levels_of(hosts: Sequence[Host]) -> list[PriorityLevel]:
    """The hosts by priority (lowest first), each priority's by locality (in order seen)."""
    by_priority: dict[int, list[Host]] = {}
    for h in hosts:
        by_priority.setdefault(h.config.priority, []).append(h)
    levels = []
    for priority in sorted(by_priority):
        members = by_priority[priority]
        groups: dict[str, LocalityGroup] = {}
        for h in members:
            group = groups.get(h.config.locality)
            if group is None:
                group = groups[h.config.locality] = LocalityGroup(
                    h.config.locality, h.config.locality_weight, []
                )
            group.hosts.append(h)
            # One weight per locality: EDS sends it once per LocalityLbEndpoints.
            group.weight = max(group.weight, h.config.locality_weight)
        levels.append(PriorityLevel(priority, members, list(groups.values())))
    return levels


def layered(hosts: Sequence[Host], locality_weighted: bool) -> bool:
    """Whether the hosts need priorities or localities (else the single-level path)."""
    if not hosts:
        return False
    first = hosts[0].config
    for h in hosts:
        if h.config.priority != first.priority:
            return True
        if locality_weighted and h.config.locality != first.locality:
            return True
    return False


def _healthy(hosts: Sequence[Host]) -> list[Host]:
    return [h for h in hosts if not h.ejected]


def choose(
    levels: Sequence[PriorityLevel],
    panic_threshold: float,
    locality_weighted: bool,
    r_priority: float,
    r_locality: float,
) -> list[Host]:
    """The hosts the balancer may pick from for one request (`r_*`: uniform in [0, 1))."""
    counts = [sum(1 for h in level.hosts if not h.ejected) for level in levels]
    healths = [health(n, len(level.hosts)) for n, level in zip(counts, levels, strict=True)]
    loads = priority_loads(healths)
    point = r_priority * 100.0
    index = len(levels) - 1
    for i, load in enumerate(loads):
        if point < load:
            index = i
            break
        point -= load
    while index > 0 and loads[index] <= 0:  # float dust at the end: the last with load
        index -= 1
    level = levels[index]
    healthy = counts[index]
    total_health = min(100.0, sum(healths))
    if healthy == 0 or (
        total_health < 100.0 and 100.0 * healthy < panic_threshold * len(level.hosts)
    ):
        # Panic (or nothing healthy with panic off: the balancer gets nobody -> 503 UH).
        return list(level.hosts) if panic_threshold > 0 else []
    if locality_weighted and len(level.localities) > 1:
        group = _choose_locality(level.localities, r_locality)
        if group is not None:
            return _healthy(group.hosts)
    return _healthy(level.hosts)


def _choose_locality(groups: Sequence[LocalityGroup], r: float) -> LocalityGroup | None:
    weights = [
        g.weight * health(sum(1 for h in g.hosts if not h.ejected), len(g.hosts)) for g in groups
    ]
    total = sum(weights)
    if total <= 0:
        return None
    point = r * total
    for g, w in zip(groups, weights, strict=True):
        if point < w:
            return g
        point -= w
    for g, w in zip(reversed(groups), reversed(weights), strict=True):
        if w > 0:
            return g
    return None
