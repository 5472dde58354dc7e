"""Reconnect delays: full-jitter exponential backoff, pure arithmetic."""

from __future__ import annotations

import math
import random

import pytest

from trellis.proxy.xds.backoff import Backoff, ceiling


def top(low: float, high: float) -> float:
    return high


def bottom(low: float, high: float) -> float:
    return low


def test_ceiling_doubles_from_base_up_to_max() -> None:
    assert [ceiling(a, 0.5, 30.0) for a in range(9)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        8.0,
        16.0,
        30.0,
        30.0,
        30.0,
    ]


def test_ceiling_never_overflows() -> None:
    assert ceiling(5000, 0.5, 30.0) == 30.0
    assert ceiling(10**9, 1e-300, 1.0) == 1.0
    assert ceiling(3, 0.5, math.inf) == 4.0


def test_ceiling_with_max_below_base_is_max() -> None:
    assert ceiling(0, 2.0, 1.0) == 1.0
    assert ceiling(7, 2.0, 1.0) == 1.0


def test_zero_base_means_no_delay() -> None:
    assert ceiling(10, 0.0, 30.0) == 0.0


def test_ceiling_refuses_a_negative_attempt() -> None:
    with pytest.raises(ValueError):
        ceiling(-1, 0.5, 30.0)


def test_delays_are_drawn_between_zero_and_the_ceiling() -> None:
    backoff = Backoff(0.5, 30.0, uniform=top)
    assert [backoff.next_delay() for _ in range(8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    backoff = Backoff(0.5, 30.0, uniform=bottom)
    assert {backoff.next_delay() for _ in range(8)} == {0.0}


def test_random_delays_stay_in_bounds() -> None:
    rng = random.Random(7)
    backoff = Backoff(0.5, 4.0, uniform=rng.uniform)
    for attempt in range(50):
        assert 0.0 <= backoff.next_delay() <= ceiling(attempt, 0.5, 4.0)


def test_a_misbehaving_random_source_is_clamped() -> None:
    backoff = Backoff(1.0, 2.0, uniform=lambda low, high: high * 10)
    assert backoff.next_delay() == 1.0
    backoff = Backoff(1.0, 2.0, uniform=lambda low, high: -5.0)
    assert backoff.next_delay() == 0.0


def test_reset_starts_again_from_base() -> None:
    backoff = Backoff(0.5, 30.0, uniform=top)
    for _ in range(5):
        backoff.next_delay()
    assert backoff.attempt == 5
    backoff.reset()
    assert backoff.attempt == 0
    assert backoff.next_delay() == 0.5


@pytest.mark.parametrize(("base", "maximum"), [(-1.0, 30.0), (0.5, -1.0), (math.nan, 1.0)])
def test_bad_parameters_are_refused(base: float, maximum: float) -> None:
    with pytest.raises(ValueError):
        Backoff(base, maximum)
