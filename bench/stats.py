"""Summaries of repeated measurements: percentiles and ratios. Pure: no clock, no I/O."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], p: float) -> float:
    """The `p`-th percentile (0..100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True, slots=True)
class Summary:
    """p50, p99 and max of one series of samples, in the samples' unit."""

    count: int
    p50: float
    p99: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(len(values), percentile(values, 50), percentile(values, 99), max(values))


def crossing(points: Sequence[tuple[int, float]], budget: float) -> float | None:
    """Where a series of (n, value) points, sorted by n, first reaches `budget`.

    Interpolates linearly between the last point under the budget and the first
    one over it. None when no point reaches it.
    """
    previous: tuple[int, float] | None = None
    for n, value in points:
        if value >= budget:
            if previous is None or value == previous[1]:
                return float(n)
            n0, v0 = previous
            return n0 + (budget - v0) * (n - n0) / (value - v0)
        previous = (n, value)
    return None
