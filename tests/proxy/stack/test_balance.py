"""Load balancers, pure: P2C least-request prefers the less loaded host and spreads ties,
smooth weighted round robin interleaves, ring hash keeps keys put (and moves few when a
host leaves), and every balancer skips hosts that may not take traffic."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence

import pytest

from trellis.proxy.config.resources import EndpointConfig
from trellis.proxy.stack.balance import LeastRequest, RingHash, RoundRobin, hash64
from trellis.proxy.stack.hosts import Host
from trellis.proxy.stack.pool import HostPool, PoolCounters


def host(i: int, weight: int = 1, active: int = 0) -> Host:
    # The pool is never used by a balancer: it opens no socket (tests are async only
    # because a pool binds to the running loop).
    pool = HostPool(f"10.0.0.{i}", 8080, PoolCounters())
    h = Host(EndpointConfig(f"10.0.0.{i}", 8080, weight), pool)
    h.active = active
    return h


def always(h: Host) -> bool:
    return True


def picks(balancer: LeastRequest | RoundRobin, hosts: Sequence[Host], n: int) -> Counter[int]:
    out: Counter[int] = Counter()
    for _ in range(n):
        chosen = balancer.pick(hosts, None, always)
        assert chosen is not None
        out[hosts.index(chosen)] += 1
    return out


# -- least request (P2C) ------------------------------------------------------------------


async def test_p2c_with_two_hosts_always_takes_the_less_loaded() -> None:
    hosts = [host(0, active=3), host(1, active=1)]
    assert picks(LeastRequest(rng=random.Random(1)), hosts, 200) == {1: 200}
    hosts[1].active = 5
    assert picks(LeastRequest(rng=random.Random(1)), hosts, 200) == {0: 200}


async def test_p2c_never_picks_the_most_loaded_and_favours_the_least() -> None:
    hosts = [host(i, active=i) for i in range(5)]  # host 0 idle ... host 4 busiest
    got = picks(LeastRequest(rng=random.Random(7)), hosts, 5000)
    assert 4 not in got  # it loses every pair it is drawn in
    # Host 0 wins whenever it is drawn: 2 of 5 draws include it (40%).
    assert 0.36 < got[0] / 5000 < 0.44, got
    assert got[0] > got[1] > got[2] > got[3], got


async def test_p2c_weighs_load_by_weight() -> None:
    heavy, light = host(0, weight=4, active=2), host(1, weight=1, active=1)
    # (2 + 1) / 4 < (1 + 1) / 1: the heavier host takes more requests in flight.
    assert picks(LeastRequest(rng=random.Random(3)), [heavy, light], 100) == {0: 100}


@pytest.mark.parametrize("n", [2, 3])
async def test_p2c_spreads_ties_between_idle_hosts(n: int) -> None:
    """One request at a time leaves every host idle: ties must not all go to the first."""
    hosts = [host(i) for i in range(n)]
    got = picks(LeastRequest(rng=random.Random(11)), hosts, 3000)
    assert set(got) == set(range(n)), got
    assert all(abs(c / 3000 - 1 / n) < 0.05 for c in got.values()), got


async def test_p2c_with_more_choices_samples_that_many() -> None:
    hosts = [host(i, active=i) for i in range(4)]
    # choice_count 4 over 4 hosts: every pick sees them all, so the idlest always wins.
    assert picks(LeastRequest(4, rng=random.Random(5)), hosts, 100) == {0: 100}


async def test_p2c_one_or_no_host() -> None:
    lr = LeastRequest()
    only = host(0, active=9)
    assert lr.pick([only], None, always) is only
    assert lr.pick([], None, always) is None


# -- round robin ----------------------------------------------------------------------------


def sequence(rr: RoundRobin, hosts: Sequence[Host], n: int) -> str:
    order = ""
    for _ in range(n):
        chosen = rr.pick(hosts, None, always)
        assert chosen is not None
        order += "abcdefgh"[hosts.index(chosen)]
    return order


async def test_round_robin_cycles_through_equal_hosts() -> None:
    hosts = [host(i) for i in range(3)]
    order = sequence(RoundRobin(), hosts, 9)
    assert sorted(order[:3]) == ["a", "b", "c"]
    assert order == order[:3] * 3


async def test_smooth_weighted_round_robin_interleaves() -> None:
    # nginx's smooth WRR: 3:1 is a a b a, not a a a b; 5:1:1 is a a b a c a a.
    assert sequence(RoundRobin(), [host(0, 3), host(1, 1)], 8) == "aaba" * 2
    assert sequence(RoundRobin(), [host(0, 5), host(1, 1), host(2, 1)], 14) == "aabacaa" * 2


async def test_weighted_round_robin_shares_are_exact_per_cycle() -> None:
    hosts = [host(0, 2), host(1, 3), host(2, 5)]
    assert picks(RoundRobin(), hosts, 1000) == {0: 200, 1: 300, 2: 500}


# -- ring hash --------------------------------------------------------------------------------

KEYS = [hash64(f"user-{i}".encode()) for i in range(4000)]


def placement(ring: RingHash, hosts: Sequence[Host], available: object = always) -> list[Host]:
    out = []
    for key in KEYS:
        chosen = ring.pick(hosts, key, available)  # type: ignore[arg-type]
        assert chosen is not None
        out.append(chosen)
    return out


async def test_ring_hash_keeps_a_key_on_one_host_and_spreads_keys() -> None:
    hosts = [host(i) for i in range(3)]
    ring = RingHash(hosts)
    first = placement(ring, hosts)
    assert placement(ring, hosts) == first
    # A ring built again (another proxy, a config update) places keys the same way,
    # whatever the order the hosts arrive in.
    assert placement(RingHash(list(reversed(hosts))), hosts) == first
    shares = Counter(h.key for h in first)
    assert all(0.28 < c / len(KEYS) < 0.39 for c in shares.values()), shares


async def test_ring_hash_weights_shape_the_shares() -> None:
    hosts = [host(0, weight=3), host(1, weight=1)]
    shares = Counter(h.key for h in placement(RingHash(hosts), hosts))
    assert 0.70 < shares[hosts[0].key] / len(KEYS) < 0.80, shares


async def test_ring_hash_moves_few_keys_when_a_host_leaves() -> None:
    hosts = [host(i) for i in range(4)]
    before = placement(RingHash(hosts), hosts)
    after = placement(RingHash(hosts[:3]), hosts[:3])
    gone = hosts[3]
    # Every key of the host that left finds a new home...
    assert all(a is not gone for a in after)
    stayed = [(b, a) for b, a in zip(before, after, strict=True) if b is not gone]
    moved = sum(1 for b, a in stayed if a.key != b.key)
    # ...and the others mostly stay. As Envoy's ring, the survivors get more entries to
    # keep the ring size, which moves some keys among them (about 1/8 here); a modulo
    # hash would move three quarters of all keys.
    assert moved / len(stayed) < 0.2, f"{moved} of {len(stayed)} keys moved between survivors"


async def test_ring_hash_skips_an_unavailable_host_without_moving_other_keys() -> None:
    hosts = [host(i) for i in range(3)]
    ring = RingHash(hosts)
    before = placement(ring, hosts)
    ejected = hosts[1]
    after = placement(ring, hosts, lambda h: h is not ejected)
    for b, a in zip(before, after, strict=True):
        if b is ejected:
            assert a is not ejected
        else:
            assert a is b  # keys of available hosts do not move at all
    # Back in service: its keys come back.
    assert placement(ring, hosts) == before


async def test_ring_hash_without_a_key_spreads_and_with_nothing_available_gives_none() -> None:
    hosts = [host(i) for i in range(3)]
    ring = RingHash(hosts)
    unkeyed = Counter(ring.pick(hosts, None, always) for _ in range(300))
    assert len(unkeyed) == 3
    assert ring.pick(hosts, KEYS[0], lambda h: False) is None
    assert RingHash([]).pick([], KEYS[0], always) is None


async def test_ring_size_follows_the_minimum() -> None:
    hosts = [host(i) for i in range(3)]
    small = RingHash(hosts, minimum=3)
    assert placement(small, hosts)  # tiny ring still places every key
    assert len(small._hashes) == 3
    assert len(RingHash(hosts, minimum=1024)._hashes) >= 1023
