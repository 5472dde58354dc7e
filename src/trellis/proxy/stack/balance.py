"""Load balancers: which host gets the next request. Pure: hosts in, one host out.

- `LeastRequest` (the default): power of `choice_count` random choices, the one
  with the fewest requests in flight relative to its weight wins (Envoy's P2C);
  ties go to a random one of them.
- `RoundRobin`: smooth weighted round robin (nginx's), so weights 3:1 give
  a a b a, not a a a b.
- `RingHash`: a consistent-hash ring built once per host set (Envoy's ring:
  `minimum_ring_size` entries at least, spread by weight); a request's hash
  key walks the ring to the first available host, so a key stays on one
  host while the set is unchanged, and moves only when its host leaves.

A balancer is given the hosts that may take traffic now (not ejected); the
ring, which must not move keys when hosts are ejected, is given all hosts and
an availability test.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Callable, Sequence
from typing import Protocol

from trellis.proxy.stack.hosts import Host


def hash64(data: bytes) -> int:
    """A stable 64-bit hash (the same in every process, unlike `hash()`)."""
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class Balancer(Protocol):
    def pick(
        self,
        hosts: Sequence[Host],
        hash_key: int | None,
        available: Callable[[Host], bool],
    ) -> Host | None: ...


class RoundRobin:
    __slots__ = ("_current", "_next")

    def __init__(self) -> None:
        self._next = 0
        self._current: dict[tuple[str, int], int] = {}

    def pick(
        self, hosts: Sequence[Host], hash_key: int | None, available: Callable[[Host], bool]
    ) -> Host | None:
        n = len(hosts)
        if n == 0:
            return None
        if n == 1:
            return hosts[0]
        first = hosts[0].weight
        if all(h.weight == first for h in hosts):
            self._next = (self._next + 1) % n
            return hosts[self._next]
        # Smooth weighted round robin: add each weight, take the largest, subtract the total.
        current = self._current
        total = 0
        best: Host | None = None
        best_value = 0
        for h in hosts:
            value = current.get(h.key, 0) + h.weight
            current[h.key] = value
            total += h.weight
            if best is None or value > best_value:
                best, best_value = h, value
        assert best is not None
        current[best.key] = best_value - total
        return best


class LeastRequest:
    __slots__ = ("_choices", "_random")

    def __init__(self, choice_count: int = 2, rng: random.Random | None = None) -> None:
        self._choices = max(2, choice_count)
        self._random = rng or random.Random()

    def pick(
        self, hosts: Sequence[Host], hash_key: int | None, available: Callable[[Host], bool]
    ) -> Host | None:
        n = len(hosts)
        if n == 0:
            return None
        if n == 1:
            return hosts[0]
        if n <= self._choices:
            # Every host is a candidate: start at a random one, so that ties (an idle
            # cluster, one request at a time) spread instead of all going to hosts[0].
            start = self._random.randrange(n)
            candidates: Sequence[Host] = [*hosts[start:], *hosts[:start]]
        else:
            candidates = self._random.sample(hosts, self._choices)
        best = candidates[0]
        best_score = (best.active + 1) / best.weight
        for h in candidates[1:]:
            score = (h.active + 1) / h.weight
            if score < best_score:
                best, best_score = h, score
        return best


class RingHash:
    """The ring for one host set; build a new one when the set changes."""

    __slots__ = ("_hashes", "_hosts", "_owners", "_random")

    def __init__(self, hosts: Sequence[Host], minimum: int = 1024, maximum: int = 8 << 20) -> None:
        self._hosts = list(hosts)
        self._random = random.Random()
        entries: list[tuple[int, int]] = []
        if self._hosts:
            total = sum(h.weight for h in self._hosts)
            size = min(max(minimum, len(self._hosts)), maximum)
            for index, h in enumerate(self._hosts):
                replicas = max(1, round(size * h.weight / total))
                base = f"{h.key[0]}:{h.key[1]}_".encode()
                entries.extend((hash64(base + b"%d" % i), index) for i in range(replicas))
        entries.sort()
        self._hashes = [e[0] for e in entries]
        self._owners = [e[1] for e in entries]

    def pick(
        self, hosts: Sequence[Host], hash_key: int | None, available: Callable[[Host], bool]
    ) -> Host | None:
        if not self._hashes:
            return None
        if hash_key is None:
            hash_key = self._random.getrandbits(64)
        n = len(self._hashes)
        start = bisect.bisect_left(self._hashes, hash_key) % n
        tried: set[int] = set()
        for step in range(n):
            owner = self._owners[(start + step) % n]
            if owner in tried:
                continue
            host = self._hosts[owner]
            if available(host):
                return host
            tried.add(owner)
            if len(tried) == len(self._hosts):
                break
        return None
