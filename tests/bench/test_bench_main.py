"""`python -m bench` runs its benchmarks one after another in one process; each pins the
process to its load core, and the next must still find every core (else it reports "not
pinned" and its figures are noise: the data-plane benchmark after the control-plane one)."""

from __future__ import annotations

import os

import bench.__main__ as bench_main
import pytest
from bench.procs import set_affinity
from tests.bench import pinning_benchmark


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores")
def test_each_benchmark_of_a_run_finds_every_core(monkeypatch: pytest.MonkeyPatch) -> None:
    cpus = os.sched_getaffinity(0)
    module = "tests.bench.pinning_benchmark"
    monkeypatch.setattr(bench_main, "BENCHMARKS", {"first": module, "second": module})
    pinning_benchmark.FOUND.clear()
    try:
        assert bench_main.main(["first", "second"]) == 0
    finally:
        set_affinity(cpus)
    assert [cpus, cpus] == pinning_benchmark.FOUND
